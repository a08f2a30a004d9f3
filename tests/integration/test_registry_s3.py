"""The model registry on a real S3 server (MinIO): the same contract as on a local directory.

The shared tests are imported from tests/unit/test_registry.py and run here with an s3:// `backend`,
one fresh bucket per test; below them are the S3-only checks (the conditional PUT itself,
configuration from the AWS_* environment, the fetch cache, a storageUri usable without the index).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import RegistryError
from shipyard.registry import ModelRegistry, verify_version_dir
from shipyard.storage import S3Store
from tests.s3server import S3Server
from tests.unit.test_registry import (
    Backend,
    register,
    test_a_corrupt_index_snapshot_is_a_clear_error,
    test_a_killed_registration_leaves_only_a_cleanable_orphan,
    test_a_missing_source_file_leaves_nothing_behind,
    test_a_version_directory_is_self_describing_and_verified,
    test_concurrent_registrations_never_collide_or_lose_a_version,
    test_concurrent_registrations_of_one_fingerprint_make_one_version,
    test_fetch_refuses_a_tampered_version,
    test_metadata_must_make_the_directory_self_describing,
    test_promotion_is_decided_against_the_champion_it_was_evaluated_against,
    test_register_dedupes_and_moves_the_champion,
    test_registering_again_after_a_crash_adopts_the_committed_directory,
    test_same_bytes_under_another_fingerprint_share_one_directory,
    test_set_status_quarantines_and_promotes_atomically,
)

__all__ = [  # the imported contract tests, collected again here against S3
    "test_a_corrupt_index_snapshot_is_a_clear_error",
    "test_a_killed_registration_leaves_only_a_cleanable_orphan",
    "test_a_missing_source_file_leaves_nothing_behind",
    "test_a_version_directory_is_self_describing_and_verified",
    "test_concurrent_registrations_never_collide_or_lose_a_version",
    "test_concurrent_registrations_of_one_fingerprint_make_one_version",
    "test_fetch_refuses_a_tampered_version",
    "test_metadata_must_make_the_directory_self_describing",
    "test_promotion_is_decided_against_the_champion_it_was_evaluated_against",
    "test_register_dedupes_and_moves_the_champion",
    "test_registering_again_after_a_crash_adopts_the_committed_directory",
    "test_same_bytes_under_another_fingerprint_share_one_directory",
    "test_set_status_quarantines_and_promotes_atomically",
]


@pytest.fixture
def backend(s3: S3Server) -> Backend:
    # A prefix inside the bucket, as in production (s3://bucket/models), to catch key-joining bugs.
    return Backend(f"s3://{s3.new_bucket()}/shipyard/models", s3.storage_options)


def test_a_lost_conditional_put_is_reported_as_false(s3: S3Server) -> None:
    store = S3Store(f"s3://{s3.new_bucket()}/p", s3.storage_options)
    assert store.create("index/000000000001.json", b"first")
    assert not store.create("index/000000000001.json", b"second")
    assert store.read_bytes("index/000000000001.json") == b"first"

    barrier = threading.Barrier(12)
    wins: list[bool] = []

    def racer(i: int) -> None:
        barrier.wait()
        wins.append(store.create("index/000000000002.json", f"writer {i}".encode()))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 11 + [True]


def test_endpoint_and_credentials_come_from_the_aws_environment(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no path-style setting from a profile
    reg = ModelRegistry(f"s3://{s3.new_bucket()}/models")  # no storage_options at all
    assert register(reg, "a").entry.version == "v1"
    assert reg.versions() == ModelRegistry(reg.location, s3.storage_options).versions()


def test_fetch_caches_verified_copies_by_content_hash(backend: Backend, tmp_path: Path) -> None:
    reg = backend.registry()
    entry = register(reg, "a").entry
    cache = tmp_path / "cache"
    path = reg.fetch("v1", cache_dir=cache)
    assert path == cache / entry.content_hash
    assert not (path / "model.joblib").stat().st_mode & 0o222
    assert [p.name for p in cache.iterdir()] == [entry.content_hash]  # no download leftovers

    # A damaged cached copy is not served: it is replaced by a fresh, verified download.
    (path / "model.joblib").chmod(0o644)
    (path / "model.joblib").write_bytes(b"damaged")
    assert reg.fetch("v1", cache_dir=cache) == path
    assert (path / "model.joblib").read_bytes() == b"model-a"

    # A verified cached copy is reused without asking the bucket for the files again.
    backend.store().put(f"{entry.path}/model.joblib", b"changed in the bucket")
    assert (reg.fetch("v1", cache_dir=cache) / "model.joblib").read_bytes() == b"model-a"
    with pytest.raises(RegistryError, match="model.joblib: sha256 does not match"):
        reg.fetch("v1", cache_dir=tmp_path / "fresh-cache")


def test_a_version_uri_is_servable_without_the_index(s3: S3Server, backend: Backend, tmp_path: Path) -> None:
    # What KServe's storage initializer does with a storageUri: copy the prefix, nothing else.
    entry = register(backend.registry(), "a").entry
    uri = backend.registry().uri("v1")
    assert uri == f"{backend.uri}/versions/{entry.content_hash}"
    fs: Any = s3.filesystem()
    fs.get(uri + "/", str(tmp_path / "model") + "/", recursive=True)
    doc = verify_version_dir(tmp_path / "model", entry.content_hash)
    assert doc["labels"] == ["billing", "bug", "other"] and doc["name"] == "ticket-router"
