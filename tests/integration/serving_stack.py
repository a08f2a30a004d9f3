"""Builders for the serving tests: a small trained stack in a temp dir, model servers, redis-server.

Everything is real: synthetic data written as parquet, `feast apply` + materialize into the online
store, the training steps the pipeline runs, the registry, and the model server started as its own
process on a free port exactly as `python -m serving` runs in a container.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from shipyard import featurestore, steps, synthetic
from shipyard.schema import ACTIVITY_FILE, PROFILE_FILE, TICKETS_FILE
from shipyard.thresholds import Thresholds
from shipyard.training import TrainParams

ROOT = Path(__file__).resolve().parents[2]
FEATURE_SERVICE = "ticket_routing_v1"
START, END = date(2025, 1, 1), date(2025, 3, 31)
REPO_FILES = (
    "data_sources.py",
    "entities.py",
    "feature_services.py",
    "feature_views.py",
    "feature_store.yaml",
)


@dataclass(frozen=True)
class Stack:
    """A feature repo with materialized data and a registry holding one trained champion."""

    root: Path
    repo: Path
    registry: Path
    version: str
    yaml_name: str = "feature_store.yaml"

    @property
    def data(self) -> Path:
        return self.repo / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def copy_repo(target: Path) -> Path:
    """The project's feature repo definitions, without its data."""
    target.mkdir(parents=True)
    for name in REPO_FILES:
        shutil.copy(ROOT / "feature_repo" / name, target / name)
    shutil.copytree(ROOT / "feature_repo" / "environments", target / "environments")
    return target


def materialize_window() -> tuple[Any, Any]:
    """Wide enough for every snapshot the generator writes (the monthly profile one can land after END)."""
    start = pd.Timestamp(START, tz="UTC") - pd.Timedelta(days=60)
    end = pd.Timestamp(END, tz="UTC") + pd.Timedelta(days=40)
    return start.to_pydatetime(), end.to_pydatetime()


def build_stack(root: Path, customers: int = 400, tickets: int = 4000) -> Stack:
    repo = copy_repo(root / "feature_repo")
    cfg = synthetic.SyntheticConfig(customers=customers, tickets=tickets, start=START, end=END, seed=11)
    synthetic.write(synthetic.generate(cfg), cfg, repo / "data")
    featurestore.apply(repo)
    featurestore.materialize(repo, *materialize_window())

    work = root / "work"
    work.mkdir()
    paths = {name: str(work / name) for name in ("tickets", "profile", "activity", "set", "tr", "va", "te")}
    ingest = steps.ingest_step(str(repo / "data"), paths["tickets"], paths["profile"], paths["activity"])
    steps.training_set_step(paths["tickets"], str(repo), "feature_store.yaml", FEATURE_SERVICE, paths["set"])
    steps.split_step(paths["set"], paths["tr"], paths["va"], paths["te"], 0.15, 0.15, 7)
    registry = root / "models"
    steps.train_step(paths["tr"], paths["va"], str(work / "model"), ingest["data_hash"], TrainParams())
    lenient = Thresholds(
        min_accuracy=0.0,
        min_macro_f1=0.0,
        min_baseline_lift=0.0,
        max_champion_regression=1.0,
        max_final_loss_change=1.0,
    )
    steps.evaluate_step(
        str(work / "model"), paths["te"], paths["tr"], str(registry), lenient, str(work / "eval")
    )
    summary = steps.register_step(
        str(work / "model"), str(work / "eval"), str(registry), FEATURE_SERVICE, ingest["data_hash"], True
    )
    return Stack(root=root, repo=repo, registry=registry, version=str(summary["version"]))


def source_tables(stack: Stack) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(stack.data / name) for name in (TICKETS_FILE, PROFILE_FILE, ACTIVITY_FILE)}


@dataclass
class Server:
    """A model server process; `stop()` sends SIGTERM and waits, as Kubernetes would."""

    process: subprocess.Popen[bytes]
    port: int
    request_log: Path
    output: Path
    model: str = "ticket-router"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def v1(self, instances: Any, **kw: Any) -> httpx.Response:
        with self.client() as c:
            return c.post(f"/v1/models/{self.model}:predict", json={"instances": instances}, **kw)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)

    def log_text(self) -> str:
        return self.output.read_text(errors="replace")


def start_server(
    stack: Stack,
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    registry: Path | None = None,
    yaml_name: str | None = None,
    expect_ready: bool = True,
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    request_log = workdir / "request_log"
    output = workdir / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "serving",
        "--registry",
        str(registry or stack.registry),
        "--feature-repo",
        str(stack.repo),
        "--feature-store-yaml",
        yaml_name or stack.yaml_name,
        "--port",
        str(port),
        "--request-log-dir",
        str(request_log),
        "--request-log-flush-seconds",
        "0.2",
        *args,
    ]
    with output.open("wb") as out:
        process = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = Server(process, port, request_log, output)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"model server exited with {process.returncode}:\n{server.log_text()[-4000:]}")
        try:
            with server.client(timeout=2) as c:
                live = c.get("/v2/health/live")
                ready = c.get("/v2/health/ready")
            if live.status_code == 200 and (ready.status_code == 200 or not expect_ready):
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"model server did not become ready:\n{server.log_text()[-4000:]}")


@dataclass
class RedisServer:
    """A real `redis-server` on a free loopback port, persisting to its own dir across restarts."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def connection(self) -> str:
        return f"127.0.0.1:{self.port},socket_timeout=1,socket_connect_timeout=1"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "3600 1",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """SIGTERM: redis saves its dataset (save is configured) and exits, like a node restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)
        self.process = None
