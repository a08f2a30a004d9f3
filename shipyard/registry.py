"""The model registry: immutable, content-hashed version directories and an append-only index.

Layout under the registry's root URI (a local directory, file:// or s3://; see `shipyard.storage`):

    versions/<content_hash>/   the version's files, MANIFEST.json ({file: sha256}) and version.json
    index/<seq:012d>.json      full snapshots {"seq", "versions": [...], "champion"}; highest seq wins
    .staging-<uuid>/           (local only) a version directory being written

Why this shape:

* A version directory is named by the hash of its manifest, so its name says what is inside, a
  re-registration of the same bytes lands on the same directory, and `verify_version_dir` can prove a
  copy (a KServe storageUri download, a cache) is exactly what was registered. It is self-describing
  (version.json) so it can be served without the index.
* version.json is written last and is the directory's commit point: locally the whole directory is
  renamed into place (version.json included), on S3 version.json is created after every other file.
  A directory without it is an incomplete upload, never a version.
* The index is never modified in place. A writer reads the newest snapshot, computes the next one and
  creates `index/<seq+1>.json` with the store's atomic create-if-absent; if another writer took that
  number first, it re-reads and tries again. So two concurrent registrations can neither collide nor
  lose one another, and there is no lock for a killed process to leave behind. Promotion is decided
  inside that same step (`evaluated_against`), so "better than the champion" and "becomes champion"
  are one atomic decision.
* A crash at any point leaves at worst an orphan: a version directory (or staging directory) that no
  snapshot references. Readers never look at it; `orphans()` reports it and `clean_orphans()` removes
  it after a grace period (a registration in progress is an orphan for a moment).

Known limit: each snapshot repeats the whole version list, so the index grows with (versions x
writes). That is fine for hundreds of versions; compaction would delete old snapshots, which is only
safe once no writer can still be building on them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError

from shipyard.errors import ModelNotFoundError, RegistryConflictError, RegistryError
from shipyard.hashing import file_sha256, json_sha256
from shipyard.storage import TMP_PREFIX, ObjectStore, check_key, store_for

# quarantined: set aside by a person (e.g. it failed its integrity check); never champion again.
Status = Literal["candidate", "champion", "rejected", "retired", "quarantined"]

SCHEMA = 1
MANIFEST = "MANIFEST.json"
VERSION_FILE = "version.json"
VERSIONS = "versions"
INDEX = "index"
STAGING_PREFIX = ".staging-"
DOWNLOAD_PREFIX = ".download-"
RESERVED_FILES = frozenset({MANIFEST, VERSION_FILE})
# Keys of version.json that `register` computes; a caller's metadata may not set them.
COMPUTED_METADATA = frozenset({"schema", "content_hash", "manifest", "created_at", "fingerprint"})
# What makes a version directory self-describing enough to serve without the index.
REQUIRED_METADATA = ("name", "project", "feature_service", "labels", "metrics")
COMMIT_ATTEMPTS = 50
DEFAULT_GRACE = timedelta(hours=1)

_SNAPSHOT = re.compile(r"(\d{12})\.json")

# Test hook: called with "version" when a version's files are written but the directory is not yet
# committed, and with "index" just before each attempt to commit the index snapshot.
BeforeCommit = Callable[[Literal["version", "index"]], None]


class VersionEntry(BaseModel):
    """One version in the index: the mutable facts (status, reason) about an immutable directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    content_hash: str
    fingerprint: str
    status: Status
    created_at: str
    accuracy: float
    macro_f1: float
    feature_service: str
    reason: str
    path: str  # relative to the registry root: versions/<content_hash>


class IndexSnapshot(BaseModel):
    """The whole registry state at one sequence number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    versions: list[VersionEntry]
    champion: str | None


@dataclass(frozen=True)
class Registration:
    entry: VersionEntry
    created: bool  # False: a version with the same fingerprint already existed and is returned
    uri: str  # the version directory: what a KServe storageUri points at


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dumps(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _check_file_name(name: str) -> str:
    """Names inside a version directory: relative, no hidden components (the stores' temporaries
    are hidden), and not one of the two files the registry writes itself."""
    try:
        check_key(name)
    except RegistryError as exc:
        raise RegistryError(f"invalid file name {name!r} in a model version: {exc}") from exc
    if name in RESERVED_FILES or any(part.startswith(".") for part in name.split("/")):
        raise RegistryError(f"invalid file name {name!r} in a model version: reserved or hidden")
    return name


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise RegistryError(f"{path} is missing: {what}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path} is not valid JSON: {exc}") from exc


def verify_version_dir(path: Path, expected_hash: str | None = None) -> dict[str, Any]:
    """Check that `path` is exactly a registered version and return its parsed version.json.

    Rules, each failure a RegistryError naming the file: version.json and MANIFEST.json exist and
    agree; the manifest hashes to version.json's content_hash (and to `expected_hash` if given, the
    hash the index or a deployment recorded); every listed file exists with its recorded sha256; no
    other file is present. The model server runs this on its model directory before it becomes
    ready, because a storage initializer, a cache or a volume is only trustworthy once checked.
    """
    path = Path(path)
    if not path.is_dir():
        raise RegistryError(f"model version directory {path} does not exist")
    doc = _load_json(
        path / VERSION_FILE, "it is written last, so the version was never committed or was damaged"
    )
    manifest = _load_json(path / MANIFEST, "every version lists its files and their sha256 there")
    if not isinstance(doc, dict):
        raise RegistryError(f"{path / VERSION_FILE}: expected a JSON object")
    if not isinstance(manifest, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()
    ):
        raise RegistryError(f"{path / MANIFEST}: expected an object of file name -> sha256")
    if doc.get("manifest") != manifest:
        raise RegistryError(f"{path / VERSION_FILE}: its manifest differs from {MANIFEST}")
    actual = json_sha256(manifest)
    if doc.get("content_hash") != actual:
        raise RegistryError(
            f"{path / MANIFEST} hashes to {actual}, but {VERSION_FILE} records content_hash "
            f"{doc.get('content_hash')}"
        )
    if expected_hash is not None and actual != expected_hash:
        raise RegistryError(f"{path}: content hash {actual} is not the expected {expected_hash}")
    for name, digest in sorted(manifest.items()):
        _check_file_name(name)
        file = path / name
        if not file.is_file():
            raise RegistryError(f"{file} is missing (listed in {MANIFEST})")
        if file_sha256(file) != digest:
            raise RegistryError(f"{file}: sha256 does not match {MANIFEST} (the file changed)")
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel not in manifest and rel not in RESERVED_FILES:
            raise RegistryError(f"{file} is not listed in {MANIFEST} (an unexpected file)")
    return doc


def _make_read_only(root: Path) -> None:
    for file in root.rglob("*"):
        if file.is_file():
            file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every staged file and directory entry before the rename publishes them, so a power cut
    cannot leave a committed name with empty files behind it."""
    for path in [*root.rglob("*"), root]:
        _fsync_path(path)


def _discard(path: Path) -> None:
    """Remove a local directory we own (staging, a stale download), read-only files included."""
    shutil.rmtree(path, ignore_errors=True)


def _discard_stale_downloads(cache: Path) -> None:
    """Remove what killed fetches left in the cache (temporary directories under a hidden name,
    never a finished copy); only old ones, since a younger one may be a download in progress."""
    cutoff = time.time() - DEFAULT_GRACE.total_seconds()
    for path in cache.glob(f"{DOWNLOAD_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                _discard(path)


def default_cache_dir() -> Path:
    """Where `fetch` keeps verified copies of remote versions: one directory per content hash, so a
    copy is reused by every later fetch of the same bytes, from any registry."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shipyard" / "models"


class ModelRegistry:
    """One registry at one root URI. Holds no state between calls but the store handle: every read
    goes to the newest index snapshot, so several processes (pipeline steps, the CLI, a model
    server) can share a registry without coordinating."""

    def __init__(self, uri: str | Path, storage_options: Mapping[str, Any] | None = None) -> None:
        """`uri`: a path, file:// or s3:// URI. `storage_options` go to the backend (for S3 the
        s3fs arguments); without them S3 uses the standard AWS_* environment."""
        self.store: ObjectStore = store_for(uri, storage_options)
        self.location = self.store.uri("")

    # -- reading -------------------------------------------------------------------------------
    def _snapshot_key(self, seq: int) -> str:
        return f"{INDEX}/{seq:012d}.json"

    def _latest(self) -> IndexSnapshot:
        try:
            names = self.store.children(INDEX)
        except RegistryError:
            raise
        except Exception as exc:  # no credentials, endpoint down, DNS: one line for a person, not a trace
            raise RegistryError(
                f"model registry {self.location} is unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        seqs = [int(m.group(1)) for n in names if (m := _SNAPSHOT.fullmatch(n))]
        if not seqs:
            if self.store.exists("index.json"):
                raise RegistryError(
                    f"model registry {self.location} has the old layout (index.json, versions/vN); "
                    "this version reads index/<seq>.json and versions/<hash>: move it aside and "
                    "register again"
                )
            return IndexSnapshot(seq=0, versions=[], champion=None)
        return self._read_snapshot(max(seqs))

    def _read_snapshot(self, seq: int) -> IndexSnapshot:
        key = self._snapshot_key(seq)
        data = self.store.read_bytes(key)
        if data is None:  # snapshots are never deleted, so a listed one must be readable
            raise RegistryError(f"model registry index snapshot {self.store.uri(key)} vanished")
        try:
            snapshot = IndexSnapshot.model_validate_json(data)
        except ValidationError as exc:
            raise RegistryError(
                f"model registry index snapshot {self.store.uri(key)} is corrupt (not valid JSON or "
                f"not a snapshot): {exc.errors(include_url=False)[0]['msg']}"
            ) from exc
        if snapshot.seq != seq:
            raise RegistryError(
                f"model registry index snapshot {self.store.uri(key)} says seq {snapshot.seq}"
            )
        return snapshot

    def versions(self) -> list[VersionEntry]:
        return list(self._latest().versions)

    def get(self, version: str) -> VersionEntry:
        return self._find(self._latest(), version)

    def _find(self, snapshot: IndexSnapshot, version: str) -> VersionEntry:
        for entry in snapshot.versions:
            if entry.version == version:
                return entry
        raise ModelNotFoundError(f"model version {version!r} not found in {self.location}")

    def champion(self) -> VersionEntry | None:
        snapshot = self._latest()
        return self._find(snapshot, snapshot.champion) if snapshot.champion else None

    def uri(self, version: str) -> str:
        """The version directory's URI (absolute path for a local registry)."""
        return self.store.uri(self.get(version).path)

    def fetch(self, version: str, cache_dir: Path | None = None) -> Path:
        """A verified local directory holding `version`.

        Local registry: the version directory itself, after `verify_version_dir`. Remote: a copy in
        `cache_dir/<content_hash>` (default `default_cache_dir()`), downloaded into a temporary
        directory, verified, and renamed into place, so a concurrent or killed fetch never leaves a
        half copy under the final name; an existing copy is verified and reused.
        """
        entry = self.get(version)
        local = self.store.local_dir(entry.path)
        if local is not None:
            self._verify(local, entry)
            return local
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target = cache / entry.content_hash
        if target.exists():
            try:
                self._verify(target, entry)
                return target
            except RegistryError:
                stale = cache / f"{DOWNLOAD_PREFIX}{uuid.uuid4().hex}"
                with contextlib.suppress(FileNotFoundError):  # a concurrent fetch moved it already
                    os.rename(target, stale)  # out of the way atomically, then delete at leisure
                _discard(stale)
        cache.mkdir(parents=True, exist_ok=True)
        _discard_stale_downloads(cache)
        tmp = cache / f"{DOWNLOAD_PREFIX}{uuid.uuid4().hex}"
        try:
            tmp.mkdir()
            self.store.download_prefix(entry.path, tmp)
            self._verify(tmp, entry, shown=self.store.uri(entry.path))
            _make_read_only(tmp)
            try:
                os.rename(tmp, target)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                self._verify(target, entry)  # a concurrent fetch got there first
        finally:
            _discard(tmp)
        return target

    def _verify(self, path: Path, entry: VersionEntry, shown: str | None = None) -> dict[str, Any]:
        try:
            return verify_version_dir(path, entry.content_hash)
        except RegistryError as exc:
            where = f" ({shown})" if shown else ""
            raise RegistryError(f"model version {entry.version}{where} failed verification: {exc}") from exc

    # -- writing -------------------------------------------------------------------------------
    def register(
        self,
        files: Mapping[str, Path | bytes],
        metadata: Mapping[str, Any],
        fingerprint: str,
        passed: bool,
        promote: bool,
        accuracy: float,
        macro_f1: float,
        feature_service: str,
        reason: str,
        evaluated_against: str | None,
        *,
        _before_commit: BeforeCommit | None = None,
    ) -> Registration:
        """Add a version unless one with the same fingerprint exists (then return that one).

        `files` maps names inside the version directory to a source path or literal bytes.
        `metadata` goes into version.json and must name at least name, project, feature_service,
        labels and metrics; content_hash, manifest, created_at and fingerprint are added here.

        Status: rejected if not `passed`; candidate if not `promote`; champion only if the index's
        champion is still `evaluated_against` (the version the candidate was compared with, None if
        there was none). Otherwise someone promoted another model while this one was evaluated, the
        comparison is stale, and the version stays a candidate with a reason saying so. Becoming
        champion retires the previous champion in the same snapshot.

        `_before_commit` is for tests only (crash simulation); see `BeforeCommit`.
        """
        files = {_check_file_name(name): source for name, source in files.items()}
        if not files:
            raise RegistryError("cannot register a model version without files")
        missing = [key for key in REQUIRED_METADATA if key not in metadata]
        if missing:
            raise RegistryError(f"version metadata lacks {', '.join(missing)}")
        clash = sorted(COMPUTED_METADATA & set(metadata))
        if clash:
            raise RegistryError(
                f"version metadata may not set {', '.join(clash)}: the registry computes them"
            )
        try:
            json.dumps(dict(metadata), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RegistryError(
                f"version metadata must be plain JSON (str, numbers, lists, dicts): {exc}"
            ) from exc
        if metadata["feature_service"] != feature_service:
            raise RegistryError(
                f"metadata feature_service {metadata['feature_service']!r} != {feature_service!r}"
            )

        snapshot = self._latest()
        if (existing := _by_fingerprint(snapshot, fingerprint)) is not None:
            return Registration(existing, False, self.store.uri(existing.path))

        created_at = _now()
        doc = {**metadata, "schema": SCHEMA, "fingerprint": fingerprint, "created_at": created_at}
        content_hash = self._publish(files, doc, _before_commit)
        path = f"{VERSIONS}/{content_hash}"

        for attempt in range(COMMIT_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.005 * min(attempt, 20)))
                snapshot = self._latest()
                if (existing := _by_fingerprint(snapshot, fingerprint)) is not None:
                    # A concurrent run with the same fingerprint won; our directory (if its bytes
                    # differ) is left as an orphan for clean_orphans rather than deleted here, since
                    # a third registration of the same bytes might be about to reference it.
                    return Registration(existing, False, self.store.uri(existing.path))
            status, why = _decide(snapshot, passed, promote, evaluated_against)
            entry = VersionEntry(
                version=f"v{_max_number(snapshot) + 1}",
                content_hash=content_hash,
                fingerprint=fingerprint,
                status=status,
                created_at=created_at,
                accuracy=accuracy,
                macro_f1=macro_f1,
                feature_service=feature_service,
                reason=reason if why is None else f"{reason}; {why}",
                path=path,
            )
            versions = [_retired(e) if status == "champion" else e for e in snapshot.versions]
            champion = entry.version if status == "champion" else snapshot.champion
            if _before_commit is not None:
                _before_commit("index")
            if self._commit(snapshot, [*versions, entry], champion):
                break
        else:
            raise RegistryConflictError(
                f"model registry {self.location}: could not commit the index in {COMMIT_ATTEMPTS} "
                "attempts; too many concurrent writers"
            )
        if not self.store.exists(f"{path}/{VERSION_FILE}"):
            # Only if clean_orphans removed a byte-identical orphan directory in the instant between
            # our publish and our index commit: publish again so the entry points at real files.
            self._publish(files, doc, None)
        return Registration(entry, True, self.store.uri(path))

    def import_version(self, source: ModelRegistry, version: str, reason: str) -> Registration:
        """Copy `version` of another environment's registry here, byte for byte, under the same label.

        Promotion moves a model between environments without retraining it: prod serves exactly the
        bytes staging validated. The copy is verified against the source's content hash before it is
        committed, and it keeps its label so "v7" names the same model in every environment. Being a
        copy, it arrives as a candidate: the release record, not this registry, says what serves.
        Idempotent; a different version already holding the label (or the hash) is an error, since
        this registry would then disagree with the one it mirrors.
        """
        entry = source.get(version)
        snapshot = self._latest()
        for mine in snapshot.versions:
            if mine.version == entry.version or mine.content_hash == entry.content_hash:
                if (mine.version, mine.content_hash) == (entry.version, entry.content_hash):
                    return Registration(mine, False, self.store.uri(mine.path))
                raise RegistryError(
                    f"cannot import {entry.version} ({entry.content_hash[:12]}) from {source.location} "
                    f"into {self.location}: it already holds {mine.version} ({mine.content_hash[:12]})"
                )
        local = source.fetch(version, default_cache_dir())
        doc = verify_version_dir(local, entry.content_hash)
        manifest: dict[str, str] = doc["manifest"]
        files: dict[str, Path | bytes] = {name: local / name for name in manifest}
        metadata = {k: v for k, v in doc.items() if k not in ("content_hash", "manifest")}
        content_hash = self._publish(files, metadata, None)
        if content_hash != entry.content_hash:  # the same files and metadata must hash the same
            raise RegistryError(f"copy of {entry.version} hashed to {content_hash}, not {entry.content_hash}")
        imported = entry.model_copy(update={"status": "candidate", "reason": reason})
        for attempt in range(COMMIT_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.005 * min(attempt, 20)))
                snapshot = self._latest()
                if any(e.version == entry.version for e in snapshot.versions):
                    return self.import_version(source, version, reason)  # a concurrent import won
            if self._commit(snapshot, [*snapshot.versions, imported], snapshot.champion):
                return Registration(imported, True, self.store.uri(imported.path))
        raise RegistryConflictError(
            f"model registry {self.location}: could not commit the index in {COMMIT_ATTEMPTS} attempts"
        )

    def set_status(self, version: str, status: Status, reason: str) -> VersionEntry:
        """Change a version's status (quarantine, retire, manual promotion), atomically like a
        registration. Making a version champion retires the previous one; taking the status away
        from the champion leaves the registry without one (serving then refuses to guess)."""
        for attempt in range(COMMIT_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.005 * min(attempt, 20)))
            snapshot = self._latest()
            current = self._find(snapshot, version)
            if status == "champion" and current.status in ("rejected", "quarantined"):
                why = "was rejected by its gates" if current.status == "rejected" else "is quarantined"
                raise RegistryError(f"model version {version} {why} and cannot be champion")
            updated = current.model_copy(update={"status": status, "reason": reason})
            if updated == current:
                return current
            champion = snapshot.champion
            versions = []
            for e in snapshot.versions:
                if e.version == version:
                    versions.append(updated)
                elif status == "champion" and e.status == "champion":
                    versions.append(_retired(e))
                else:
                    versions.append(e)
            if status == "champion":
                champion = version
            elif champion == version:
                champion = None
            if self._commit(snapshot, versions, champion):
                return updated
        raise RegistryConflictError(
            f"model registry {self.location}: could not commit the index in {COMMIT_ATTEMPTS} attempts"
        )

    def _commit(self, base: IndexSnapshot, versions: list[VersionEntry], champion: str | None) -> bool:
        """Create the snapshot after `base`; False if another writer created that number first."""
        new = IndexSnapshot(seq=base.seq + 1, versions=versions, champion=champion)
        return self.store.create(self._snapshot_key(new.seq), _dumps(new.model_dump()))

    def _publish(
        self, files: Mapping[str, Path | bytes], doc: dict[str, Any], hook: BeforeCommit | None
    ) -> str:
        """Write and commit the version directory; returns its content hash. Idempotent: if a
        directory with the same content is already committed, it is checked and reused."""
        root = self.store.local_dir("")
        if root is not None:
            return self._publish_local(root, files, doc, hook)
        return self._publish_remote(files, doc, hook)

    def _publish_local(
        self, root: Path, files: Mapping[str, Path | bytes], doc: dict[str, Any], hook: BeforeCommit | None
    ) -> str:
        """Stage everything (version.json included) in a hidden directory next to versions/, fsync,
        make the files read-only, and rename: the rename is atomic, so versions/<hash> is either
        absent or complete. Renaming onto an existing non-empty directory fails, which is how a
        concurrent or repeated registration of the same bytes is detected."""
        staging = root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            manifest: dict[str, str] = {}
            for name, source in sorted(files.items()):
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(source, bytes):
                    target.write_bytes(source)
                else:
                    _require_source(source)
                    shutil.copyfile(source, target)
                manifest[name] = file_sha256(target)  # the staged copy is what gets committed
            content_hash = json_sha256(manifest)
            (staging / MANIFEST).write_bytes(_dumps(manifest))
            (staging / VERSION_FILE).write_bytes(
                _dumps({**doc, "content_hash": content_hash, "manifest": manifest})
            )
            _make_read_only(staging)
            _fsync_tree(staging)
            if hook is not None:
                hook("version")
            versions_dir = root / VERSIONS
            versions_dir.mkdir(exist_ok=True)
            final = versions_dir / content_hash
            try:
                os.rename(staging, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                verify_version_dir(final, content_hash)
            else:
                _fsync_path(versions_dir)
            return content_hash
        finally:
            _discard(staging)  # after a successful rename there is nothing left to discard

    def _publish_remote(
        self, files: Mapping[str, Path | bytes], doc: dict[str, Any], hook: BeforeCommit | None
    ) -> str:
        """Upload the files under versions/<hash>/, then create version.json (the commit point).
        Before it exists nobody reads the prefix, so plain puts are fine; a concurrent upload of
        the same hash writes the same bytes, and exactly one create of version.json wins."""
        manifest: dict[str, str] = {}
        for name, source in sorted(files.items()):
            if isinstance(source, bytes):
                manifest[name] = hashlib.sha256(source).hexdigest()
            else:
                _require_source(source)
                manifest[name] = file_sha256(source)
        content_hash = json_sha256(manifest)
        prefix = f"{VERSIONS}/{content_hash}"
        marker = f"{prefix}/{VERSION_FILE}"
        if self.store.exists(marker):
            self._check_remote_marker(marker, content_hash, manifest)
            return content_hash
        for name, source in sorted(files.items()):
            if isinstance(source, bytes):
                self.store.put(f"{prefix}/{name}", source)
            else:
                self.store.put_file(f"{prefix}/{name}", source)
        self.store.put(f"{prefix}/{MANIFEST}", _dumps(manifest))
        if hook is not None:
            hook("version")
        version_doc = _dumps({**doc, "content_hash": content_hash, "manifest": manifest})
        if not self.store.create(marker, version_doc):
            self._check_remote_marker(marker, content_hash, manifest)
        return content_hash

    def _check_remote_marker(self, key: str, content_hash: str, manifest: dict[str, str]) -> None:
        """An existing version.json must describe the same bytes; anything else is damage."""
        data = self.store.read_bytes(key)
        try:
            doc = json.loads(data) if data is not None else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None
        if (
            not isinstance(doc, dict)
            or doc.get("content_hash") != content_hash
            or doc.get("manifest") != manifest
        ):
            raise RegistryError(
                f"{self.store.uri(key)} exists but does not describe content {content_hash}: the "
                "version directory is damaged; remove it so it can be registered again"
            )

    # -- orphans -------------------------------------------------------------------------------
    def _orphan_keys(self) -> list[str]:
        # List before reading the index: a directory committed to the index in between is then
        # correctly not an orphan (the other order would report it).
        candidates = [f"{VERSIONS}/{name}" for name in self.store.children(VERSIONS)]
        candidates += [name for name in self.store.children("") if name.startswith(STAGING_PREFIX)]
        candidates += [
            f"{INDEX}/{name}" for name in self.store.children(INDEX) if name.startswith(TMP_PREFIX)
        ]
        referenced = {entry.path for entry in self._latest().versions}
        return [key for key in candidates if key not in referenced]

    def orphans(self) -> list[str]:
        """URIs of what a crashed or in-progress write left outside the index: version directories
        no snapshot references, local staging directories and temporary files. Readers ignore them;
        a registration in progress shows up here until its index commit."""
        return [self.store.uri(key) for key in self._orphan_keys()]

    def clean_orphans(self, older_than: timedelta = DEFAULT_GRACE) -> list[str]:
        """Remove orphans whose newest file is older than `older_than`; returns their URIs.

        The grace period is what makes this safe to run at any time: a registration in progress
        writes continuously and commits within seconds, so its directory is never that old. Each
        candidate is re-checked against a fresh index just before removal, and a version directory
        loses its version.json first, so a removal cut short leaves an incomplete directory (an
        orphan again), never one that looks committed.
        """
        cutoff = datetime.now(UTC) - older_than
        removed = []
        for key in self._orphan_keys():
            modified = self.store.modified_at(key)
            if modified is not None and modified > cutoff:
                continue
            if key.startswith(f"{VERSIONS}/"):
                if key in {entry.path for entry in self._latest().versions}:
                    continue
                self.store.delete(f"{key}/{VERSION_FILE}")
                self.store.delete_prefix(key)
            elif key.startswith(f"{INDEX}/"):
                self.store.delete(key)
            else:
                self.store.delete_prefix(key)
            removed.append(self.store.uri(key))
        return removed


def _require_source(source: Path) -> None:
    if not Path(source).is_file():
        raise RegistryError(f"cannot register a model version: {source} does not exist")


def _by_fingerprint(snapshot: IndexSnapshot, fingerprint: str) -> VersionEntry | None:
    return next((e for e in snapshot.versions if e.fingerprint == fingerprint), None)


def _max_number(snapshot: IndexSnapshot) -> int:
    return max((int(e.version[1:]) for e in snapshot.versions if e.version[1:].isdigit()), default=0)


def _retired(entry: VersionEntry) -> VersionEntry:
    return entry.model_copy(update={"status": "retired"}) if entry.status == "champion" else entry


def _decide(
    snapshot: IndexSnapshot, passed: bool, promote: bool, evaluated_against: str | None
) -> tuple[Status, str | None]:
    """The status a new version gets against `snapshot`, and a note to append to its reason."""
    if not passed:
        return "rejected", None
    if not promote:
        return "candidate", None
    if snapshot.champion != evaluated_against:
        return "candidate", (
            f"not promoted: it was evaluated against champion {evaluated_against or '(none)'}, but the "
            f"champion is now {snapshot.champion or '(none)'}"
        )
    return "champion", None


def champion_inputs(registry: str, cache: Path, say: TextIO) -> dict[str, str]:
    """The champion as training-pipeline inputs: its content-addressed URI and its version number.

    Its integrity is checked here, up front: a corrupt champion must not fail the run after the
    whole training step, nor be compared against. The run then evaluates without a champion and
    registers at most a candidate, and `say` tells how to recover.
    """
    reg = ModelRegistry(registry)
    champion = reg.champion()
    if champion is None:
        return {"champion_uri": "", "champion_version": ""}
    try:
        reg.fetch(champion.version, cache)
    except RegistryError as exc:
        say.write(
            f"champion {champion.version} failed its integrity check ({exc}); evaluating without a "
            f"champion, so a passing model stays a candidate. Set it aside with `shipyard models "
            f"quarantine {champion.version} --reason ...`, then `shipyard models promote <version>`.\n"
        )
        return {"champion_uri": "", "champion_version": ""}
    return {"champion_uri": reg.uri(champion.version), "champion_version": champion.version}
