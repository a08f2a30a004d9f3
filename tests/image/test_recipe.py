"""The image recipe itself, without building: what the Dockerfile copies is what the stamp hashes and
what .dockerignore lets through, and the runtime requirements leave out exactly what an extra drags in."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.image.engine import HACK, ROOT, read_env_file


def _load_runtime_requirements() -> ModuleType:
    spec = importlib.util.spec_from_file_location("runtime_requirements", HACK / "runtime_requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


rr = _load_runtime_requirements()


def copy_sources() -> list[str]:
    """The build-context sources of the Dockerfile's COPY instructions (not those of other stages)."""
    sources: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def context_files() -> list[str]:
    out = subprocess.run(
        ["bash", str(HACK / "build.sh"), "context-files"], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def test_every_copy_source_is_hashed_by_the_stamp_and_let_through_by_dockerignore() -> None:
    files = context_files()
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = copy_sources()
    assert "feature_repo" in sources and "shipyard" in sources
    for source in sources:
        assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in files), (
            f"COPY {source}: not in hack/image/build.sh's CONTEXT_PATHS, so the stamp misses its changes"
        )
        assert any(source == a or source.startswith(a + "/") for a in allowed), (
            f"COPY {source}: .dockerignore does not let it through"
        )
    # Generated data, local stores and caches never reach the image (nor its stamp).
    assert not [f for f in files if f.startswith("feature_repo/data/") or f.endswith((".db", ".pyc"))]
    assert not [f for f in files if "__pycache__" in f]


def test_versions_file_is_plain_key_value() -> None:
    env = read_env_file(HACK / "versions.env")
    assert env["DEBIAN_SUITE"] == "bookworm"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", env["CRANE_VERSION"])
    # The Dockerfile's default base and the mmdebstrap base are the same Debian release.
    assert f"debian:{env['DEBIAN_SUITE']}-slim" in (ROOT / "Dockerfile").read_text()


def _item(name: str, version: str, requires: list[str], **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "version": version, "requires_dist": requires}, **extra}


REPORT: dict[str, Any] = {
    "environment": {
        "python_version": "3.11",
        "python_full_version": "3.11.2",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "os_name": "posix",
    },
    "install": [
        _item(
            "feast",
            "0.67.0",
            ["SQLAlchemy[mypy]>1", "redis>=4; extra == 'redis'", "mypy<2; extra == 'ci'"],
            requested=True,
            requested_extras=["redis"],
        ),
        _item(
            "SQLAlchemy",
            "2.1.9",
            [
                "greenlet>=1; python_version < '3.14'",
                "mypy>=2.4; extra == 'mypy'",
                "types-greenlet>=2; extra == 'mypy'",
            ],
        ),
        _item("greenlet", "3.2.0", []),
        _item("mypy", "2.4.1", ["mypy_extensions>=1.0.0", "pathspec>=1.0.0", "typing_extensions>=4.6"]),
        _item("mypy_extensions", "1.2.0", []),
        _item("pathspec", "1.1.1", []),
        _item("typing_extensions", "4.16.0", []),
        _item("types-greenlet", "3.5.0", []),
        _item("redis", "7.4.1", ["hiredis>=3; extra == 'hiredis'"]),
        _item("hiredis", "3.5.0", []),
        _item("pandera", "0.35.0", ["typing_inspect>=0.6", "typing_extensions"], requested=True),
        _item("typing_inspect", "0.9.0", ["mypy_extensions>=0.3.0"]),
    ],
}


def test_runtime_requirements_drop_only_what_the_extra_alone_needs() -> None:
    pins, left_out = rr.runtime_requirements(REPORT, ["sqlalchemy:mypy"])
    # hiredis: only an extra nobody requested names it (pip would not have resolved it either).
    assert left_out == ["hiredis", "mypy", "pathspec", "types-greenlet"]
    # mypy_extensions and typing_extensions stay: pandera needs them on its own; the requested
    # extra (feast[redis]) is honoured, an unrequested one (redis[hiredis], feast[ci]) is not.
    assert pins == [
        "feast==0.67.0",
        "greenlet==3.2.0",
        "mypy-extensions==1.2.0",
        "pandera==0.35.0",
        "redis==7.4.1",
        "sqlalchemy==2.1.9",
        "typing-extensions==4.16.0",
        "typing-inspect==0.9.0",
    ]
    pins_all, left_all = rr.runtime_requirements(REPORT, [])
    assert "mypy==2.4.1" in pins_all and left_all == ["hiredis"]


def test_runtime_requirements_markers_use_the_target_environment() -> None:
    old = {**REPORT, "environment": {**REPORT["environment"], "python_version": "3.14"}}
    pins, _ = rr.runtime_requirements(old, ["sqlalchemy:mypy"])
    assert "greenlet==3.2.0" not in pins


def test_runtime_requirements_refuses_a_bad_drop_or_a_missing_package(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PACKAGE:EXTRA"):
        rr.runtime_requirements(REPORT, ["sqlalchemy"])
    broken = {**REPORT, "install": [i for i in REPORT["install"] if i["metadata"]["name"] != "greenlet"]}
    with pytest.raises(ValueError, match="greenlet is required"):
        rr.runtime_requirements(broken, [])
    import json

    report = tmp_path / "report.json"
    report.write_text(json.dumps(REPORT))
    out = subprocess.run(
        [
            sys.executable,
            str(HACK / "runtime_requirements.py"),
            str(report),
            "--drop-extra",
            "SQLAlchemy:mypy",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "mypy==" not in out.stdout and "feast==0.67.0" in out.stdout
    assert "left out: hiredis, mypy, pathspec, types-greenlet" in out.stderr


def test_the_lock_must_pin_every_runtime_package(tmp_path: Path) -> None:
    lock = (
        "# header\nfeast==0.67.0\nSQLAlchemy==2.1.9\nasync-timeout==5.0.1 ; python_full_version < '3.11.3'\n"
    )
    assert rr.unlocked(["feast==0.67.0", "sqlalchemy==2.1.9", "async-timeout==5.0.1"], lock) == []
    assert rr.unlocked(["feast==0.67.1", "greenlet==3.2.0"], lock) == ["feast==0.67.1", "greenlet==3.2.0"]
    import json

    report, lock_file = tmp_path / "report.json", tmp_path / "requirements.lock"
    report.write_text(json.dumps(REPORT))
    lock_file.write_text(lock)
    proc = subprocess.run(
        [sys.executable, str(HACK / "runtime_requirements.py"), str(report), "--lock", str(lock_file)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "not pin greenlet==3.2.0" in proc.stderr


def test_the_repository_lock_pins_what_the_images_interpreter_needs() -> None:
    """Debian's python3.11 is 3.11.2: redis needs async-timeout there (below 3.11.3), which a lock
    made on a newer 3.11 leaves out; the image build refuses an unpinned package."""
    assert "async-timeout==" in (ROOT / "requirements.lock").read_text()
