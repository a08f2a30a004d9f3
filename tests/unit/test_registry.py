from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shipyard.errors import ModelNotFoundError, RegistryError
from shipyard.registry import ModelRegistry


def _register(reg: ModelRegistry, fp: str, passed: bool = True, promote: bool = True, files=None):  # type: ignore[no-untyped-def]
    return reg.register(
        files or {"model.joblib": f"model-{fp}".encode()},
        fingerprint=fp,
        passed=passed,
        promote=promote,
        accuracy=0.8,
        macro_f1=0.7,
        feature_service="ticket_routing_v1",
        reason="test",
        render=lambda version, status: {"MODEL_CARD.md": f"# {version} {status}".encode()},
    )


def test_versions_are_immutable_and_verified(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    r = _register(reg, "a")
    assert r.created and r.entry.version == "v1" and r.entry.status == "champion"
    assert (r.path / "MODEL_CARD.md").read_text() == "# v1 champion"
    assert not os.access(r.path / "model.joblib", os.W_OK) or os.geteuid() == 0
    assert not (r.path / "model.joblib").stat().st_mode & 0o222
    assert reg.verify("v1") == r.path
    (r.path / "model.joblib").chmod(0o644)
    (r.path / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="model.joblib is missing or its content changed"):
        reg.verify("v1")


def test_same_fingerprint_is_idempotent(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    first, again = _register(reg, "a"), _register(reg, "a")
    assert not again.created and again.entry.version == first.entry.version
    assert len(reg.versions()) == 1


def test_champion_moves_and_rejected_never_wins(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    _register(reg, "a")
    _register(reg, "b", passed=False)
    champion = reg.champion()
    assert champion is not None and champion.version == "v1"
    _register(reg, "c", promote=False)
    _register(reg, "d")
    statuses = {e.version: e.status for e in reg.versions()}
    assert statuses == {"v1": "retired", "v2": "rejected", "v3": "candidate", "v4": "champion"}


def test_failed_registration_leaves_nothing_behind(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    _register(reg, "a")
    before = (tmp_path / "index.json").read_bytes()
    with pytest.raises(RegistryError, match="does not exist"):
        _register(reg, "b", files={"model.joblib": tmp_path / "nope.joblib"})
    assert (tmp_path / "index.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["v1"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_orphaned_directory_number_is_skipped(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    _register(reg, "a")
    (tmp_path / "versions" / "v2").mkdir()  # e.g. a crash between rename and index update
    assert _register(reg, "b").entry.version == "v3"
    with pytest.raises(ModelNotFoundError):
        reg.get("v2")


def test_corrupt_index_and_remote_uri_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(RegistryError, match="index.json is not valid JSON"):
        ModelRegistry(tmp_path).versions()
    with pytest.raises(RegistryError, match="only local paths"):
        ModelRegistry("s3://bucket/models")
    assert json.loads(json.dumps({"ok": 1}))
