"""Readiness, metrics and the request log, each observed from outside the server process."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.serving_stack import Server, Stack, source_tables, start_server

Sample = tuple[str, dict[str, str], float]


def scrape(server: Server) -> list[Sample]:
    """Parsed with prometheus_client's own text-format parser."""
    with server.client() as c:
        text = c.get("/metrics").text
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(metrics: list[Sample], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in metrics if n == name and all(lab.get(k) == x for k, x in labels.items()))


def writable_copy(registry: Path, target: Path) -> Path:
    shutil.copytree(registry, target)
    for path in target.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return target


@pytest.mark.parametrize("damage", ["tampered", "missing"])
def test_a_damaged_artifact_means_not_ready_and_503(stack: Stack, tmp_path: Path, damage: str) -> None:
    registry = writable_copy(stack.registry, tmp_path / "models")
    model_file = registry / "versions" / stack.version / "model.joblib"
    if damage == "tampered":
        with model_file.open("ab") as fh:
            fh.write(b"\0")
    else:
        model_file.unlink()
    server = start_server(
        stack, tmp_path / "srv", "--model-version", stack.version, registry=registry, expect_ready=False
    )
    try:
        with server.client() as c:
            assert c.get("/v2/health/live").status_code == 200  # alive: do not restart, just do not route
            for path in (
                "/v2/health/ready",
                f"/v2/models/{server.model}/ready",
                f"/v1/models/{server.model}",
            ):
                r = c.get(path)
                assert r.status_code == 503, (path, r.text)
                assert r.json()["code"] == "model_not_ready"
        r = server.v1([{"customer_id": 100001, "ticket_text": "hello"}])
        assert r.status_code == 503
        assert r.json()["code"] == "model_not_ready"
        assert str(tmp_path) not in r.text and "joblib" not in r.text
        metrics = scrape(server)
        assert value(metrics, "shipyard_model_ready", model=server.model) == 0
        assert "content hash check" in r.json()["error"]
    finally:
        server.stop()
    assert "model.joblib is missing or its content changed" in server.log_text()  # details: log only


def test_metrics_move_as_requests_flow(server: Server, stack: Stack) -> None:
    customer = int(source_tables(stack)["customer_profile.parquet"]["customer_id"].iloc[0])
    before = scrape(server)
    ok = server.v1(
        [
            {"customer_id": customer, "ticket_text": "refund for invoice 12"},
            {"customer_id": 9_000_000_002, "ticket_text": "the app crashes"},
        ]
    )
    assert ok.status_code == 200
    bad = server.v1([{"customer_id": customer, "ticket_text": "z" * 10_000}])
    assert bad.status_code == 400
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    predict = "/v1/models/{model_name}:predict"
    assert delta("shipyard_request_duration_seconds_count", protocol="v1", endpoint=predict) == 2
    assert delta("shipyard_requests_total", endpoint=predict, code="200") == 1
    assert delta("shipyard_requests_total", endpoint=predict, code="400") == 1
    assert delta("shipyard_predictions_total", model=server.model, version=stack.version) == 2
    assert delta("shipyard_prediction_probability_count", model=server.model) == 2 * 4
    assert delta("shipyard_feature_lookup_duration_seconds_count", store="sqlite") == 1
    assert delta("shipyard_unknown_customers_total", model=server.model) == 1
    assert delta("shipyard_feature_missing_total", feature="region") >= 1
    assert delta("shipyard_contract_violations_total", field="ticket_text", rule="max_length") == 1
    info = [labels for name, labels, _ in after if name == "shipyard_model_info"]
    assert len(info) == 1 and info[0]["version"] == stack.version and info[0]["online_store"] == "sqlite"
    assert value(after, "shipyard_model_age_seconds", version=stack.version) > 0
    assert value(after, "shipyard_model_ready", model=server.model) == 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_request_log_holds_every_request_after_shutdown(stack: Stack, tmp_path: Path) -> None:
    server = start_server(
        stack,
        tmp_path / "srv",
        "--model-version",
        stack.version,
        "--request-log-batch",
        "7",
        "--request-log-flush-seconds",
        "30",
    )
    customer = int(source_tables(stack)["customer_profile.parquet"]["customer_id"].iloc[0])
    sent: dict[str, int] = {}
    try:
        with server.client() as c:
            for i in range(40):
                rid = f"req-{i:03d}"
                if i % 5 == 4:
                    r = c.post(
                        f"/v1/models/{server.model}:predict",
                        content=b"{not json",
                        headers={"x-request-id": rid, "content-type": "application/json"},
                    )
                elif i % 3 == 0:
                    r = c.post(
                        f"/v2/models/{server.model}/infer",
                        headers={"x-request-id": rid},
                        json={
                            "inputs": [
                                {
                                    "name": "customer_id",
                                    "shape": [1],
                                    "datatype": "INT64",
                                    "data": [customer],
                                },
                                {
                                    "name": "ticket_text",
                                    "shape": [1],
                                    "datatype": "BYTES",
                                    "data": [f"order {i}"],
                                },
                            ]
                        },
                    )
                else:
                    r = c.post(
                        f"/v1/models/{server.model}:predict",
                        headers={"x-request-id": rid},
                        json={
                            "instances": [
                                {
                                    "customer_id": customer,
                                    "ticket_text": f"invoice {i}",
                                    "timestamp": "2025-03-30T12:00:00+00:00",
                                }
                            ]
                        },
                    )
                assert r.headers["x-request-id"] == rid
                sent[rid] = r.status_code
            assert c.get("/v2/health/ready").status_code == 200  # probes are not prediction requests
    finally:
        assert server.stop() == 0 or os.name != "posix"
    records = [
        json.loads(line)
        for path in sorted(server.request_log.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    # 40 requests, batches of 7, a 30 s timer: the last 5 reach disk only through the flush on shutdown.
    assert {r["request_id"]: r["status"] for r in records} == sent
    assert len(records) == 40
    for record in records:
        assert record["received_at"].endswith("+00:00")
        if record["status"] == 200:
            assert record["model_version"] == stack.version
            (row,) = record["rows"]
            assert row["customer_id"] == customer
            assert row["department"] in row["probabilities"]
            assert set(row["features"]) >= {"region", "open_invoices", "text_length", "kw_it"}
        else:
            assert record["error"]["field"] == "body"
            assert record["rows"] == []


def test_probes_stay_answerable_with_predictions_in_flight(server: Server, stack: Stack) -> None:
    """Functional, not timed: readiness answers while a pool's worth of batch predictions is running."""
    import concurrent.futures

    customer = int(source_tables(stack)["customer_profile.parquet"]["customer_id"].iloc[0])
    batch = [{"customer_id": customer, "ticket_text": f"my order {i} has not arrived"} for i in range(256)]

    def predict() -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return c.post(f"/v1/models/{server.model}:predict", json={"instances": batch}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(predict) for _ in range(16)]
        with server.client() as c:
            probes = [c.get("/v2/health/ready").status_code for _ in range(20)]
        assert [f.result() for f in futures] == [200] * 16
    assert probes == [200] * 20
