"""The container engine the image tests drive: podman (with hack/image/containers.conf) where the
image was built with buildah, docker where it was built with docker.

`make image` records which engine holds the image in .tools/image/image.env; without that file the
tests use podman when it is installed. Every container a test starts is removed by the test, by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import require

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack" / "image"
STATE = ROOT / ".tools" / "image"
CRANE = ROOT / ".tools" / "bin" / "crane"
CONTAINERS_CONF = HACK / "containers.conf"
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages/"
UID = 10001


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines ignored), as build.sh and versions.env write them."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def built() -> dict[str, str]:
    """What `make image` recorded: IMAGE, IMAGE_ID, IMAGE_ENGINE, BASE_REF, BASE_DIGEST."""
    return read_env_file(STATE / "image.env")


def engine_env() -> dict[str, str]:
    """The environment for podman/buildah/skopeo: this VM's settings, nothing system-wide."""
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


@dataclass(frozen=True)
class Engine:
    """A container CLI (podman or docker) and the image under test."""

    cli: str
    image: str
    env: Mapping[str, str] = field(default_factory=engine_env)

    @property
    def is_podman(self) -> bool:
        return Path(self.cli).name == "podman"

    def call(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.cli, *args], capture_output=True, text=True, timeout=timeout, env=dict(self.env)
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.cli} {' '.join(args)[:300]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-3000:]}"
            )
        return proc

    def has_image(self) -> bool:
        return self.call("image", "inspect", self.image, check=False, timeout=60).returncode == 0

    def inspect(self) -> dict[str, Any]:
        data = json.loads(self.call("image", "inspect", self.image).stdout)
        found: dict[str, Any] = data[0] if isinstance(data, list) else data
        return found

    def run_args(
        self,
        command: Sequence[str],
        *,
        volumes: Mapping[Path | str, str] = {},
        network: str = "none",
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] = {},
        name: str | None = None,
        detach: bool = False,
    ) -> list[str]:
        """`run` arguments; a volume's value is its container path, with `:ro` to mount it read-only."""
        args = ["run", "--network", network]
        args += ["--detach"] if detach else ["--rm"]
        if name:
            args += ["--name", name]
        if user:
            args += ["--user", user]
        if workdir:
            args += ["--workdir", workdir]
        for host, target in volumes.items():
            args += ["--volume", f"{host}:{target}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        return [*args, self.image, *command]

    def run(
        self, command: Sequence[str], *, timeout: float = 600, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` in a fresh container of the image (removed afterwards); no network by default."""
        return self.call(*self.run_args(command, **kw), timeout=timeout, check=False)

    def python(self, code: str, **kw: Any) -> Any:
        """Run Python code in the image; it prints one JSON document, returned decoded."""
        proc = self.run(["python", "-c", code], **kw)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    @contextlib.contextmanager
    def container(self, command: Sequence[str], **kw: Any) -> Iterator[str]:
        """A detached container (its name), force-removed when the block ends."""
        name = f"shipyard-test-{uuid.uuid4().hex[:10]}"
        self.call(*self.run_args(command, name=name, detach=True, **kw), timeout=120)
        try:
            yield name
        finally:
            self.call("rm", "--force", "--time", "5", name, check=False, timeout=60)


def find_engine() -> tuple[Engine | None, str]:
    """The engine holding the image, or None and the reason it cannot be used here."""
    from components.images import COMPONENT_IMAGE

    recorded = built()
    kind = recorded.get("IMAGE_ENGINE", "")
    cli = shutil.which("docker" if kind == "docker" else "podman")
    if cli is None:
        return None, (
            f"{'docker' if kind == 'docker' else 'podman'} is not installed "
            "(make image-tools installs Debian's podman, buildah, skopeo)"
        )
    engine = Engine(cli=cli, image=COMPONENT_IMAGE)
    if not engine.has_image():
        return None, f"the image {COMPONENT_IMAGE} is not built (make image-tools image)"
    return engine, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")


def open_to_container_user(path: Path) -> None:
    """Let uid 10001 in the container write where the host (root) created files: the tests mount
    host directories, and the image never runs as root."""
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | (0o777 if p.is_dir() else 0o666))


@contextlib.contextmanager
def crane_registry(directory: Path) -> Iterator[str]:
    """An OCI registry on 127.0.0.1 (`crane registry serve`) storing blobs under `directory`; yields
    its host:port and stops it by PID."""
    require(CRANE.exists(), "crane is not built (make image-tools builds it from the Go module proxy)")
    port = free_port()
    blobs = directory / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)  # crane stores blobs there but does not create it
    with (directory / "registry.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(CRANE), "registry", "serve", "--address", f"127.0.0.1:{port}", "--disk", str(blobs)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
