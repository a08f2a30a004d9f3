"""Benchmark: how much the model server and the Feast lookup add to the bare scikit-learn predict.

Four arms, one run, same machine, on the champion and data from `make run`:
  (a) in-process single-row `predict_proba` of the trained pipeline: the physical limit;
  (b) the model server without the Feast lookup (`--no_feature_lookup`): HTTP + validation + predict;
  (c) the full path with the Feast SQLite online store (the local default);
  (d) the full path with Feast on a real redis-server (the deployed config, environments/dev.yaml).
Load comes from `wrk` (a separate process, fixed connections = concurrency, fixed duration); each
request is a single-row V1 prediction for one of 64 real entities (customers), with the project's
example request fields. Each server is started by `serving.process.ServerProcess` on the champion's
verified version directory, exactly as `shipyard serve` starts it. While (c) runs at the highest
concurrency, a separate sampler measures the readiness probe.

Goals (from the issue): (c), (d) p99 <= 2.0x (b) p99 and throughput >= 0.6x (b); (b) p50 <= 3x (a) p50;
readiness p99 < 100 ms while (c) is saturated.

Not a test. Prints a table; writes benchmarks/results/serving.json and serving.md.
Run with `make bench` or `.venv/bin/python -m benchmarks.serving_latency [--seconds N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from serving.process import ServerProcess, free_port
from serving.server import ServeConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONCURRENCY = (1, 8, 32)
DEPLOYED_YAML = "environments/dev.yaml"

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


# -- (a) in-process ----------------------------------------------------------------------------------
def in_process(config: ServeConfig, rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    from serving.contract import RequestContract
    from serving.features import FeastOnlineFeatures
    from shipyard.registry import verify_version_dir
    from shipyard.training import load_model

    meta = verify_version_dir(config.model_dir, config.content_hash)
    model = load_model(config.model_dir)
    contract = RequestContract.load(config.model_dir)
    source = FeastOnlineFeatures(
        config.feature_repo, config.feature_store_yaml, str(meta["feature_service"]), contract
    )
    # Model inputs for real rows, built once: this arm measures predict alone.
    frames = [source.assemble(contract.v1({"instances": [row]})).frame for row in rows[:16]]
    for frame in frames[:4]:
        model.predict_proba(frame)
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        frame = frames[i % len(frames)]
        t0 = time.perf_counter()
        model.predict_proba(frame)
        samples.append(time.perf_counter() - t0)
        i += 1
    total = sum(samples)
    return {
        "concurrency": 1,
        "requests": len(samples),
        "rps": len(samples) / total,
        "p50_ms": pct(samples, 50) * 1000,
        "p95_ms": pct(samples, 95) * 1000,
        "p99_ms": pct(samples, 99) * 1000,
        "errors": 0,
    }


# -- servers --------------------------------------------------------------------------------------
@contextmanager
def model_server(config: ServeConfig, log_file: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The model server as its own process on a free port (`serving.process.ServerProcess`)."""
    server = ServerProcess(dataclasses.replace(config, port=0), log_file, env=env)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


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


def wrk(url: str, model: str, bodies: Path, script: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    cmd = ["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency), "-d", f"{seconds:.0f}s"]
    cmd += ["--timeout", "10s", "-s", str(script), f"{url}/v1/models/{model}:predict", "--", str(bodies)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON ") :])
    return {
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


# -- report ---------------------------------------------------------------------------------------
def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def report(results: dict[str, Any]) -> str:
    lines = [
        f"# Serving benchmark ({results['seconds']:.0f} s per cell, {results['cpus']} CPUs, model "
        f"{results['model_version']}, server threads {results['threads']})",
        "",
        "| arm | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, rows in results["arms"].items():
        for r in rows:
            lines.append(
                f"| {arm} | {r['concurrency']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
                f"| {r['p99_ms']:.2f} | {r['errors']} |"
            )
    lines += ["", "| goal | measured | target | met |", "| --- | ---: | ---: | :---: |"]
    for g in results["goals"]:
        lines.append(
            f"| {g['name']} | {g['value']:.2f} | {g['op']} {g['target']} | {'yes' if g['met'] else 'NO'} |"
        )
    p = results["probe"]
    lines += [
        "",
        f"Readiness probe while (c) runs at concurrency {p['concurrency']}: {p['samples']} samples, "
        f"p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, max {p['max_ms']:.1f} ms, "
        f"failures {p['failures']}.",
    ]
    return "\n".join(lines) + "\n"


def goals(arms: dict[str, list[dict[str, Any]]], probe: dict[str, Any]) -> list[dict[str, Any]]:
    a = arms["(a) in-process predict"][0]
    b = {r["concurrency"]: r for r in arms["(b) server, no Feast"]}
    checks: list[tuple[str, float, str, float]] = []
    for name, key in (("(c)", "(c) server + Feast SQLite"), ("(d)", "(d) server + Feast Redis")):
        for row in arms[key]:
            c = row["concurrency"]
            checks.append((f"{name}/(b) p99 @ c={c}", ratio(row["p99_ms"], b[c]["p99_ms"]), "<=", 2.0))
            checks.append((f"{name}/(b) throughput @ c={c}", ratio(row["rps"], b[c]["rps"]), ">=", 0.6))
    checks.append(("(b) p50 @ c=1 / (a) p50", ratio(b[1]["p50_ms"], a["p50_ms"]), "<=", 3.0))
    checks.append(("readiness p99 ms under (c)", float(probe["p99_ms"]), "<", 100.0))
    met = {"<=": lambda v, t: v <= t, ">=": lambda v, t: v >= t, "<": lambda v, t: v < t}
    return [
        {"name": n, "value": v, "op": op, "target": t, "met": bool(met[op](v, t))} for n, v, op, t in checks
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each cell.")
    parser.add_argument("--threads", type=int, default=1, help="Server predict threads (server default 1).")
    args = parser.parse_args(argv)

    from serving.server import config_from_settings
    from shipyard.errors import ShipyardError
    from shipyard.settings import load_settings

    settings = load_settings("local").resolve(ROOT)
    spec = settings.spec
    table = next(iter(spec.feature_tables.values()))
    try:
        base = config_from_settings(settings, threads=args.threads)
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
    key = spec.entity_key
    keys = pd.read_parquet(settings.data_dir / table.file, columns=[key])[key]
    entities = [int(c) for c in keys.drop_duplicates().head(64)]
    rows = [{key: c, **spec.examples[i % len(spec.examples)]} for i, c in enumerate(entities)]
    arms: dict[str, list[dict[str, Any]]] = {}

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        work = Path(tmp)
        base = dataclasses.replace(base, request_log_dir=work / "request_log")
        model = base.model_name
        bodies = work / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"instances": [row]}) + "\n" for row in rows))
        script = work / "bench.lua"
        script.write_text(WRK_SCRIPT)

        print("(a) in-process predict ...", flush=True)
        arms["(a) in-process predict"] = [in_process(base, rows, args.seconds)]

        def run_arm(name: str, url: str, probe_at: int | None = None) -> dict[str, Any] | None:
            cells, probe = [], None
            for c in CONCURRENCY:
                print(f"{name} at concurrency {c} ...", flush=True)
                wrk(url, model, bodies, script, c, 2)  # warm-up
                if c == probe_at:
                    with ProbeSampler(url) as sampler:
                        cells.append(wrk(url, model, bodies, script, c, args.seconds))
                    s = sampler.samples
                    probe = {
                        "concurrency": c,
                        "samples": len(s),
                        "p50_ms": pct(s, 50) * 1000,
                        "p99_ms": pct(s, 99) * 1000,
                        "max_ms": max(s) * 1000,
                        "failures": sampler.failures,
                    }
                else:
                    cells.append(wrk(url, model, bodies, script, c, args.seconds))
            arms[name] = cells
            return probe

        with model_server(dataclasses.replace(base, feature_lookup=False), work / "server-b.log") as url:
            run_arm("(b) server, no Feast", url)
        with model_server(base, work / "server-c.log") as url:
            probe = run_arm("(c) server + Feast SQLite", url, probe_at=max(CONCURRENCY))
        print("(d) loading the Redis online store ...", flush=True)
        redis_config = dataclasses.replace(base, feature_store_yaml=DEPLOYED_YAML)
        with (
            redis_store(base.feature_repo, work) as env,
            model_server(redis_config, work / "server-d.log", env=env) as url,
        ):
            run_arm("(d) server + Feast Redis", url)

    assert probe is not None
    results = {
        "seconds": args.seconds,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "model_version": base.version_label,
        "load_generator": "wrk",
        "arms": arms,
        "probe": probe,
    }
    results["goals"] = goals(arms, probe)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (RESULTS / "serving.md").write_text(text)
    print()
    print(text)
    print(f"written: {RESULTS / 'serving.json'}, {RESULTS / 'serving.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
