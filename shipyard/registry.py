"""The model registry: immutable, content-hashed versions and one mutable index.

A version directory is written once under a staging name and renamed into place, then made
read-only; the index (status of every version, the champion pointer) is replaced atomically. A run
that fails at any point leaves the index as it was, so a reader never sees half a registration.
An orphaned directory that never made it into the index is invisible and its number is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from shipyard.errors import ModelNotFoundError, RegistryError
from shipyard.hashing import file_sha256, json_sha256

Status = Literal["candidate", "champion", "rejected", "retired"]
INDEX = "index.json"
MANIFEST = "MANIFEST.json"
VERSIONS = "versions"


@dataclass
class VersionEntry:
    version: str
    content_hash: str
    fingerprint: str
    status: Status
    created_at: str
    accuracy: float
    macro_f1: float
    feature_service: str
    reason: str


@dataclass(frozen=True)
class Registration:
    entry: VersionEntry
    created: bool
    path: Path


class ModelRegistry:
    def __init__(self, uri: str | Path) -> None:
        text = str(uri)
        if text.startswith("file://"):
            text = text[len("file://") :]
        elif "://" in text:
            raise RegistryError(
                f"model registry {uri}: only local paths and file:// URIs are supported by this build"
            )
        self.root = Path(text)

    # -- reading -------------------------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        path = self.root / INDEX
        if not path.exists():
            return {"versions": [], "champion": None}
        try:
            index: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RegistryError(f"model registry index {path} is not valid JSON: {exc}") from exc
        return index

    def versions(self) -> list[VersionEntry]:
        return [VersionEntry(**v) for v in self._read_index()["versions"]]

    def get(self, version: str) -> VersionEntry:
        for entry in self.versions():
            if entry.version == version:
                return entry
        raise ModelNotFoundError(f"model version {version!r} not found in {self.root}")

    def champion(self) -> VersionEntry | None:
        name = self._read_index().get("champion")
        return self.get(name) if name else None

    def path(self, version: str) -> Path:
        return self.root / VERSIONS / version

    def verify(self, version: str) -> Path:
        """The version's directory, after checking every file against the recorded content hash."""
        entry = self.get(version)
        vdir = self.path(version)
        manifest_path = vdir / MANIFEST
        if not manifest_path.exists():
            raise RegistryError(f"model version {version}: {manifest_path} is missing")
        manifest = json.loads(manifest_path.read_text())
        if json_sha256(manifest) != entry.content_hash:
            raise RegistryError(f"model version {version}: manifest does not match the registered hash")
        for name, digest in manifest.items():
            file = vdir / name
            if not file.exists() or file_sha256(file) != digest:
                raise RegistryError(f"model version {version}: {name} is missing or its content changed")
        return vdir

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_index(self, index: dict[str, Any]) -> None:
        tmp = self.root / f".{INDEX}.{uuid.uuid4().hex}"
        with tmp.open("w") as fh:
            json.dump(index, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / INDEX)

    def _next_number(self, index: dict[str, Any]) -> int:
        numbers = [int(v["version"][1:]) for v in index["versions"]]
        versions_dir = self.root / VERSIONS
        if versions_dir.exists():
            numbers += [int(p.name[1:]) for p in versions_dir.iterdir() if p.name[1:].isdigit()]
        return max(numbers, default=0) + 1

    def register(
        self,
        files: dict[str, Path | bytes],
        fingerprint: str,
        passed: bool,
        promote: bool,
        accuracy: float,
        macro_f1: float,
        feature_service: str,
        reason: str,
        render: Callable[[str, Status], dict[str, bytes]] | None = None,
    ) -> Registration:
        """Add a version unless one with the same fingerprint exists (then return that one).

        `files` maps names inside the version directory to a source path or literal bytes. A
        version that passed its gates becomes champion when `promote` is set, else candidate; one
        that failed is recorded as rejected and never becomes champion. `render`, given the assigned
        version and status, returns more files (e.g. a model card that names its own version).
        """
        with self._locked():
            index = self._read_index()
            for existing in index["versions"]:
                if existing["fingerprint"] == fingerprint:
                    entry = VersionEntry(**existing)
                    return Registration(entry, False, self.path(entry.version))
            version = f"v{self._next_number(index)}"
            status: Status = "rejected" if not passed else ("champion" if promote else "candidate")
            if render is not None:
                files = {**files, **render(version, status)}
            staging = self.root / f".staging-{uuid.uuid4().hex}"
            staging.mkdir(parents=True)
            try:
                manifest: dict[str, str] = {}
                for name, source in sorted(files.items()):
                    target = staging / name
                    if isinstance(source, bytes):
                        target.write_bytes(source)
                    else:
                        if not source.exists():
                            raise RegistryError(f"cannot register {version}: {source} does not exist")
                        shutil.copyfile(source, target)
                    manifest[name] = file_sha256(target)
                (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
                for file in staging.iterdir():
                    with file.open("rb") as fh:
                        os.fsync(fh.fileno())
                    file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                (self.root / VERSIONS).mkdir(exist_ok=True)
                final = self.path(version)
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise

            entry = VersionEntry(
                version=version,
                content_hash=json_sha256(manifest),
                fingerprint=fingerprint,
                status=status,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                accuracy=accuracy,
                macro_f1=macro_f1,
                feature_service=feature_service,
                reason=reason,
            )
            if status == "champion":
                for other in index["versions"]:
                    if other["status"] == "champion":
                        other["status"] = "retired"
                index["champion"] = version
            index["versions"].append(asdict(entry))
            self._write_index(index)
            return Registration(entry, True, final)
