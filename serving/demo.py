"""The end of `make run`: start the server on the new champion, send a few requests, stop it.

Runs the server as its own process on a free port (exactly as `make serve` would), so what is
printed is what a caller of the real server sees: status, answer and observed latency, including
one invalid request and its 400.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
import pyarrow.parquet as pq

from serving.process import ServerProcess, ServerStartError
from serving.server import config_from_settings
from shipyard.errors import ShipyardError
from shipyard.registry import ModelRegistry
from shipyard.settings import Settings


class DemoError(ShipyardError):
    """The model server did not start or answer during the end-of-run demo."""


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _short(body: Any) -> str:
    text = json.dumps(_rounded(body), separators=(",", ":"))
    return text if len(text) <= 300 else text[:297] + "..."


def _known_entities(settings: Settings, n: int) -> list[int]:
    """A few entity keys that have features, read from the first feature table."""
    spec = settings.spec
    table = next(iter(spec.feature_tables.values()))
    column = pq.read_table(settings.data_dir / table.file, columns=[spec.entity_key])[spec.entity_key]
    seen: list[int] = []
    for value in column.to_pylist():
        if value not in seen:
            seen.append(int(value))
        if len(seen) == n:
            break
    return seen


def run_demo(settings: Settings, say: TextIO = sys.stdout) -> None:
    spec = settings.spec
    champion = ModelRegistry(settings.model_registry).champion()
    if champion is None:
        say.write("serve: no champion in the registry, so no server demo\n")
        return
    if not spec.examples:
        say.write(f"serve: project {spec.name} has no example requests, so no server demo\n")
        return
    key = spec.entity_key
    known = _known_entities(settings, len(spec.examples))
    rows = [{key: known[i % len(known)], **ex} for i, ex in enumerate(spec.examples)]
    unknown = {**rows[-1], key: 999_999_999}
    name = spec.name
    request_log = settings.state_dir / "request_log" / "demo"
    config = config_from_settings(settings, port=0, request_log_dir=request_log)
    with tempfile.TemporaryDirectory(prefix="shipyard-demo-") as tmp:
        server = ServerProcess(config, Path(tmp) / "server.log")
        say.write(f"\nserve: starting the model server (model {champion.version})\n")
        try:
            server.start()
            say.write(f"serve: {server.url} ready\n")
            v2_inputs = [
                {
                    "name": f.name,
                    "shape": [1],
                    "datatype": "INT64" if f.type == "integer" else "FP64" if f.type == "number" else "BYTES",
                    "data": [rows[0][f.name]],
                }
                for f in spec.request
                if f.name in rows[0]
            ]
            calls: list[tuple[str, str, dict[str, Any]]] = [
                ("V1 single", f"/v1/models/{name}:predict", {"instances": [rows[0]]}),
                ("V1 batch", f"/v1/models/{name}:predict", {"instances": [*rows[1:], unknown]}),
                ("V2 infer", f"/v2/models/{name}/infer", {"inputs": v2_inputs}),
                ("invalid", f"/v1/models/{name}:predict", {"instances": [{key: "abc"}]}),
            ]
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for label, path, body in calls:
                    started = time.perf_counter()
                    r = client.post(path, json=body)
                    ms = (time.perf_counter() - started) * 1000
                    say.write(f"  {label:<9} {r.status_code} in {ms:6.1f} ms  {_short(r.json())}\n")
                one = calls[0][2]
                samples = []
                for _ in range(100):
                    started = time.perf_counter()
                    client.post(calls[0][1], json=one).raise_for_status()
                    samples.append((time.perf_counter() - started) * 1000)
            cuts = statistics.quantiles(samples, n=100)
            say.write(
                f"  latency over 100 sequential single-row V1 requests: p50 {cuts[49]:.1f} ms, "
                f"p95 {cuts[94]:.1f} ms, max {max(samples):.1f} ms\n"
            )
        except (httpx.HTTPError, ServerStartError) as exc:
            raise DemoError(f"server demo failed: {exc}\n--- server output ---\n{server.tail()}") from exc
        finally:
            server.stop()
        mine = sorted(request_log.glob(f"requests-*-{server.pid}.jsonl"))
        records = sum(len(p.read_text().splitlines()) for p in mine)
        say.write(f"serve: stopped; {records} requests logged to {', '.join(str(p) for p in mine)}\n")
