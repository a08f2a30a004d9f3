"""Builders for the serving tests: a small trained stack in a temp dir, model servers, redis-server.

Everything is real: the project's synthetic data written as parquet, `feast apply` + materialize into
the online store, the pipeline's own steps (ingest -> validate -> training_set -> split -> train ->
evaluate -> register) for the ticket routing project, the registry, and the model server started by
`serving.process.ServerProcess` as its own process on a free port, exactly as `python -m serving`
runs in a container: given one fixed version directory and the content hash it must have.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from serving.process import ServerProcess, ServerStartError, free_port
from serving.server import ServeConfig
from shipyard import featurestore, steps
from shipyard.params import Gates, TrainParams
from shipyard.project import load_project
from shipyard.registry import ModelRegistry
from tests.support import require
from ticket_routing import synthetic

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "ticket_routing"
SPEC = load_project(PROJECT)
MODEL = SPEC.name
FEATURE_SERVICE = SPEC.feature_service
ENTITY_KEY = SPEC.entity_key
LABELS = list(SPEC.classes)
START, END = date(2025, 1, 1), date(2025, 3, 31)
REPO_FILES = (
    "data_sources.py",
    "entities.py",
    "feature_services.py",
    "feature_views.py",
    "feature_store.yaml",
)
# Gates every model passes: these tests are about serving a registered version, not about its quality.
LENIENT = Gates(
    min_accuracy=0.0,
    min_macro_f1=0.0,
    min_baseline_lift=0.0,
    max_champion_regression=1.0,
    max_final_loss_change=1.0,
)


@dataclass(frozen=True)
class Stack:
    """A feature repo with materialized data and a registry holding one trained champion."""

    root: Path
    repo: Path
    registry: Path
    version: str
    content_hash: str
    model_dir: Path  # the registered version directory (verified)
    yaml_name: str = "feature_store.yaml"

    @property
    def data(self) -> Path:
        return self.repo / "data"


def copy_repo(target: Path) -> Path:
    """The project's feature repo definitions, without its data."""
    target.mkdir(parents=True)
    for name in REPO_FILES:
        shutil.copy(ROOT / "feature_repo" / name, target / name)
    shutil.copytree(ROOT / "feature_repo" / "environments", target / "environments")
    return target


def materialize_window() -> tuple[datetime, datetime]:
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
    p = {
        name: str(work / name)
        for name in (
            "events.parquet",
            "features",
            "report.md",
            "clean.parquet",
            "clean_features",
            "set.parquet",
            "model",
            "eval",
        )
    }
    p |= {name: str(work / f"{name}.parquet") for name in ("train", "val", "test")}
    registry = root / "models"
    params = TrainParams()

    ingest = steps.ingest_step(PROJECT, str(repo / "data"), p["events.parquet"], p["features"])
    steps.validate_step(
        PROJECT,
        p["events.parquet"],
        p["features"],
        p["report.md"],
        LENIENT,
        p["clean.parquet"],
        p["clean_features"],
    )
    steps.training_set_step(
        PROJECT,
        p["clean.parquet"],
        p["clean_features"],
        str(repo),
        "feature_store.yaml",
        FEATURE_SERVICE,
        p["set.parquet"],
        LENIENT,
    )
    steps.split_step(PROJECT, p["set.parquet"], p["train"], p["val"], p["test"], params)
    steps.train_step(PROJECT, p["train"], p["val"], p["model"], ingest.data_hash, params)
    steps.evaluate_step(PROJECT, p["model"], p["test"], p["train"], "", "", LENIENT, p["eval"])
    record = steps.register_step(
        PROJECT, p["model"], p["eval"], str(registry), FEATURE_SERVICE, ingest.data_hash, promote=True
    )
    assert record.status == "champion", record
    model_dir = ModelRegistry(registry).fetch(record.version)
    return Stack(
        root=root,
        repo=repo,
        registry=registry,
        version=record.version,
        content_hash=record.content_hash,
        model_dir=model_dir,
    )


def source_tables(stack: Stack) -> dict[str, pd.DataFrame]:
    """The project's source tables by file name (`tickets.parquet`, `customer_profile.parquet`, ...)."""
    return {t.file: pd.read_parquet(stack.data / t.file) for t in SPEC.tables.values()}


def known_entities(stack: Stack, n: int) -> list[int]:
    """The first `n` entity keys that have features in the online store."""
    table = next(iter(SPEC.feature_tables.values()))
    keys = pd.read_parquet(stack.data / table.file, columns=[ENTITY_KEY])[ENTITY_KEY]
    return sorted(int(c) for c in keys.unique())[:n]


def writable_copy(source: Path, target: Path) -> Path:
    """A copy of a (read-only) version directory, as a storage initializer would leave it."""
    shutil.copytree(source, target)
    for path in target.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return target


# -- model servers ------------------------------------------------------------------------------------
class Server(ServerProcess):
    """`serving.process.ServerProcess` with the few conveniences the tests share."""

    @property
    def model(self) -> str:
        return self.config.model_name

    @property
    def request_log(self) -> Path:
        assert self.config.request_log_dir is not None
        return self.config.request_log_dir

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def v1(self, instances: Any, **kw: Any) -> httpx.Response:
        with self.client() as c:
            return c.post(f"/v1/models/{self.model}:predict", json={"instances": instances}, **kw)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace")


def serve_config(stack: Stack, workdir: Path, **overrides: Any) -> ServeConfig:
    """The champion of `stack`, as `shipyard serve` would configure it, on a free port."""
    base = ServeConfig(
        model_dir=stack.model_dir,
        content_hash=stack.content_hash,
        model_name=MODEL,
        version_label=stack.version,
        feature_repo=stack.repo,
        feature_store_yaml=stack.yaml_name,
        port=0,
        request_log_dir=workdir / "request_log",
        request_log_flush_seconds=0.2,
    )
    return dataclasses.replace(base, **overrides)


def start_server(
    stack: Stack,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
    expect_ready: bool = True,
    **overrides: Any,
) -> Server:
    """Start a server; return once it is ready (or only live, for servers meant not to be ready)."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = Server(serve_config(stack, workdir, **overrides), workdir / "server.log", extra_args, env)
    server.start(wait=False)
    try:
        server.wait_ready(90, "/v2/health/ready" if expect_ready else "/v2/health/live")
    except ServerStartError:
        server.stop()
        raise
    return server


# -- redis --------------------------------------------------------------------------------------------
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
        # Every user of a real Redis goes through here, so none can forget the prerequisite: on a
        # machine without redis-server the test skips with the reason (and fails under CI=true).
        require(shutil.which("redis-server") is not None, "redis-server is not installed (make test-tools)")
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis.log").open("ab") as out:
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
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {out.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """SIGTERM: redis saves its dataset (save is configured) and exits, like a node restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
