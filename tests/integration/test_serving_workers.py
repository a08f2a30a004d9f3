"""Several worker processes behind one port (`--workers N`, serving.workers).

Every worker is a whole server (contract, batching, errors, request log); the supervisor owns the
socket and the signals. What must hold across processes: `/metrics`, whichever worker answers it,
counts every worker's requests once (prometheus_client's multiprocess mode), the request log has
exactly one record per request, and SIGTERM drains every worker and exits 0.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serving.process import ServerStartError
from tests.integration.serving_stack import MODEL, Server, Stack, known_entities, start_server

REQUESTS = 48


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # A new connection per scrape: the kernel may hand it to either worker.
    with httpx.Client(base_url=server.url, timeout=30, headers={"connection": "close"}) as client:
        text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, lab), v in metrics.items() if n == name and all((k, x) in lab for k, x in labels.items())
    )


def wait_for_workers(server: Server, workers: int, timeout: float = 120) -> None:
    """Until every worker has loaded the model (each logs it once)."""
    deadline = time.monotonic() + timeout
    while server.log_text().count(f"model {MODEL} ready:") < workers:
        if time.monotonic() > deadline:
            raise ServerStartError(f"not every worker became ready: {server.tail()}")
        time.sleep(0.2)


def test_workers_share_the_port_and_aggregate_metrics_and_the_request_log(
    stack: Stack, workdir: Path
) -> None:
    server = start_server(stack, workdir, workers=2)
    try:
        wait_for_workers(server, 2)
        entities = known_entities(stack, 8)

        def predict(i: int) -> str:
            body = {
                "instances": [{"customer_id": entities[i % len(entities)], "ticket_text": "cannot log in"}]
            }
            with httpx.Client(base_url=server.url, timeout=30, headers={"connection": "close"}) as client:
                response = client.post(f"/v1/models/{MODEL}:predict", json=body)
            assert response.status_code == 200, response.text
            return response.headers["x-request-id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(predict, range(REQUESTS)))
        bad = httpx.post(
            f"{server.url}/v1/models/{MODEL}:predict", json={"instances": [{"customer_id": "x"}]}
        )
        assert bad.status_code == 400

        # Every scrape, whichever worker answers it, sees all requests of all workers.
        for _ in range(4):
            metrics = scrape(server)
            predict_route = "/v1/models/{model_name}:predict"
            assert total(metrics, "shipyard_requests_total", endpoint=predict_route, code="200") == REQUESTS
            assert total(metrics, "shipyard_requests_total", endpoint=predict_route, code="400") == 1
            assert total(metrics, "shipyard_predictions_total") == REQUESTS
            assert total(metrics, "shipyard_batch_rows_sum") == REQUESTS
            assert total(metrics, "shipyard_model_ready", model=MODEL) == 1
            info = [lab for (n, lab), _ in metrics.items() if n == "shipyard_model_info"]
            assert len(info) == 1 and ("version", stack.version) in info[0]
            assert total(metrics, "shipyard_model_age_seconds", version=stack.version) > 0
    finally:
        code = server.stop()
    assert code == 0, server.tail()

    files = sorted(server.request_log.glob("requests-*.jsonl"))
    records = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    logged = [r["request_id"] for r in records if r["status"] == 200]
    assert sorted(logged) == sorted(ids), "one record per answered request, none twice"
    assert sum(r["status"] == 400 for r in records) == 1
    # More than one process wrote: the load really was spread over the workers.
    assert len({path.name.split("-")[2].split(".")[0] for path in files}) == 2, [p.name for p in files]


def test_a_worker_that_dies_takes_the_server_down_instead_of_running_short(
    stack: Stack, workdir: Path
) -> None:
    """A supervisor that silently ran on with fewer workers than it claims would halve capacity
    without anyone noticing; it exits non-zero so that Kubernetes restarts the container."""
    import os
    import signal

    server = start_server(stack, workdir, workers=2)
    try:
        wait_for_workers(server, 2)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        assert server.process is not None
        code = server.process.wait(60)
    finally:
        server.stop()
    assert code != 0
