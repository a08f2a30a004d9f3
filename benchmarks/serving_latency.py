"""Benchmark: Shipyard's model server against the servers a user would pick instead, in one run.

Arms, all on the champion from `make run`, the same `model.joblib`, the same 64 real rows:
  (a)  in-process: the pipeline's own `predict_proba` on a one-row DataFrame, and the server's
       compiled scorer (serving.scoring) on the same row: the floor under any server;
  (b)  Shipyard without the feature lookup (`--no_feature_lookup`): HTTP + contract + predict;
  (c)  Shipyard's full path: contract + Feast online lookup (SQLite, the local default) + on-demand
       features + predict, with metrics and the request log on;
  (d)  the same with Feast on a real redis-server (the deployed config, environments/dev.yaml);
  (e)  a hand-written `kserve.Model` (benchmarks/peers/kserve_peer.py) doing `predict_proba` on the
       full row: every model input is in the request, no lookup, no checks, no log;
  (f)  MLServer 1.7.1 + mlserver-sklearn on the same file (V2, pandas codec, `predict_proba`), in
       its own pinned virtualenv (`make bench-peers`: .tools/bench-venv/mlserver), one process
       (`parallel_workers: 0`);
  (g)  (c) with one worker process per CPU (`--workers N`), against (c) with one: saturated
       throughput, the better of concurrency 16 and 32 for each;
  (c0) with `--baseline REF`: (c) as the server in git commit REF ran it (its serving/ package,
       today's library), to measure a change before and after in the same run.
Every server is its own process; load comes from `wrk` (fixed connections = concurrency, fixed
duration, single-row requests cycling over the 64 rows). Before the load, each peer's answers are
checked against Shipyard's for the same rows (they must agree within 1e-9: same model, same
inputs). While (c) runs at concurrency 32, a separate sampler measures the readiness probe.

Goals (issue 12, plus the earlier ones):
  (c) throughput @ c=8 >= 3x the best peer's; (c) p50 @ c=1 <= the best peer's; (c) p99 @ c=8 <=
  the best peer's (best: the peer with the highest throughput / lowest latency in that cell);
  (g) throughput >= 0.8 x N x (c) with one worker; readiness p99 < 100 ms while (c) is saturated;
  the Feast lookup's overhead bounded: (c) p99 <= 2x (b) p99 and (c) throughput >= 0.6x (b); the
  server's own overhead: (b) p50 @ c=1 <= 3x the in-process compiled scorer's.

Not a test. Prints the tables; writes benchmarks/results/serving.json and serving.md.
Run with `make bench` or `.venv/bin/python -m benchmarks.serving_latency [--seconds N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from serving.process import ServerProcess, ServerStartError, free_port
from serving.server import ServeConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MLSERVER_VENV = ROOT / ".tools" / "bench-venv" / "mlserver"
CONCURRENCY = (1, 8)
PROBE_CONCURRENCY = 32
SCALING_CONCURRENCY = (16, 32)  # saturated throughput: the better of these, for 1 and for N workers
DEPLOYED_YAML = "environments/dev.yaml"
AGREEMENT = 1e-9
ROWS = 64

A, A_COMPILED = "(a) in-process predict_proba, DataFrame", "(a') in-process compiled scorer"
B, C, D = (
    "(b) Shipyard, no feature lookup",
    "(c) Shipyard full path, Feast SQLite",
    "(d) Shipyard full path, Feast Redis",
)
E, F = "(e) hand-written kserve.Model, full row", "(f) MLServer 1.7.1 + mlserver-sklearn, full row"
G = "(g) Shipyard full path, Feast SQLite, {n} workers"
C0 = "(c0) Shipyard full path, Feast SQLite, serving/ at {ref}"
NEW_FLAGS = ("--workers", "--batch_max_rows", "--batch_max_wait_ms")
PEERS = (E, F)

WRK_SCRIPT = r"""
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
request = function()
  i = i + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[(i % #bodies) + 1])
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def timed(fn: Any, seconds: float) -> dict[str, Any]:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn(len(samples))
        samples.append(time.perf_counter() - t0)
    return {
        "concurrency": 1,
        "requests": len(samples),
        "rps": len(samples) / sum(samples),
        "p50_ms": pct(samples, 50) * 1000,
        "p95_ms": pct(samples, 95) * 1000,
        "p99_ms": pct(samples, 99) * 1000,
        "errors": 0,
    }


# -- rows ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Rows:
    requests: list[dict[str, Any]]  # what Shipyard is sent: the request fields
    full: pd.DataFrame  # what the peers are sent: every model input, as the server assembles them


def bench_rows(config: ServeConfig, spec: Any, keys: pd.Series) -> Rows:
    """64 real entities whose every feature is known (the peers' JSON cannot carry NaN), each with
    one of the project's example requests; and their full model inputs, from the server's own path."""
    from serving.contract import RequestContract
    from serving.features import FeastOnlineFeatures
    from shipyard.registry import verify_version_dir

    meta = verify_version_dir(config.model_dir, config.content_hash)
    contract = RequestContract.load(config.model_dir)
    source = FeastOnlineFeatures(
        config.feature_repo, config.feature_store_yaml, str(meta["feature_service"]), contract
    )
    key = spec.entity_key
    candidates = [int(c) for c in keys.drop_duplicates().head(ROWS * 4)]
    requests = [{key: c, **spec.examples[i % len(spec.examples)]} for i, c in enumerate(candidates)]
    frame = source.assemble(contract.v1({"instances": requests})).frame
    complete = [i for i in range(len(requests)) if not frame.iloc[i].isna().any()][:ROWS]
    return Rows([requests[i] for i in complete], frame.iloc[complete].reset_index(drop=True))


# -- (a) in-process -----------------------------------------------------------------------------------
def in_process(config: ServeConfig, rows: Rows, seconds: float) -> dict[str, dict[str, Any]]:
    from serving.contract import RequestContract
    from serving.scoring import compile_scorer
    from shipyard.training import load_model

    model = load_model(config.model_dir)
    contract = RequestContract.load(config.model_dir)
    scorer = compile_scorer(model, contract.inputs, contract.features)
    frames = [rows.full.iloc[[i]] for i in range(16)]
    arrays = [{c: f[c].to_numpy() for c in f.columns} for f in frames]
    for i in range(4):
        model.predict_proba(frames[i])
        scorer.predict_proba(arrays[i])
    return {
        A: timed(lambda i: model.predict_proba(frames[i % 16]), seconds / 2),
        A_COMPILED: timed(lambda i: scorer.predict_proba(arrays[i % 16]), seconds / 2),
    }


# -- servers ------------------------------------------------------------------------------------------
@contextmanager
def shipyard_server(
    config: ServeConfig, log_file: Path, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """The model server as its own process on a free port (`serving.process.ServerProcess`)."""
    server = ServerProcess(dataclasses.replace(config, port=0), log_file, env=env)
    try:
        server.start(timeout=180)
        if config.workers > 1:  # ready means one worker is; wait for all (each logs it once)
            deadline = time.monotonic() + 180
            while server.tail(10**7).count("ready:") < config.workers and time.monotonic() < deadline:
                time.sleep(0.2)
        yield server
    finally:
        server.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


class BaselineServer(ServerProcess):
    """The server of an earlier commit: its `serving` package first on the path, without the flags
    it did not have yet."""

    def __init__(self, tree: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tree = tree
        self.env = {**(self.env or {}), "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"}

    def command(self) -> list[str]:
        # -P: `python -m` would otherwise put the working directory (today's serving/) first.
        command, out, skip = super().command(), [sys.executable, "-P"], False
        command = command[1:]
        for arg in command:
            if skip:
                skip = False
            elif arg in NEW_FLAGS:
                skip = True
            else:
                out.append(arg)
        return out


@contextmanager
def baseline_server(ref: str, config: ServeConfig, work: Path) -> Iterator[str]:
    tree = work / "baseline"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "serving"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    server = BaselineServer(tree, dataclasses.replace(config, port=0), work / "server-c0.log")
    try:
        server.start(timeout=180)
        yield server.url
    finally:
        server.stop()


@contextmanager
def peer_process(
    command: list[str], url: str, ready: str, log_file: Path, cwd: Path | None = None
) -> Iterator[str]:
    with log_file.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise ServerStartError(f"{command[0]} exited: {log_file.read_text()[-2000:]}")
                try:
                    if client.get(ready).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{command[0]} not ready: {log_file.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def kserve_peer(config: ServeConfig, work: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.peers.kserve_peer", "--model_name", config.model_name]
    command += ["--model_dir", str(config.model_dir), "--http_port", str(port)]
    with peer_process(
        command, f"http://127.0.0.1:{port}", "/v2/health/ready", work / "kserve-peer.log", ROOT
    ) as url:
        yield url


@contextmanager
def mlserver_peer(config: ServeConfig, work: Path) -> Iterator[str]:
    """MLServer from its own virtualenv, serving the version's model.joblib with mlserver-sklearn."""
    port = free_port()
    folder = work / "mlserver"
    (folder / config.model_name).mkdir(parents=True)
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,  # one process, like every other arm
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": config.model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(config.model_dir / "model.joblib"), "version": "v1"},
    }
    (folder / config.model_name / "model-settings.json").write_text(json.dumps(model_settings))
    command = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(folder)]
    with peer_process(command, f"http://127.0.0.1:{port}", "/v2/health/ready", work / "mlserver.log") as url:
        yield url


@contextmanager
def redis_store(repo: Path, work: Path) -> Iterator[dict[str, str]]:
    """A redis-server on a free port, loaded through the deployed Feast config; yields its env."""
    from shipyard import featurestore

    port = free_port()
    with (work / "redis.log").open("wb") as out:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    env = {
        "FEAST_REDIS_CONNECTION": f"127.0.0.1:{port},socket_timeout=1,socket_connect_timeout=1",
        "FEAST_REGISTRY_URL": f"sqlite:///{work / 'feast-registry.db'}",
    }
    old = {k: os.environ.get(k) for k in env}
    try:
        time.sleep(0.5)
        os.environ.update(env)
        featurestore.apply(repo, DEPLOYED_YAML)
        start = pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime()
        end = pd.Timestamp.now(tz="UTC").to_pydatetime()
        featurestore.materialize(repo, start, end, DEPLOYED_YAML)
        yield env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        process.terminate()
        process.wait(10)


# -- request bodies -----------------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def v1_body(instance: dict[str, Any]) -> str:
    return json.dumps({"instances": [{k: _json_value(v) for k, v in instance.items()}]})


def mlserver_body(row: pd.Series) -> str:
    """One row for MLServer's pandas codec: a column per input, strings marked as such."""
    inputs = []
    for name, value in row.items():
        value = _json_value(value)
        if isinstance(value, str):
            inputs.append(
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [value],
                    "parameters": {"content_type": "str"},
                }
            )
        else:
            inputs.append({"name": name, "shape": [1], "datatype": "FP64", "data": [float(value)]})
    return json.dumps(
        {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": [{"name": "predict_proba"}]}
    )


@dataclasses.dataclass
class Target:
    url: str
    path: str
    bodies: Path
    pid: int | None = None  # the server's process (and workers), for its CPU time


def agreement(name: str, target: Target, expected: np.ndarray, classes: list[str], answers: str) -> float:
    """The largest difference between a server's probabilities and Shipyard's for the first rows."""
    got = []
    with httpx.Client(base_url=target.url, timeout=30) as client:
        for body in target.bodies.read_text().splitlines()[: len(expected)]:
            r = client.post(target.path, content=body, headers={"content-type": "application/json"})
            r.raise_for_status()
            out = r.json()
            if answers == "shipyard":
                got.append([out["predictions"][0]["probabilities"][c] for c in classes])
            elif answers == "v1":
                got.append(out["predictions"][0])
            else:
                got.append(next(o for o in out["outputs"] if o["name"] == "predict_proba")["data"])
    diff = float(np.max(np.abs(np.asarray(got, dtype=float) - expected)))
    if not diff <= AGREEMENT:
        raise SystemExit(
            f"error: {name} answers differ from the model's by {diff:g}: not the same model or rows"
        )
    return diff


def wrk(target: Target, script: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    cmd = ["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency), "-d", f"{seconds:.0f}s"]
    cmd += ["--timeout", "10s", "-s", str(script), f"{target.url}{target.path}", "--", str(target.bodies)]
    cpu_before = cpu_seconds(target.pid) if target.pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(target.pid) - cpu_before if target.pid else math.nan
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON ") :])
    return {
        "server_cores": cpu / (raw["duration_us"] / 1e6),
        "server_cpu_ms_per_request": cpu * 1000 / max(raw["requests"], 1),
        "concurrency": concurrency,
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["non2xx"] + raw["socket_errors"],
    }


class ProbeSampler:
    """GET /v2/health/ready every 50 ms from its own thread while the load runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get(self.url + "/v2/health/ready").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.samples.append(time.perf_counter() - t0)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> ProbeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- report -------------------------------------------------------------------------------------------
def ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def cell(arms: dict[str, list[dict[str, Any]]], arm: str, c: int) -> dict[str, Any]:
    return next(r for r in arms[arm] if r["concurrency"] == c)


def goals(arms: dict[str, list[dict[str, Any]]], probe: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    best_rps = max(PEERS, key=lambda p: cell(arms, p, 8)["rps"])
    best_p50 = min(PEERS, key=lambda p: cell(arms, p, 1)["p50_ms"])
    best_p99 = min(PEERS, key=lambda p: cell(arms, p, 8)["p99_ms"])
    checks: list[tuple[str, float, str, float]] = []
    for name, arm in (("(c)", C), ("(d)", D)):
        rps = ratio(cell(arms, arm, 8)["rps"], cell(arms, best_rps, 8)["rps"])
        p50 = ratio(cell(arms, arm, 1)["p50_ms"], cell(arms, best_p50, 1)["p50_ms"])
        p99 = ratio(cell(arms, arm, 8)["p99_ms"], cell(arms, best_p99, 8)["p99_ms"])
        checks.append((f"{name} req/s @ c=8 / best peer's {best_rps[:3]}", rps, ">=", 3.0))
        checks.append((f"{name} p50 @ c=1 / best peer's {best_p50[:3]}", p50, "<=", 1.0))
        checks.append((f"{name} p99 @ c=8 / best peer's {best_p99[:3]}", p99, "<=", 1.0))
    g = G.format(n=workers)
    one = max(cell(arms, C, c)["rps"] for c in SCALING_CONCURRENCY)
    scaled = ratio(max(cell(arms, g, c)["rps"] for c in SCALING_CONCURRENCY), workers * one)
    levels = "/".join(str(c) for c in SCALING_CONCURRENCY)
    checks.append((f"(g) saturated req/s / ({workers} x (c)'s), best of c={levels}", scaled, ">=", 0.8))
    for c in CONCURRENCY:
        checks.append(
            (f"(c)/(b) p99 @ c={c}", ratio(cell(arms, C, c)["p99_ms"], cell(arms, B, c)["p99_ms"]), "<=", 2.0)
        )
        checks.append(
            (f"(c)/(b) req/s @ c={c}", ratio(cell(arms, C, c)["rps"], cell(arms, B, c)["rps"]), ">=", 0.6)
        )
    if A_COMPILED in arms:  # the server's own overhead over the predict it runs
        overhead = ratio(cell(arms, B, 1)["p50_ms"], arms[A_COMPILED][0]["p50_ms"])
        checks.append(("(b) p50 @ c=1 / (a') in-process p50", overhead, "<=", 3.0))
    checks.append(("readiness p99 ms while (c) is saturated", float(probe["p99_ms"]), "<", 100.0))
    met = {"<=": lambda v, t: v <= t, ">=": lambda v, t: v >= t, "<": lambda v, t: v < t}
    return [
        {"name": n, "value": v, "op": op, "target": t, "met": bool(met[op](v, t))} for n, v, op, t in checks
    ]


def report(results: dict[str, Any]) -> str:
    arms = results["arms"]
    lines = [
        f"# Serving benchmark ({results['seconds']:.0f} s per cell, {results['cpus']} CPUs, model "
        f"{results['model_version']}, {results['rows']} rows, wrk; {results['when']})",
        "",
        f"Load average before / after the run: {results['load_before']} / {results['load_after']}.",
        "",
        "| server | c=1 req/s | c=1 p50 ms | c=1 p99 ms | c=8 req/s | c=8 p50 ms | c=8 p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, rows in arms.items():
        by_c = {r["concurrency"]: r for r in rows}
        one, eight = by_c.get(1), by_c.get(8)
        if one is None:
            continue
        left = f"{one['rps']:.0f} | {one['p50_ms']:.2f} | {one['p99_ms']:.2f}"
        right = (
            f"{eight['rps']:.0f} | {eight['p50_ms']:.2f} | {eight['p99_ms']:.2f}" if eight else "- | - | -"
        )
        errors = sum(r["errors"] for r in rows)
        lines.append(f"| {arm} | {left} | {right} | {errors} |")
    lines += ["", "| goal | measured | target | met |", "| --- | ---: | ---: | :---: |"]
    for g in results["goals"]:
        lines.append(
            f"| {g['name']} | {g['value']:.2f} | {g['op']} {g['target']} | {'yes' if g['met'] else 'NO'} |"
        )
    lines += ["", "Other cells:", ""]
    for arm, rows in arms.items():
        for r in rows:
            if r["concurrency"] not in (1, 8):
                lines.append(
                    f"* {arm} at c={r['concurrency']}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}; the server used "
                    f"{r.get('server_cores', math.nan):.2f} cores, "
                    f"{r.get('server_cpu_ms_per_request', math.nan):.2f} ms CPU per request"
                )
    p = results["probe"]
    lines += [
        "",
        f"Readiness probe while (c) runs at concurrency {p['concurrency']}: {p['samples']} samples, "
        f"p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, max {p['max_ms']:.1f} ms, "
        f"failures {p['failures']}.",
        "",
        "Peers' answers vs Shipyard's on the same rows (max abs difference of the probabilities): "
        + ", ".join(f"{k.split(')')[0]}) {v:.1e}" for k, v in results["agreement"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each cell.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Workers of arm (g).")
    parser.add_argument(
        "--only", default="", help="Comma-separated arm letters to run (e.g. c,e,f); default all."
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="Where serving.json / serving.md go.")
    parser.add_argument("--baseline", default="", help="Also run (c) with serving/ from this git commit.")
    args = parser.parse_args(argv)

    from serving.server import config_from_settings
    from shipyard.errors import ShipyardError
    from shipyard.settings import load_settings

    settings = load_settings("local").resolve(ROOT)
    spec = settings.spec
    table = next(iter(spec.feature_tables.values()))
    try:
        base = config_from_settings(settings)
    except ShipyardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not (settings.data_dir / table.file).exists():
        print("error: no data: run `make run` first", file=sys.stderr)
        return 2
    if not spec.examples:
        print(f"error: project {spec.name} has no example requests to send", file=sys.stderr)
        return 2
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed (make bench-tools)", file=sys.stderr)
            return 2
    if not (MLSERVER_VENV / "bin" / "mlserver").exists():
        print(f"error: MLServer is not installed in {MLSERVER_VENV} (make bench-peers)", file=sys.stderr)
        return 2
    only = set(args.only.split(",")) if args.only else set("abcdefg")
    load_before = load_average()
    keys = pd.read_parquet(settings.data_dir / table.file, columns=[spec.entity_key])[spec.entity_key]
    rows = bench_rows(base, spec, keys)
    arms: dict[str, list[dict[str, Any]]] = {}
    nan = math.nan
    probe: dict[str, Any] = {"concurrency": PROBE_CONCURRENCY, "samples": 0, "failures": 0}
    probe.update(p50_ms=nan, p99_ms=nan, max_ms=nan)
    agree: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        work = Path(tmp)
        base = dataclasses.replace(base, request_log_dir=work / "request_log")
        model = base.model_name
        script = work / "bench.lua"
        script.write_text(WRK_SCRIPT)
        shipyard_bodies = work / "shipyard.jsonl"
        shipyard_bodies.write_text("".join(v1_body(r) + "\n" for r in rows.requests))
        full_bodies = work / "full-v1.jsonl"
        full_bodies.write_text("".join(v1_body(dict(r)) + "\n" for _, r in rows.full.iterrows()))
        mlserver_bodies = work / "full-v2.jsonl"
        mlserver_bodies.write_text("".join(mlserver_body(r) + "\n" for _, r in rows.full.iterrows()))
        v1_path, v2_path = f"/v1/models/{model}:predict", f"/v2/models/{model}/infer"

        from shipyard.training import load_model

        pipeline = load_model(base.model_dir)
        classes = [str(c) for c in pipeline.classes_]
        expected = pipeline.predict_proba(rows.full.iloc[:8])

        if "a" in only:
            print("(a) in-process ...", flush=True)
            for arm, result in in_process(base, rows, args.seconds).items():
                arms[arm] = [result]

        def run_arm(name: str, target: Target, levels: tuple[int, ...] = CONCURRENCY) -> None:
            cells = []
            for c in levels:
                print(f"{name} at concurrency {c} ...", flush=True)
                wrk(target, script, c, 2)  # warm-up
                if c == PROBE_CONCURRENCY:
                    with ProbeSampler(target.url) as sampler:
                        cells.append(wrk(target, script, c, args.seconds))
                    s = sampler.samples
                    probe.update(
                        samples=len(s),
                        p50_ms=pct(s, 50) * 1000,
                        p99_ms=pct(s, 99) * 1000,
                        max_ms=max(s) * 1000,
                        failures=sampler.failures,
                    )
                else:
                    cells.append(wrk(target, script, c, args.seconds))
            arms[name] = cells

        if "b" in only:
            with shipyard_server(
                dataclasses.replace(base, feature_lookup=False), work / "server-b.log"
            ) as srv:
                run_arm(B, Target(srv.url, v1_path, shipyard_bodies, srv.pid))
        if args.baseline:
            with baseline_server(args.baseline, base, work) as url:
                target = Target(url, v1_path, shipyard_bodies)
                agree[C0.format(ref=args.baseline)] = agreement(C0, target, expected, classes, "shipyard")
                run_arm(C0.format(ref=args.baseline), target)
        if "c" in only:
            with shipyard_server(base, work / "server-c.log") as srv:
                target = Target(srv.url, v1_path, shipyard_bodies, srv.pid)
                agree[C] = agreement(C, target, expected, classes, "shipyard")
                run_arm(C, target, tuple(sorted({*CONCURRENCY, *SCALING_CONCURRENCY, PROBE_CONCURRENCY})))
        if "d" in only:
            print("(d) loading the Redis online store ...", flush=True)
            redis_config = dataclasses.replace(base, feature_store_yaml=DEPLOYED_YAML)
            with (
                redis_store(base.feature_repo, work) as env,
                shipyard_server(redis_config, work / "server-d.log", env=env) as srv,
            ):
                run_arm(D, Target(srv.url, v1_path, shipyard_bodies, srv.pid))
        if "e" in only:
            with kserve_peer(base, work) as url:
                target = Target(url, v1_path, full_bodies)
                agree[E] = agreement(E, target, expected, classes, "v1")
                run_arm(E, target)
        if "f" in only:
            with mlserver_peer(base, work) as url:
                target = Target(url, v2_path, mlserver_bodies)
                agree[F] = agreement(F, target, expected, classes, "v2")
                run_arm(F, target)
        if "g" in only:
            g = G.format(n=args.workers)
            config = dataclasses.replace(base, workers=args.workers)
            with shipyard_server(config, work / "server-g.log") as srv:
                run_arm(g, Target(srv.url, v1_path, shipyard_bodies, srv.pid), SCALING_CONCURRENCY)

    results: dict[str, Any] = {
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "rows": len(rows.requests),
        "model_version": base.version_label,
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": load_before,
        "load_after": load_average(),
        "load_generator": "wrk",
        "batching": {"max_rows": base.batch_max_rows, "max_wait_ms": base.batch_max_wait_ms},
        "baseline": args.baseline or None,
        "arms": arms,
        "probe": probe,
        "agreement": agree,
    }
    try:
        results["goals"] = goals(arms, probe, args.workers)
    except (KeyError, StopIteration, ValueError):
        results["goals"] = []  # a partial run (--only): no goal can be judged
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (args.out / "serving.md").write_text(text)
    print()
    print(text)
    print(f"written: {args.out / 'serving.json'}, {args.out / 'serving.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
