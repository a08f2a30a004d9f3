"""Start and stop a model server as its own process: the one way the demo, the tests and the
benchmarks run a server, exactly as `python -m serving` runs in a container."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from serving.server import ServeConfig, server_args
from shipyard.errors import ShipyardError


class ServerStartError(ShipyardError):
    """The model server exited or did not become ready in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """`python -m serving` on a free loopback port, its output in `log_file`, stopped by PID."""

    def __init__(
        self,
        config: ServeConfig,
        log_file: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config if config.port else dataclasses.replace(config, port=free_port())
        self.log_file = log_file
        self.extra_args = list(extra_args)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):  # every interface: loopback is one of them
            host = "127.0.0.1" if host != "::" else "::1"
        return f"http://[{host}]:{self.config.port}" if ":" in host else f"http://{host}:{self.config.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [sys.executable, "-m", "serving", *server_args(self.config), *self.extra_args]

    def start(self, wait: bool = True, timeout: float = 90) -> ServerProcess:
        if self.process is not None and self.process.poll() is None:
            # A second Popen would orphan the first server: nothing would ever stop it.
            raise ServerStartError(f"the model server (pid {self.process.pid}) is already running")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
            )
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()  # never leak a server that did not come up (the `with` body never ran)
                raise
        return self

    def wait_ready(self, timeout: float = 90, path: str = "/v2/health/ready") -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerStartError(
                        f"the model server exited with code {self.process.returncode}: {self.tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(path).status_code == 200:
                        return
                time.sleep(0.1)
        raise ServerStartError(f"the model server was not ready within {timeout:.0f}s: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Stop by PID: `sig`, then SIGKILL after `timeout`. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
