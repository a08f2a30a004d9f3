"""The model registry on a local directory.

The tests taking `backend` are the registry's contract: tests/integration/test_registry_s3.py imports
them and runs them again against a real S3 server, so both backends are held to the same guarantees
by the same code. Concurrency and crashes use real processes (spawn), not threads, because that is
what the pipeline's steps are.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import ModelNotFoundError, RegistryError
from shipyard.registry import (
    MANIFEST,
    VERSION_FILE,
    ModelRegistry,
    Registration,
    verify_version_dir,
)
from shipyard.storage import LocalStore, ObjectStore, store_for

FS = "ticket_routing_v1"
RACERS = 6
SPAWN = multiprocessing.get_context("spawn")
PROCESS_TIMEOUT_S = 120


@dataclass(frozen=True)
class Backend:
    """Where a test's registry lives; picklable, so worker processes can open it too."""

    uri: str
    storage_options: dict[str, Any] | None = None

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.uri, self.storage_options)

    def store(self) -> ObjectStore:
        """The raw store under the registry, for damaging it the way a bug or a person would."""
        return store_for(self.uri, self.storage_options)


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    return Backend(str(tmp_path / "registry"))


def metadata(**override: Any) -> dict[str, Any]:
    return {
        "name": "ticket-router",
        "project": "ticket_routing",
        "feature_service": FS,
        "labels": ["billing", "bug", "other"],
        "metrics": {"accuracy": 0.8, "macro_f1": 0.7},
        **override,
    }


_CURRENT = "current champion"


def register(
    reg: ModelRegistry,
    fp: str,
    *,
    passed: bool = True,
    promote: bool = True,
    evaluated_against: str | None = _CURRENT,
    files: dict[str, Path | bytes] | None = None,
    before_commit: Callable[[Any], None] | None = None,
) -> Registration:
    """Register a small version; by default evaluated against whatever is champion right now."""
    if evaluated_against == _CURRENT:
        champion = reg.champion()
        evaluated_against = champion.version if champion else None
    return reg.register(
        files if files is not None else {"model.joblib": f"model-{fp}".encode(), "card.json": b"{}\n"},
        metadata(),
        fingerprint=fp,
        passed=passed,
        promote=promote,
        accuracy=0.8,
        macro_f1=0.7,
        feature_service=FS,
        reason="test",
        evaluated_against=evaluated_against,
        _before_commit=before_commit,
    )


# -- the contract: shared with the S3 tests ---------------------------------------------------------


def test_register_dedupes_and_moves_the_champion(backend: Backend) -> None:
    reg = backend.registry()
    assert reg.versions() == [] and reg.champion() is None
    first = register(reg, "a")
    assert first.created and first.entry.version == "v1" and first.entry.status == "champion"
    again = register(reg, "a")
    assert not again.created and again.entry == first.entry and again.uri == first.uri
    register(reg, "b", passed=False)
    register(reg, "c", promote=False)
    assert reg.champion() == reg.get("v1")
    register(reg, "d")
    statuses = {e.version: e.status for e in reg.versions()}
    assert statuses == {"v1": "retired", "v2": "rejected", "v3": "candidate", "v4": "champion"}
    champion = reg.champion()
    assert champion is not None and champion.version == "v4"
    with pytest.raises(ModelNotFoundError, match="v9"):
        reg.get("v9")


def test_a_version_directory_is_self_describing_and_verified(backend: Backend, tmp_path: Path) -> None:
    reg = backend.registry()
    result = register(reg, "a")
    entry = result.entry
    assert entry.path == f"versions/{entry.content_hash}"
    assert reg.uri("v1") == result.uri and result.uri.endswith(entry.path)
    vdir = reg.fetch("v1", cache_dir=tmp_path / "cache")
    doc = verify_version_dir(vdir, entry.content_hash)
    manifest = doc["manifest"]
    assert sorted(manifest) == ["card.json", "model.joblib"]
    assert {k: doc[k] for k in ("schema", "content_hash", "fingerprint", "name", "project")} == {
        "schema": 1,
        "content_hash": entry.content_hash,
        "fingerprint": "a",
        "name": "ticket-router",
        "project": "ticket_routing",
    }
    assert doc["labels"] == ["billing", "bug", "other"] and doc["feature_service"] == FS
    assert doc["created_at"] == entry.created_at and doc["metrics"]["accuracy"] == 0.8
    assert (vdir / "model.joblib").read_bytes() == b"model-a"
    # The version URI alone is enough to get a verifiable copy (what a model server is given).
    copy = tmp_path / "copy"
    store_for(result.uri, backend.storage_options).download_prefix("", copy)
    assert verify_version_dir(copy, entry.content_hash) == doc
    assert sorted(p.name for p in vdir.iterdir()) == [MANIFEST, "card.json", "model.joblib", VERSION_FILE]


def test_fetch_refuses_a_tampered_version(backend: Backend, tmp_path: Path) -> None:
    reg = backend.registry()
    entry = register(reg, "a").entry
    backend.store().put(f"{entry.path}/model.joblib", b"model-A")  # one byte changed
    with pytest.raises(RegistryError, match=r"v1 .*failed verification: .*model.joblib: sha256 does not"):
        reg.fetch("v1", cache_dir=tmp_path / "cache")


def test_promotion_is_decided_against_the_champion_it_was_evaluated_against(backend: Backend) -> None:
    reg = backend.registry()
    register(reg, "a")  # v1 champion
    # "b" was compared with v1, but "c" was promoted (over v1) while "b" was being evaluated.
    register(reg, "c", evaluated_against="v1")
    stale = register(reg, "b", evaluated_against="v1").entry
    assert stale.status == "candidate"
    assert "evaluated against champion v1, but the champion is now v2" in stale.reason
    # A candidate that thought there was no champion does not win either.
    assert register(reg, "d", evaluated_against=None).entry.status == "candidate"
    champion = reg.champion()
    assert champion is not None and champion.version == "v2"
    assert register(reg, "e", evaluated_against="v2").entry.status == "champion"


def test_set_status_quarantines_and_promotes_atomically(backend: Backend) -> None:
    reg = backend.registry()
    register(reg, "a")
    register(reg, "b", promote=False)
    register(reg, "c", passed=False)
    assert reg.set_status("v1", "retired", "quarantined: drift").status == "retired"
    assert reg.champion() is None and reg.get("v1").reason == "quarantined: drift"
    assert reg.set_status("v2", "champion", "manual promotion").status == "champion"
    assert reg.champion() == reg.get("v2")
    with pytest.raises(RegistryError, match="v3 was rejected"):
        reg.set_status("v3", "champion", "no")
    register(reg, "d", promote=False)
    reg.set_status("v4", "champion", "manual")
    assert {e.version: e.status for e in reg.versions()} == {
        "v1": "retired",
        "v2": "retired",
        "v3": "rejected",
        "v4": "champion",
    }
    with pytest.raises(ModelNotFoundError):
        reg.set_status("v7", "retired", "x")


def test_metadata_must_make_the_directory_self_describing(backend: Backend) -> None:
    reg = backend.registry()
    kwargs: dict[str, Any] = dict(
        fingerprint="x",
        passed=True,
        promote=True,
        accuracy=0.8,
        macro_f1=0.7,
        feature_service=FS,
        reason="r",
        evaluated_against=None,
    )
    files: dict[str, Path | bytes] = {"model.joblib": b"m"}
    with pytest.raises(RegistryError, match="lacks labels"):
        reg.register(files, {k: v for k, v in metadata().items() if k != "labels"}, **kwargs)
    with pytest.raises(RegistryError, match="may not set content_hash"):
        reg.register(files, metadata(content_hash="x"), **kwargs)
    with pytest.raises(RegistryError, match="must be plain JSON"):
        reg.register(files, metadata(metrics={"accuracy": float("nan")}), **kwargs)
    with pytest.raises(RegistryError, match="reserved or hidden"):
        reg.register({VERSION_FILE: b"{}"}, metadata(), **kwargs)
    with pytest.raises(RegistryError, match="invalid file name '../x'"):
        reg.register({"../x": b"m"}, metadata(), **kwargs)
    assert reg.versions() == [] and reg.orphans() == []


def test_a_missing_source_file_leaves_nothing_behind(backend: Backend, tmp_path: Path) -> None:
    reg = backend.registry()
    register(reg, "a")
    before = reg.versions()
    with pytest.raises(RegistryError, match="nope.joblib does not exist"):
        register(reg, "b", files={"card.json": b"{}", "model.joblib": tmp_path / "nope.joblib"})
    assert reg.versions() == before and reg.orphans() == []


def test_a_corrupt_index_snapshot_is_a_clear_error(backend: Backend) -> None:
    reg = backend.registry()
    register(reg, "a")
    assert backend.store().create("index/000000000002.json", b"{not json")
    with pytest.raises(RegistryError, match=r"index/000000000002\.json is corrupt"):
        reg.versions()
    with pytest.raises(RegistryError, match=r"index/000000000002\.json is corrupt"):
        register(reg, "b")


def _race(backend: Backend, fingerprint: str, content: bytes, barrier: Any, out: Any) -> None:
    """Worker: wait for every racer, then register one version and report what it got."""
    reg = backend.registry()
    reg.versions()  # connect and import everything first, so all racers really start together
    barrier.wait(timeout=PROCESS_TIMEOUT_S)
    r = register(reg, fingerprint, evaluated_against=None, files={"model.joblib": content})
    out.put((r.entry.version, r.entry.status, r.created, fingerprint))


def _run_racers(backend: Backend, jobs: list[tuple[str, bytes]]) -> list[tuple[str, str, bool, str]]:
    barrier, out = SPAWN.Barrier(len(jobs)), SPAWN.Queue()
    procs = [SPAWN.Process(target=_race, args=(backend, fp, content, barrier, out)) for fp, content in jobs]
    for p in procs:
        p.start()
    results = [out.get(timeout=PROCESS_TIMEOUT_S) for _ in procs]
    for p in procs:
        p.join(timeout=PROCESS_TIMEOUT_S)
        assert p.exitcode == 0
    return results


def test_concurrent_registrations_never_collide_or_lose_a_version(backend: Backend) -> None:
    results = _run_racers(backend, [(f"fp{i}", f"model-{i}".encode()) for i in range(RACERS)])
    reg = backend.registry()
    versions = reg.versions()
    # Every racer's version is in the final index, each under its own number, with its own files.
    assert sorted(e.version for e in versions) == sorted(f"v{i}" for i in range(1, RACERS + 1))
    assert {(e.version, e.fingerprint) for e in versions} == {(v, fp) for v, _, _, fp in results}
    assert all(created for _, _, created, _ in results)
    assert len({e.content_hash for e in versions}) == RACERS
    # All were evaluated against "no champion": exactly one (the first to commit) may win.
    champions = [e for e in versions if e.status == "champion"]
    assert len(champions) == 1 and reg.champion() == champions[0]
    assert all("the champion is now" in e.reason for e in versions if e.status == "candidate")
    assert reg.orphans() == []


def test_concurrent_registrations_of_one_fingerprint_make_one_version(backend: Backend) -> None:
    results = _run_racers(backend, [("same", b"model-same")] * RACERS)
    reg = backend.registry()
    assert [e.version for e in reg.versions()] == ["v1"]
    assert {version for version, _, _, _ in results} == {"v1"}
    assert sum(created for _, _, created, _ in results) == 1
    assert reg.orphans() == []


def _crash(backend: Backend, stage: str, ready: Any) -> None:
    """Worker: register, but freeze at `stage` so the parent can SIGKILL it there."""

    def hook(at: str) -> None:
        if at == stage:
            ready.set()
            threading.Event().wait(PROCESS_TIMEOUT_S)

    register(backend.registry(), "crashed", files={"model.joblib": b"crashed"}, before_commit=hook)


def _kill_during_registration(backend: Backend, stage: str) -> None:
    ready = SPAWN.Event()
    proc = SPAWN.Process(target=_crash, args=(backend, stage, ready))
    proc.start()
    try:
        assert ready.wait(PROCESS_TIMEOUT_S), "the registering process never reached its commit"
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.join(timeout=PROCESS_TIMEOUT_S)
    assert proc.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("stage", ["version", "index"])
def test_a_killed_registration_leaves_only_a_cleanable_orphan(backend: Backend, stage: str) -> None:
    reg = backend.registry()
    register(reg, "a")
    before = reg.versions()
    _kill_during_registration(backend, stage)

    assert reg.versions() == before  # readers are unaffected, nothing to repair by hand
    orphans = reg.orphans()
    assert len(orphans) == 1, orphans
    assert reg.clean_orphans() == []  # younger than the grace period: may be a live registration
    assert reg.clean_orphans(timedelta(0)) == orphans
    assert reg.orphans() == []
    nxt = register(reg, "b")
    assert nxt.created and nxt.entry.version == "v2" and nxt.entry.status == "champion"
    reg.fetch("v2")


def test_registering_again_after_a_crash_adopts_the_committed_directory(backend: Backend) -> None:
    reg = backend.registry()
    _kill_during_registration(backend, "index")  # version directory committed, index not
    assert len(reg.orphans()) == 1
    again = register(reg, "crashed", files={"model.joblib": b"crashed"})
    assert again.created and again.entry.version == "v1"
    assert reg.orphans() == []
    reg.fetch("v1")


# -- local directory specifics -------------------------------------------------------------------


def test_local_versions_are_read_only_and_served_in_place(backend: Backend) -> None:
    reg = backend.registry()
    r = register(reg, "a")
    vdir = Path(r.uri)
    assert vdir.is_absolute() and reg.fetch("v1") == vdir
    for file in vdir.iterdir():
        assert not file.stat().st_mode & 0o222, file
    assert not [p for p in Path(backend.uri).iterdir() if p.name.startswith(".")]


def test_same_bytes_under_another_fingerprint_share_one_directory(backend: Backend) -> None:
    reg = backend.registry()
    files: dict[str, Path | bytes] = {"model.joblib": b"same"}
    a, b = register(reg, "a", files=files), register(reg, "b", files=files)
    assert (a.entry.version, b.entry.version) == ("v1", "v2")
    assert a.uri == b.uri and a.entry.content_hash == b.entry.content_hash
    assert reg.orphans() == []


@pytest.fixture
def version_dir(backend: Backend, tmp_path: Path) -> tuple[Path, str]:
    entry = register(backend.registry(), "a").entry
    copy = tmp_path / "copy"
    copy.mkdir()
    backend.store().download_prefix(entry.path, copy)  # a writable copy to damage
    return copy, entry.content_hash


def test_verify_version_dir_accepts_an_exact_copy(version_dir: tuple[Path, str]) -> None:
    path, content_hash = version_dir
    assert verify_version_dir(path, content_hash)["content_hash"] == content_hash
    assert verify_version_dir(path)["fingerprint"] == "a"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "model.joblib").write_bytes(b"model-A"), r"model.joblib: sha256 does not match"),
        (lambda p: (p / "card.json").unlink(), r"card.json is missing \(listed in MANIFEST.json\)"),
        (lambda p: (p / "extra.bin").write_bytes(b"x"), r"extra.bin is not listed in MANIFEST.json"),
        (lambda p: (p / VERSION_FILE).unlink(), r"version.json is missing"),
        (lambda p: (p / MANIFEST).write_text("[1"), r"MANIFEST.json is not valid JSON"),
        (
            lambda p: (p / MANIFEST).write_text('{"model.joblib": "00"}'),
            r"version.json: its manifest differs from MANIFEST.json",
        ),
    ],
)
def test_verify_version_dir_names_the_broken_file(
    version_dir: tuple[Path, str], damage: Callable[[Path], object], message: str
) -> None:
    path, content_hash = version_dir
    damage(path)
    with pytest.raises(RegistryError, match=message):
        verify_version_dir(path, content_hash)


def test_verify_version_dir_checks_the_expected_hash(version_dir: tuple[Path, str]) -> None:
    path, _ = version_dir
    with pytest.raises(RegistryError, match=r"content hash \w+ is not the expected 0123"):
        verify_version_dir(path, "0123")
    with pytest.raises(RegistryError, match="does not exist"):
        verify_version_dir(path / "nope")


def test_a_forged_manifest_is_caught_by_the_content_hash(version_dir: tuple[Path, str]) -> None:
    # Both manifests rewritten consistently to hide a changed file: the content hash still differs.
    import json

    from shipyard.hashing import file_sha256

    path, content_hash = version_dir
    (path / "model.joblib").write_bytes(b"evil")
    doc = json.loads((path / VERSION_FILE).read_text())
    doc["manifest"]["model.joblib"] = file_sha256(path / "model.joblib")
    (path / MANIFEST).write_text(json.dumps(doc["manifest"]))
    (path / VERSION_FILE).write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match="MANIFEST.json hashes to .* but version.json records"):
        verify_version_dir(path, content_hash)


def test_local_create_is_atomic_create_if_absent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    barrier = threading.Barrier(16)
    wins: list[bool] = []

    def racer(i: int) -> None:
        barrier.wait()
        wins.append(store.create("index/000000000001.json", f"writer {i}".encode()))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 15 + [True]
    assert store.read_bytes("index/000000000001.json") in {f"writer {i}".encode() for i in range(16)}
    assert store.children("index") == ["000000000001.json"]  # no temporaries left


def test_backends_are_chosen_by_scheme(tmp_path: Path) -> None:
    assert isinstance(store_for(tmp_path), LocalStore)
    local = store_for(f"file://{tmp_path}")
    assert isinstance(local, LocalStore) and local.root == tmp_path
    with pytest.raises(RegistryError, match=r"'gs://bucket/models': scheme 'gs'; supported: file://, s3://"):
        ModelRegistry("gs://bucket/models")
    with pytest.raises(RegistryError, match="invalid storage key"):
        store_for(tmp_path).read_bytes("../etc/passwd")


def test_an_old_layout_registry_is_named_not_silently_empty(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"versions": [], "champion": null}')
    with pytest.raises(RegistryError, match="has the old layout"):
        ModelRegistry(tmp_path).versions()


def test_importing_the_registry_stays_light() -> None:
    # Every pipeline step is its own process: s3fs (about half a second) is for s3:// only, and the
    # local backend must not rest on fcntl locks.
    code = (
        "import sys, shipyard.registry; print([m for m in ('s3fs', 'botocore', 'fcntl') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
