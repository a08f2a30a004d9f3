"""The image as built: who it runs as, where its code is imported from, what it holds and what not."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from tests.image.engine import ROOT, SITE_PACKAGES, UID, Engine, built

MODULES = ("shipyard", "serving", "ticket_routing", "components", "kfp", "feast", "kserve")

IMPORTS = f"""
import importlib, json, os, sys
mods = {{m: importlib.import_module(m).__file__ for m in {MODULES!r}}}
print(json.dumps({{
    "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "modules": mods,
    "executable": sys.executable, "real": os.path.realpath(sys.executable),
    "version": sys.version, "path": sys.path,
}}))
"""


def test_imports_resolve_to_site_packages_as_uid_10001(engine: Engine) -> None:
    got = engine.python(IMPORTS)
    assert (got["uid"], got["gid"]) == (UID, UID)
    assert got["cwd"] == "/opt/shipyard"
    for module, path in got["modules"].items():
        assert path.startswith(SITE_PACKAGES), f"{module} imported from {path}, not the installed package"
    # Debian bookworm's own interpreter, through the venv.
    assert got["executable"] == "/opt/venv/bin/python"
    assert got["real"] == "/usr/bin/python3.11"
    assert got["version"].startswith("3.11.")


def test_the_source_tree_cannot_shadow_the_installed_package(engine: Engine) -> None:
    """The working directory (first on sys.path for `python -m`/`-c`, as KFP's executor runs) holds
    data and settings only: no Python package of ours is there to be imported instead."""
    got = engine.python(
        "import json, os\n"
        "print(json.dumps(sorted(os.path.join(d, f) for d, _, fs in os.walk('/opt/shipyard') for f in fs)))"
    )
    packages = [p for p in got if p.endswith("__init__.py")]
    assert not packages, packages
    assert "/opt/shipyard/feature_repo/feature_views.py" in got
    assert "/opt/shipyard/environments/dev.yaml" in got
    # Continuous training submits the compiled training pipeline from here (kfp.training_package).
    assert "/opt/shipyard/pipelines/training.yaml" in got
    # The generated data and local stores stay out (.dockerignore).
    assert not [p for p in got if "/data/" in p or p.endswith(".db")], got
    # And the same holds from another directory: imports do not depend on where the process starts.
    elsewhere = engine.python(IMPORTS, workdir="/tmp")
    assert all(p.startswith(SITE_PACKAGES) for p in elsewhere["modules"].values())


def test_trimmed_no_mypy_no_dev_tools_and_feast_still_works(engine: Engine) -> None:
    got = engine.python(
        """
import importlib.util as u, json
from importlib import metadata
import feast, sqlalchemy
from feast import Entity, FeatureStore, FeatureView, Field
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.infra.online_stores.redis import RedisOnlineStore
import feast.infra.registry.sql  # the SQL registry of the deployed environments (SQLAlchemy)
installed = sorted(d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions())
print(json.dumps({
    "absent": {m: u.find_spec(m) is None for m in ("mypy", "pip", "pytest", "ruff", "docker")},
    "feast": feast.__version__, "sqlalchemy": sqlalchemy.__version__,
    "installed": installed,
    "pinned": [l.split("==")[0] for l in open("/opt/venv/runtime-requirements.txt").read().split()],
}))
"""
    )
    assert all(got["absent"].values()), got["absent"]
    assert got["feast"] == metadata.version("feast")
    assert got["sqlalchemy"] == metadata.version("sqlalchemy")
    assert "mypy" not in got["installed"] and "types-greenlet" not in got["installed"]
    # Exactly the pinned runtime closure plus the shipyard package itself, nothing else.
    assert sorted({*got["pinned"], "shipyard"}) == got["installed"]
    # The same versions as the lock the checkout is tested with (setuptools, which `pip freeze` and
    # so the lock never list, is pinned by the Dockerfile's SETUPTOOLS_VERSION).
    lock: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            lock[name.strip().lower().replace("_", "-")] = version.strip()
    setuptools = re.search(r"^ARG SETUPTOOLS_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert setuptools is not None
    lock["setuptools"] = setuptools.group(1)
    pins = engine.python(
        "import json; print(json.dumps(open('/opt/venv/runtime-requirements.txt').read().split()))"
    )
    for pin in pins:
        name, version = pin.split("==")
        assert lock.get(name) == version, f"{pin} differs from requirements.lock ({lock.get(name)})"


def test_image_metadata_records_base_version_and_user(engine: Engine) -> None:
    info = engine.inspect()
    config = info.get("Config") or info.get("ContainerConfig") or {}
    labels = config.get("Labels") or info.get("Labels") or {}
    assert str(config.get("User")) == str(UID)
    assert labels["org.opencontainers.image.version"] == metadata.version("shipyard")
    digest = labels["org.opencontainers.image.base.digest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    recorded = built()
    if recorded:
        assert recorded["BASE_DIGEST"] == digest
        assert labels["org.opencontainers.image.base.name"] == recorded["BASE_REF"]
    env = dict(e.split("=", 1) for e in config.get("Env") or [])
    assert env["SHIPYARD_HOME"] == "/opt/shipyard"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_the_packaged_debian_list_is_the_one_in_the_repo(engine: Engine) -> None:
    got = engine.python(
        "import json; print(json.dumps(open('/usr/local/share/shipyard/debian-packages.txt').read()))"
    )
    assert got == (Path(ROOT) / "hack" / "image" / "debian-packages.txt").read_text()


def test_the_retrain_step_can_reach_kfp_from_a_pipeline_step(engine: Engine) -> None:
    """The retrain component runs as KFP runs every step (_KFP_RUNTIME=true: kfp's compile-time modules
    are not imported); from there it builds kfp's client and submits the package each environment
    names, which the image carries under SHIPYARD_HOME."""
    got = engine.python(
        """
import json, os
from pathlib import Path
import shipyard.pipeline_runs  # noqa
from kfp.dsl import component_factory  # as shipyard.pipeline_runs.client does, before the client
from kfp.client import Client
from shipyard.settings import load_settings
home = Path(os.environ["SHIPYARD_HOME"])
print(json.dumps({
    "client": Client.__module__,
    "packages": {
        e: (home / load_settings(e).kfp.training_package).is_file() for e in ("dev", "staging", "prod")
    },
}))
""",
        env={"_KFP_RUNTIME": "true"},
    )
    assert got["client"] == "kfp.client.client"
    assert got["packages"] == {"dev": True, "staging": True, "prod": True}
