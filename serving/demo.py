"""The end of `make run`: start the server on the new champion, send a few requests, stop it.

Runs the server as its own process on a free port (exactly as `make serve` would), so what is
printed is what a caller of the real server sees: status, answer and observed latency, including
one invalid request and its 400.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
import pandas as pd

from serving.server import DEFAULT_MODEL_NAME
from shipyard.errors import ShipyardError
from shipyard.registry import ModelRegistry
from shipyard.schema import ENTITY_KEY, PROFILE_FILE
from shipyard.settings import Settings


class DemoError(ShipyardError):
    """The model server did not start or answer during the end-of-run demo."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_command(settings: Settings, port: int, request_log: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "serving",
        "--registry",
        settings.model_registry,
        "--feature-repo",
        str(settings.feature_repo),
        "--feature-store-yaml",
        settings.feature_store_yaml,
        "--port",
        str(port),
        "--request-log-dir",
        str(request_log),
        *extra,
    ]


def wait_ready(client: httpx.Client, process: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the model server exited with code {process.returncode}")
        try:
            if client.get("/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the model server was not ready within {seconds:.0f}s")


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


def run_demo(settings: Settings, say: TextIO = sys.stdout) -> None:
    champion = ModelRegistry(settings.model_registry).champion()
    if champion is None:
        say.write("serve: no champion in the registry, so no server demo\n")
        return
    customers = pd.read_parquet(settings.data_dir / PROFILE_FILE, columns=[ENTITY_KEY])[ENTITY_KEY]
    known = [int(c) for c in customers.drop_duplicates().head(2)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = DEFAULT_MODEL_NAME
    with tempfile.TemporaryDirectory(prefix="shipyard-demo-") as tmp:
        log_file = Path(tmp) / "server.log"
        request_log = Path(settings.model_registry).parent / "request_log" / "demo"
        say.write(f"\nserve: starting the model server on {url} (model {champion.version})\n")
        with log_file.open("wb") as out:
            process = subprocess.Popen(
                server_command(settings, port, request_log), stdout=out, stderr=subprocess.STDOUT
            )
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                wait_ready(client, process)
                calls: list[tuple[str, str, dict[str, Any]]] = [
                    (
                        "V1 single",
                        f"/v1/models/{name}:predict",
                        {
                            "instances": [
                                {"customer_id": known[0], "ticket_text": "I cannot log in to the app"}
                            ]
                        },
                    ),
                    (
                        "V1 batch",
                        f"/v1/models/{name}:predict",
                        {
                            "instances": [
                                {"customer_id": known[1], "ticket_text": "invoice 4471 was charged twice"},
                                {"customer_id": 999_999_999, "ticket_text": "where is my parcel?"},
                            ]
                        },
                    ),
                    (
                        "V2 infer",
                        f"/v2/models/{name}/infer",
                        {
                            "inputs": [
                                {
                                    "name": "customer_id",
                                    "shape": [1],
                                    "datatype": "INT64",
                                    "data": [known[0]],
                                },
                                {
                                    "name": "ticket_text",
                                    "shape": [1],
                                    "datatype": "BYTES",
                                    "data": ["payslip"],
                                },
                            ]
                        },
                    ),
                    (
                        "invalid",
                        f"/v1/models/{name}:predict",
                        {"instances": [{"customer_id": "abc", "ticket_text": ""}]},
                    ),
                ]
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
        except (httpx.HTTPError, DemoError) as exc:
            tail = log_file.read_text(errors="replace")[-2000:]
            raise DemoError(f"server demo failed: {exc}\n--- server output ---\n{tail}") from exc
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        mine = sorted(request_log.glob(f"requests-*-{process.pid}.jsonl"))
        records = sum(len(p.read_text().splitlines()) for p in mine)
        say.write(f"serve: stopped; {records} requests logged to {', '.join(str(p) for p in mine)}\n")
