"""Several server processes behind one port: `python -m serving --workers N`.

One Python process scores on one core at a time (the GIL), so N cores need N processes. The
supervisor reserves the port and starts N ordinary worker processes (`python -m serving` with the
same flags and `--workers 1`): every worker has the same handlers, contract checks, batching, drain
and request log as a single server. Each worker listens on the port with `SO_REUSEPORT`, so the
kernel spreads new connections evenly over the workers. (One socket shared by all workers was
tried first: a worker woken by a burst of connections accepts them all, and with kept-alive
connections the split stayed uneven, 70/30 over two workers under wrk.)

Metrics are aggregated across the workers with prometheus_client's multiprocess mode: the
supervisor gives every worker the same fresh `PROMETHEUS_MULTIPROC_DIR`, every worker writes its
samples there, and whichever worker answers `GET /metrics` reads them all (counters and histograms
summed, `shipyard_model_ready` the minimum over live workers, see serving.metrics). Each worker
writes its own request-log file (`requests-<day>-<pid>.jsonl`), so no line is shared.

SIGTERM/SIGINT to the supervisor (what Kubernetes sends to PID 1) is forwarded to every worker,
each drains as a single server does, and the supervisor exits 0 when all have. A worker that exits
on its own (a crash, an OOM kill) takes the others down and the supervisor exits non-zero, so
Kubernetes restarts the container instead of it running on with fewer workers than it claims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("shipyard.serving")

REUSE_PORT_ENV = "SHIPYARD_REUSE_PORT"  # set for workers: listen with SO_REUSEPORT next to siblings
METRICS_DIR_ENV = "SHIPYARD_METRICS_DIR"  # a worker's shared metrics directory (its supervisor's)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
POLL_SECONDS = 0.2


def prepare_metrics_env() -> None:
    """Before prometheus_client is imported: multiprocess mode exactly when a supervisor asked for it.

    prometheus_client picks its storage from `PROMETHEUS_MULTIPROC_DIR` when it is imported, and
    Feast sets that variable in any process that imports `feast.metrics` (to a temp dir of its
    own): a server started from such a process (a test session, a CLI) would otherwise inherit it
    and write its samples where unrelated servers write theirs.
    """
    shared = os.environ.get(METRICS_DIR_ENV)
    if shared:
        os.environ[MULTIPROC_ENV] = shared
    else:
        os.environ.pop(MULTIPROC_ENV, None)
        os.environ.pop(MULTIPROC_ENV.lower(), None)


def bind(host: str, port: int, listen: bool) -> socket.socket:
    """A socket on the shared port (`SO_REUSEPORT`): listening for a worker; for the supervisor,
    bound only, so the port is checked before any worker starts and stays reserved (a socket that
    does not listen is given no connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every answer waited ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
        sock.setblocking(False)
    return sock


def worker_socket(host: str, port: int) -> socket.socket | None:
    """This worker's listening socket when a supervisor started it, else None (uvicorn binds)."""
    if not os.environ.get(REUSE_PORT_ENV):
        return None
    return bind(host, port, listen=True)


class Supervisor:
    """Starts the workers, forwards signals, reaps them; see the module docstring."""

    def __init__(self, config: object, workers: int) -> None:
        from serving.server import ServeConfig

        assert isinstance(config, ServeConfig)
        self.config = config
        self.workers = workers
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stopping: int | None = None
        self.metrics_dir: Path | None = None
        self._own_metrics_dir = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.stopping is None
        self.stopping = signum
        if first or signum == signal.SIGINT:  # a second Ctrl-C ends the workers' drain too
            self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def _prepare_metrics_dir(self) -> Path:
        """A fresh directory per server start: a previous run's samples would be counted again."""
        self._own_metrics_dir = True
        return Path(tempfile.mkdtemp(prefix="shipyard-metrics-"))

    def run(self) -> int:
        from serving.server import server_args

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        reserved = bind(self.config.host, self.config.port, listen=False)
        self.metrics_dir = self._prepare_metrics_dir()
        worker_config = dataclasses.replace(self.config, workers=1)
        command = [sys.executable, "-m", "serving", *server_args(worker_config)]
        env = {
            **os.environ,
            REUSE_PORT_ENV: "1",
            METRICS_DIR_ENV: str(self.metrics_dir),
            MULTIPROC_ENV: str(self.metrics_dir),
        }
        log.info(
            "starting %d workers on %s:%d (metrics aggregated in %s)",
            self.workers,
            self.config.host,
            self.config.port,
            self.metrics_dir,
        )
        try:
            for _ in range(self.workers):
                if self.stopping is not None:
                    break
                self.processes.append(subprocess.Popen(command, env=env))
            return self._wait()
        finally:
            reserved.close()
            if any(process.poll() is None for process in self.processes):  # an error above
                self._signal_all(signal.SIGKILL)
            for process in self.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
            if self._own_metrics_dir and self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _wait(self) -> int:
        from prometheus_client import multiprocess

        codes: dict[int, int] = {}
        crashed: int | None = None
        while len(codes) < len(self.processes):
            for process in self.processes:
                if process.pid in codes or process.poll() is None:
                    continue
                codes[process.pid] = process.returncode
                if self.metrics_dir is not None:
                    # Its live gauges (model ready, age, info) stop counting; its counters stay.
                    multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
                if self.stopping is None:
                    log.error(
                        "worker %d exited with code %s while serving: stopping the others",
                        process.pid,
                        process.returncode,
                    )
                    self.stopping = signal.SIGTERM
                    self._signal_all(signal.SIGTERM)
                    crashed = process.returncode or 1
            time.sleep(POLL_SECONDS)
        if crashed is not None:
            return crashed
        failed = [code for code in codes.values() if code != 0]
        return failed[0] if failed else 0
