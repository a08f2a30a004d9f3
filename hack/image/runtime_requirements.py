"""The image's exact runtime requirements, from a pip resolve report, without what an extra drags in.

Feast requires `SQLAlchemy[mypy]`, and that extra pulls mypy (and its compiled dependencies) into
every install of feast, although nothing imports it at run time. pip cannot exclude a package, so
the image build resolves the pinned dependencies once (`pip install --dry-run --report`), walks
the dependency graph from what was requested with the named extras switched off (here
`sqlalchemy:mypy`), and installs exactly the packages reached, pinned, with `--no-deps`: mypy is
never downloaded nor installed, and every other package is the same version the resolve chose.

    python runtime_requirements.py REPORT.json --drop-extra sqlalchemy:mypy --lock requirements.lock

Writes `name==version` lines (sorted) to stdout and what was left out to stderr. With `--lock`, fails
when the lock does not pin every one of them exactly: the image's interpreter (Debian's 3.11.2) can
need a package the lock's did not (redis needs async-timeout below Python 3.11.3), and an unpinned
package would float. Standard library
plus `packaging` (which pip itself relies on).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class Resolved:
    """One package of a pip report: its pinned version and its declared requirements."""

    name: str
    version: str
    requires: tuple[str, ...]
    requested_extras: tuple[str, ...] = ()
    requested: bool = False


def parse_report(report: Mapping[str, Any]) -> dict[str, Resolved]:
    """Packages of `pip install --report` by canonical name."""
    out: dict[str, Resolved] = {}
    for item in report["install"]:
        meta = item["metadata"]
        name = canonicalize_name(meta["name"])
        out[name] = Resolved(
            name=name,
            version=meta["version"],
            requires=tuple(meta.get("requires_dist") or ()),
            requested_extras=tuple(canonicalize_name(e) for e in item.get("requested_extras") or ()),
            requested=bool(item.get("requested")),
        )
    return out


def parse_drop(specs: Iterable[str]) -> frozenset[tuple[str, str]]:
    """`package:extra` -> (canonical package, canonical extra)."""
    out = set()
    for spec in specs:
        package, sep, extra = spec.partition(":")
        if not sep or not package or not extra:
            raise ValueError(f"expected PACKAGE:EXTRA, got {spec!r}")
        out.add((canonicalize_name(package), canonicalize_name(extra)))
    return frozenset(out)


def closure(
    packages: Mapping[str, Resolved],
    drop_extras: frozenset[tuple[str, str]] = frozenset(),
    environment: Mapping[str, str] | None = None,
) -> dict[str, frozenset[str]]:
    """Every package reachable from the requested ones, with the extras it is needed with.

    A requirement counts when its marker holds for the target environment with no extra or with one
    of the extras its package is needed with, except the dropped (package, extra) pairs.
    """
    env: dict[str, str] = (
        dict(environment)
        if environment is not None
        else {key: str(value) for key, value in default_environment().items()}
    )
    needed: dict[str, frozenset[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = [
        (p.name, frozenset(p.requested_extras)) for p in packages.values() if p.requested
    ]
    if not todo:
        raise ValueError("the report names no requested package")
    while todo:
        name, extras = todo.pop()
        known = needed.get(name)
        if known is not None and extras <= known:
            continue
        extras = extras | (known or frozenset())
        needed[name] = extras
        package = packages.get(name)
        if package is None:
            raise ValueError(f"{name} is required but the report does not install it")
        active = ["", *sorted(e for e in extras if (name, e) not in drop_extras)]
        for line in package.requires:
            req = Requirement(line)
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in active):
                continue
            todo.append((canonicalize_name(req.name), frozenset(canonicalize_name(e) for e in req.extras)))
    return needed


def runtime_requirements(
    report: Mapping[str, Any], drop: Sequence[str], environment: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(pinned requirement lines to install, names of the resolved packages left out)."""
    packages = parse_report(report)
    # pip records the target interpreter's marker environment in the report: evaluate against that.
    keep = closure(packages, parse_drop(drop), environment or report.get("environment"))
    pins = sorted(f"{packages[name].name}=={packages[name].version}" for name in keep)
    left_out = sorted(name for name in packages if name not in keep)
    return pins, left_out


def unlocked(pins: Iterable[str], lock_text: str) -> list[str]:
    """The pins a lock file (`name==version` lines) does not hold exactly: packages the target
    interpreter needs that the lock's interpreter did not (a marker such as python_full_version)."""
    locked = {}
    for line in lock_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            locked[canonicalize_name(name)] = version.split(";", 1)[0].strip()
    out = []
    for pin in pins:
        name, _, version = pin.partition("==")
        if locked.get(canonicalize_name(name)) != version:
            out.append(pin)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("report", type=Path, help="the JSON of `pip install --dry-run --report`")
    parser.add_argument("--drop-extra", action="append", default=[], metavar="PACKAGE:EXTRA")
    parser.add_argument(
        "--lock",
        type=Path,
        action="append",
        default=[],
        help="fail unless these lock files (repeatable) pin every package exactly",
    )
    args = parser.parse_args(argv)
    pins, left_out = runtime_requirements(json.loads(args.report.read_text()), args.drop_extra)
    if args.lock:
        missing = unlocked(pins, "\n".join(path.read_text() for path in args.lock))
        if missing:
            sys.stderr.write(
                f"runtime_requirements: {', '.join(map(str, args.lock))} do(es) not pin "
                f"{', '.join(missing)}, which this interpreter needs: add the lines to the lock\n"
            )
            return 1
    sys.stdout.write("".join(f"{pin}\n" for pin in pins))
    sys.stderr.write(
        f"runtime_requirements: {len(pins)} packages; left out: {', '.join(left_out) or 'nothing'}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
