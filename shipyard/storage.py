"""Object stores the model registry runs on, chosen by URI scheme behind one interface.

The registry's guarantees (immutable versions, nothing half-written visible, no lost update between
concurrent writers) rest on one primitive every backend must offer: `create`, an atomic
create-if-absent. A local directory gets it from `os.link` (which fails when the target exists), S3
from a conditional PUT (`If-None-Match: *`). Nothing here takes a lock, so a writer killed at any
point cannot leave a lock behind, and the same code works on a laptop and against a bucket.

Keys are POSIX paths relative to the store's root URI ("index/000000000001.json"); a "prefix" is a
key naming a directory ("versions/<hash>"). Like S3, a store has no directories of its own: a
prefix exists while something is under it.

Adding a backend means one class and one row in `_SCHEMES` (the same shape as Feast's registry
store table): gs:// or az:// would be an fsspec class whose `create` maps the store's own
"precondition failed" to False.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from shipyard.errors import RegistryError

Keys: TypeAlias = list[str]

# In-flight temporaries of LocalStore.create/put. Listings skip them; a crash can strand one, which
# the registry reports as an orphan and removes after its grace period.
TMP_PREFIX = ".tmp-"


def check_key(key: str, *, allow_root: bool = False) -> str:
    """`key` if it is a safe relative POSIX path; keys come from file names a caller chose and from
    manifests read back from storage, so one with ".." or a leading "/" must not reach the disk."""
    if key == "" and allow_root:
        return key
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise RegistryError(f"invalid storage key {key!r}: must be a relative path without '.' or '..'")
    if key != "/".join(parts):
        raise RegistryError(f"invalid storage key {key!r}: not in normal form (no '//' or trailing '/')")
    return key


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


class ObjectStore(ABC):
    """Objects under one root URI, addressed by relative keys."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The object's content, or None if there is no such object."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Atomically create `key` unless it exists: True if this call created it, False if it was
        already there (whoever wrote it). A reader sees the whole content or no object, never part.
        """

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write (or overwrite) an object. Only for keys under a prefix nobody reads yet, i.e. the
        files of a version before its commit marker exists."""

    @abstractmethod
    def put_file(self, key: str, local_path: Path) -> None:
        """`put` with the content of a local file, streamed rather than read into memory."""

    @abstractmethod
    def list(self, prefix: str) -> Keys:
        """Keys of every object under `prefix` (recursive), sorted; empty if there are none."""

    @abstractmethod
    def children(self, prefix: str) -> Keys:
        """Names (not keys) of the objects and sub-prefixes directly under `prefix` ("" = root),
        sorted. Cheaper than `list` when only the first level matters (index snapshots, version
        directories) because the files inside each version are not enumerated."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object with exactly this key exists."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; no error if it is already gone."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under `prefix`; no error if nothing is there."""

    @abstractmethod
    def download_prefix(self, prefix: str, local_dir: Path) -> None:
        """Copy every object under `prefix` to `local_dir`, keeping relative paths."""

    @abstractmethod
    def modified_at(self, key: str) -> datetime | None:
        """When the object, or the newest thing under the prefix, last changed (UTC); None if
        neither exists. Used for grace periods, so "newest" matters: a directory still being
        uploaded keeps looking fresh."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The full URI (or, for a local store, the absolute path) of `key`."""

    @abstractmethod
    def local_dir(self, prefix: str) -> Path | None:
        """The real local path of `prefix` when the store is a local directory, else None. Lets the
        registry use a rename for an atomic directory commit and serve files in place."""


class LocalStore(ObjectStore):
    """A directory on a local (or POSIX network) filesystem.

    Atomicity comes from the filesystem: `create` links a fully written, fsynced temporary file to
    its final name, and `os.link` fails with EEXIST instead of replacing, so exactly one of several
    concurrent creators wins and nobody ever sees a partial file. No fcntl locks: they are advisory,
    do not work on every network filesystem, and are not what S3 offers anyway.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def _path(self, key: str, *, allow_root: bool = False) -> Path:
        check_key(key, allow_root=allow_root)
        return self.root / key if key else self.root

    def _write_temp(self, directory: Path, write: Callable[[Path], object]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            write(tmp)
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._write_temp(path.parent, lambda p: p.write_bytes(data))
        try:
            tmp.chmod(0o444)  # created objects are never rewritten; the mode says so too
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            # e.g. EPERM/ENOTSUP on filesystems without hard links: there is no safe fallback
            # (O_EXCL + write would expose a half-written file), so say what is missing.
            raise RegistryError(
                f"cannot create {path}: the registry needs hard links (os.link) for atomic "
                f"create-if-absent, and this filesystem refused: {exc}"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._write_temp(path.parent, lambda p: p.write_bytes(data)), path)

    def put_file(self, key: str, local_path: Path) -> None:
        path = self._path(key)
        os.replace(self._write_temp(path.parent, lambda p: shutil.copyfile(local_path, p)), path)

    def list(self, prefix: str) -> Keys:
        base = self._path(prefix, allow_root=True)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            keys += [_join("" if rel == "." else rel, f) for f in files if not f.startswith(TMP_PREFIX)]
        return sorted(keys)

    def children(self, prefix: str) -> Keys:
        try:
            return sorted(os.listdir(self._path(prefix, allow_root=True)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def download_prefix(self, prefix: str, local_dir: Path) -> None:
        for key in self.list(prefix):
            target = local_dir / (key[len(prefix) + 1 :] if prefix else key)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._path(key), target)

    def modified_at(self, key: str) -> datetime | None:
        path = self._path(key)
        try:
            newest = path.stat().st_mtime
        except FileNotFoundError:
            return None
        if path.is_dir():
            for dirpath, dirs, files in os.walk(path):
                for name in dirs + files:
                    with contextlib.suppress(FileNotFoundError):  # removed by a concurrent cleanup
                        newest = max(newest, (Path(dirpath) / name).stat().st_mtime)
        return datetime.fromtimestamp(newest, UTC)

    def uri(self, key: str) -> str:
        return str(self._path(key, allow_root=True))

    def local_dir(self, prefix: str) -> Path | None:
        return self._path(prefix, allow_root=True)


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry (link, rename) durable, so a power cut cannot undo a commit that
    another process has already acted on."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A conditional PUT that loses to a concurrent conditional PUT on the same key may get 409
# ConditionalRequestConflict instead of 412 (AWS documents this); the outcome is unknown, so retry.
_CONFLICT_RETRIES = 8


def _client_error(exc: BaseException) -> tuple[str, int | None]:
    """(error code, HTTP status) of a botocore ClientError, whether raised directly or wrapped by
    s3fs into an OSError (its `__cause__`); ("", None) for anything else."""
    for err in (exc, exc.__cause__):
        response = getattr(err, "response", None)
        if isinstance(response, Mapping):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code, status if isinstance(status, int) else None
    return "", None


class S3Store(ObjectStore):
    """A prefix in an S3 bucket (AWS, MinIO, or anything speaking the S3 API with conditional writes).

    Endpoint and credentials come from `storage_options` (s3fs arguments: `endpoint_url`, `key`,
    `secret`, `client_kwargs`, ...) or from the standard AWS configuration: AWS_ENDPOINT_URL_S3 /
    AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, profiles, instance roles. Never from
    code, so the same image runs against MinIO in CI and S3 in production.

    `create` is a PUT with `If-None-Match: *`. s3fs turns the 412 into FileExistsError only when
    the response names the condition (AWS does); MinIO's 412 carries no Condition element and
    arrives as OSError(EINVAL) whose `__cause__` is the botocore ClientError "PreconditionFailed".
    Both mean "someone else created it" and map to False.
    """

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        # Imported here, not at the top: half a second that only S3 registries should pay for. Via
        # importlib because s3fs ships no type information (the module is Any either way).
        s3fs = importlib.import_module("s3fs")

        parts = urlsplit(uri)
        if not parts.netloc:
            raise RegistryError(f"invalid S3 URI {uri!r}: expected s3://bucket[/prefix]")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        if self.prefix:
            check_key(self.prefix)
        # Listings must always come from the server: a cached listing of index/ would make a writer
        # build on a stale snapshot forever (every create would fail) and a reader miss versions.
        options = {**(storage_options or {}), "use_listings_cache": False}
        self.fs = s3fs.S3FileSystem(**options)

    def _path(self, key: str, *, allow_root: bool = False) -> str:
        check_key(key, allow_root=allow_root)
        return "/".join(p for p in (self.bucket, self.prefix, key) if p)

    def _key(self, path: str) -> str:
        base = self._path("", allow_root=True) + "/"
        return path[len(base) :] if path.startswith(base) else path

    def read_bytes(self, key: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None
        return data

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self.fs.pipe_file(path, data, mode="create")
                return True
            except FileExistsError:
                return False
            except Exception as exc:
                code, status = _client_error(exc)
                if code == "PreconditionFailed" or status == 412:
                    return False
                if code == "ConditionalRequestConflict" or status == 409:
                    time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
                    continue
                raise
        raise RegistryError(f"cannot create {self.uri(key)}: conditional writes kept conflicting")

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data)

    def put_file(self, key: str, local_path: Path) -> None:
        self.fs.put_file(str(local_path), self._path(key))

    def _find(self, prefix: str) -> dict[str, dict[str, Any]]:
        base = self._path(prefix, allow_root=True)
        found: dict[str, dict[str, Any]] = self.fs.find(base, detail=True)
        return {p: info for p, info in found.items() if p.startswith(base + "/")}

    def list(self, prefix: str) -> Keys:
        return sorted(self._key(p) for p in self._find(prefix))

    def children(self, prefix: str) -> Keys:
        try:
            paths: list[str] = self.fs.ls(self._path(prefix, allow_root=True), detail=False)
        except FileNotFoundError:
            return []
        return sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in paths})

    def exists(self, key: str) -> bool:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            return False
        return bool(info.get("type") == "file")

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def delete_prefix(self, prefix: str) -> None:
        paths = sorted(self._find(prefix))
        if paths:
            self.fs.rm(paths)

    def download_prefix(self, prefix: str, local_dir: Path) -> None:
        paths = sorted(self._find(prefix))
        base = self._path(prefix, allow_root=True) + "/"
        targets = [local_dir / p[len(base) :] for p in paths]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        if paths:  # one call with lists: s3fs downloads them concurrently
            self.fs.get(paths, [str(t) for t in targets])

    def modified_at(self, key: str) -> datetime | None:
        times = [info["LastModified"] for info in self._find(key).values() if "LastModified" in info]
        try:
            info = self.fs.info(self._path(key))
            if info.get("type") == "file":
                times.append(info["LastModified"])
        except FileNotFoundError:
            pass
        return max(times).astimezone(UTC) if times else None

    def uri(self, key: str) -> str:
        return "s3://" + self._path(key, allow_root=True)

    def local_dir(self, prefix: str) -> Path | None:
        return None


def _local_store(uri: str, storage_options: Mapping[str, Any] | None) -> ObjectStore:
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RegistryError(f"invalid file URI {uri!r}: a remote host is not supported")
        return LocalStore(Path(parts.path))
    return LocalStore(Path(uri))


# Scheme -> factory. "" is a plain path (relative or absolute).
_SCHEMES: dict[str, Callable[[str, Mapping[str, Any] | None], ObjectStore]] = {
    "": _local_store,
    "file": _local_store,
    "s3": S3Store,
}


def scheme_of(uri: str) -> str:
    """The URI scheme, "" for a plain path. Only "<letters>://" counts as a scheme, so a relative
    path with a colon in it is still a path."""
    head, sep, _ = uri.partition("://")
    return head.lower() if sep and head.replace("+", "").replace("-", "").isalnum() else ""


def store_for(uri: str | Path, storage_options: Mapping[str, Any] | None = None) -> ObjectStore:
    """The object store for `uri`, picked by its scheme."""
    text = str(uri)
    scheme = scheme_of(text)
    factory = _SCHEMES.get(scheme)
    if factory is None:
        supported = ", ".join(f"{s}://" for s in sorted(_SCHEMES) if s) + " and plain paths"
        raise RegistryError(f"unsupported storage URI {text!r}: scheme {scheme!r}; supported: {supported}")
    return factory(text, storage_options)
