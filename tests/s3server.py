"""A real S3 server (MinIO) for tests, run as a local process.

`make k8s-tools` builds the pinned MinIO (hack/k8s-tools/versions.env) into .tools/bin/minio; the
`s3` session fixture (tests/conftest.py) starts one server per test session on free loopback ports,
with throwaway credentials and its data in a temp dir, and stops it by PID afterwards. Tests talk to
it through s3fs with `storage_options`, or hand `env()` to a subprocess; `new_bucket()` gives each
test its own bucket, so one server serves the whole session.

SHIPYARD_MINIO=/path/to/minio overrides the binary (used as is, without the version check).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import fsspec

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONS_FILE = REPO_ROOT / "hack" / "k8s-tools" / "versions.env"
MINIO_STAMP = REPO_ROOT / ".tools" / "stamps" / "minio"
MINIO = Path(os.environ.get("SHIPYARD_MINIO") or REPO_ROOT / ".tools" / "bin" / "minio")
"""The minio binary the fixture runs: the pinned build, or $SHIPYARD_MINIO."""

REGION = "us-east-1"  # what clients sign for; the server has no region set, so it accepts any
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class S3ServerError(RuntimeError):
    """MinIO did not start; the message carries its log tail."""


def pinned_minio_version() -> str:
    """MINIO_VERSION from versions.env, the one file that pins the test tools."""
    for raw in VERSIONS_FILE.read_text().splitlines():
        key, _, value = raw.strip().partition("=")
        if key.strip() == "MINIO_VERSION":
            return value.strip()
    raise KeyError(f"MINIO_VERSION is not set in {VERSIONS_FILE}")


def minio_available() -> bool:
    """Whether the pinned minio is built; a stale build (stamp of another version) counts as missing."""
    if not (MINIO.is_file() and os.access(MINIO, os.X_OK)):
        return False
    if "SHIPYARD_MINIO" in os.environ:
        return True
    built = MINIO_STAMP.read_text().split()[0] if MINIO_STAMP.is_file() else None
    return built == pinned_minio_version()


class S3Server:
    """One MinIO server on 127.0.0.1 with a single-drive data dir; use as a context manager.

    The data dir, minio's certs dir and its log (`log_file`) live in `workdir`, which is deleted on
    `stop()` when the server created it.
    """

    def __init__(self, workdir: Path | None = None, binary: Path = MINIO) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="shipyard-s3-")) if workdir is None else workdir
        self.binary = binary
        self.data_dir = self.workdir / "data"
        self.log_file = self.workdir / "minio.log"
        # MinIO wants a root user of >= 3 and a password of >= 8 characters.
        self.access_key = f"test-{secrets.token_hex(6)}"
        self.secret_key = secrets.token_hex(20)
        self.endpoint_url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0
        self._fs: Any = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> S3Server:
        """Start minio and wait until it is ready to serve requests."""
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Free ports are picked before minio binds them; if another process grabs one in between,
        # minio exits at once and we try again with new ports.
        for attempt in range(3):
            api_port, console_port = _free_ports(2)
            self.endpoint_url = f"http://127.0.0.1:{api_port}"
            self.process = self._spawn(api_port, console_port)
            try:
                self._wait_ready(timeout_s)
            except S3ServerError as error:
                self.stop_process()
                if attempt < 2 and "already in use" in self.log_tail():
                    continue
                self.stop()  # the message carries the log tail; don't leave the temp dir behind
                raise error from None
            break
        self.start_seconds = time.monotonic() - started
        return self

    def _spawn(self, api_port: int, console_port: int) -> subprocess.Popen[bytes]:
        # A clean environment: no MINIO_* or AWS_* settings of the developer's shell leak in, and
        # minio runs the same locally as under CI (it treats CI=... like MINIO_CI_CD).
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_UPDATE": "off",  # no update check against dl.min.io (offline, and quiet)
            "MINIO_BROWSER": "off",  # no web console
            "MINIO_CI_CD": "1",  # test mode: caps minio's buffer pool at 256 MiB instead of half the RAM
        }
        argv = [
            str(self.binary),
            "server",
            str(self.data_dir),
            "--address",
            f"127.0.0.1:{api_port}",
            "--console-address",
            f"127.0.0.1:{console_port}",
            "--certs-dir",  # default ~/.minio/certs: keep it out of the developer's home
            str(self.workdir / "certs"),
            "--quiet",
            "--anonymous",  # no credentials in the startup banner of the log
        ]
        with self.log_file.open("ab") as log:
            return subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise S3ServerError(f"minio exited with code {code}; last log lines:\n{self.log_tail()}")
            try:
                with opener.open(f"{self.endpoint_url}/minio/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise S3ServerError(
                    f"minio not ready after {timeout_s:.0f}s; last log lines:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop_process(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM minio by its PID, SIGKILL it if it has not exited after timeout_s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Stop minio and delete the workdir if this server created it."""
        self._fs = None
        self.stop_process()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.is_file():
            return f"(no log at {self.log_file})"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    # --- clients ---------------------------------------------------------------------------------

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for this server (a fresh dict each time, so callers may change it).

        Path-style addressing (no bucket.127.0.0.1 host names) and the server's region, so the
        client neither guesses a region nor asks the server for one.
        """
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }

    def filesystem(self, **options: Any) -> Any:
        """A new s3fs.S3FileSystem for this server: not fsspec's cached instance, so its own
        connections and listings cache (options override `storage_options`)."""
        return fsspec.filesystem("s3", skip_instance_cache=True, **{**self.storage_options, **options})

    def new_bucket(self, prefix: str = "t") -> str:
        """Create a uniquely named, empty bucket and return its name."""
        if self._fs is None:
            self._fs = self.filesystem()
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self._fs.mkdir(name)
        return name

    def env(self) -> dict[str, str]:
        """Environment variables that point a subprocess's AWS SDK (boto3, s3fs, the AWS CLI) at
        this server; merge them into os.environ. Leaves AWS_PROFILE & co. alone: unset them if the
        developer's shell may set them."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance-metadata endpoint
        }


def _free_ports(count: int) -> list[int]:
    # All sockets stay bound until every port is picked, so the ports are distinct.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if pytest is killed outright, the kernel kills minio too (no orphan keeps
    # the port and the temp dir). It fires when the thread that started minio exits, so start the
    # server from the main thread (session fixtures are).
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)
