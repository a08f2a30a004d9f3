"""Readiness, metrics, the request log and the command line, each observed from outside the server.

The server is given one version directory and the content hash it must have; these tests damage
copies of a registered version in every way a download, a cache or a volume can go wrong, start it
the way a KServe ServingRuntime does, and serve a copy that has no registry anywhere near it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.server import parse_args, server_args
from tests.integration.serving_stack import (
    Server,
    Stack,
    known_entities,
    serve_config,
    start_server,
    writable_copy,
)

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


# -- a version directory that is not what it claims to be -------------------------------------------
def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def _add(path: Path, text: str) -> None:
    path.write_text(text)


def _edit_contract(path: Path) -> None:
    contract = json.loads(path.read_text())
    contract["max_batch"] = 100_000  # a plausible, valid edit: only the hash can tell
    path.write_text(json.dumps(contract))


# name -> (damage to a writable copy of the version dir, wrong hash?, what the log names)
DAMAGE: dict[str, tuple[Callable[[Path], None], bool, str]] = {
    "wrong-content-hash": (lambda d: None, True, "is not the expected"),
    "tampered-model": (
        lambda d: _append(d / "model.joblib", b"\0"),
        False,
        "model.joblib: sha256 does not match",
    ),
    "edited-contract": (
        lambda d: _edit_contract(d / "input_contract.json"),
        False,
        "input_contract.json: sha256 does not match",
    ),
    "missing-model": (lambda d: (d / "model.joblib").unlink(), False, "model.joblib is missing"),
    "extra-file": (lambda d: _add(d / "sitecustomize.py", "x = 1\n"), False, "is not listed in"),
}


@pytest.fixture(scope="module")
def damaged_servers(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """One server per kind of damage, started together (each takes seconds to import its stack)."""
    servers: dict[str, Server] = {}
    try:
        for name, (damage, wrong_hash, _) in DAMAGE.items():
            work = tmp_path_factory.mktemp(f"damaged-{name}")
            model_dir = writable_copy(stack.model_dir, work / "model")
            damage(model_dir)
            content_hash = ("0" if stack.content_hash[0] != "0" else "1") + stack.content_hash[1:]
            config = serve_config(
                stack,
                work,
                model_dir=model_dir,
                content_hash=content_hash if wrong_hash else stack.content_hash,
            )
            servers[name] = Server(config, work / "server.log")
            servers[name].start(wait=False)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_version_that_fails_its_content_hash_is_never_ready(
    damaged_servers: dict[str, Server], damage: str
) -> None:
    server = damaged_servers[damage]
    server.wait_ready(90, "/v2/health/live")  # alive: do not restart, just do not route traffic to it
    try:
        with server.client() as c:
            for path in (
                "/v2/health/ready",
                f"/v2/models/{server.model}/ready",
                f"/v1/models/{server.model}",
            ):
                r = c.get(path)
                assert r.status_code == 503, (path, r.text)
                assert r.json()["code"] == "model_not_ready"
            v2 = c.post(
                f"/v2/models/{server.model}/infer",
                json={
                    "inputs": [
                        {"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [100001]},
                        {"name": "ticket_text", "shape": [1], "datatype": "BYTES", "data": ["hello"]},
                    ]
                },
            )
        v1 = server.v1([{"customer_id": 100001, "ticket_text": "hello"}])
        for r in (v1, v2):
            assert r.status_code == 503, r.text
            error = r.json()
            assert error["code"] == "model_not_ready"
            assert "content hash check" in error["error"]
            for leak in (str(server.config.model_dir), "joblib", "MANIFEST", "Traceback"):
                assert leak not in r.text
        assert value(scrape(server), "shipyard_model_ready", model=server.model) == 0
    finally:
        assert server.stop() == 0
    detail = DAMAGE[damage][2]
    assert detail in server.log_text()  # the details are in the log only


# -- the command line ----------------------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "unknown",
    [
        ["--bogus_flag", "1"],
        ["--registry", "/srv/models"],  # the old server resolved versions itself; this one does not
        ["--model-dir", "/mnt/models"],  # dashes are not KServe's spelling
        ["--model", "x"],  # no abbreviations: a typo must not select a neighbouring flag
    ],
    ids=["bogus", "old-registry-flag", "dashed", "abbreviation"],
)
def test_an_unknown_flag_is_an_error_not_ignored(stack: Stack, tmp_path: Path, unknown: list[str]) -> None:
    result = run_cli(*server_args(serve_config(stack, tmp_path, port=8080)), *unknown)
    assert result.returncode == 2, result
    assert f"unrecognized arguments: {' '.join(unknown)}" in result.stderr
    assert "python -m serving: error:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "request_log").exists()  # it stopped at the command line, before serving


def test_the_version_and_its_hash_are_required(stack: Stack, tmp_path: Path) -> None:
    args = server_args(serve_config(stack, tmp_path, port=8080))
    i = args.index("--content_hash")
    result = run_cli(*args[:i], *args[i + 2 :])
    assert result.returncode == 2
    assert "the following arguments are required: --content_hash" in result.stderr


def test_server_args_and_parse_args_agree(stack: Stack, tmp_path: Path) -> None:
    """The flags `ServerProcess` passes are exactly what the server parses back into its config."""
    for config in (
        serve_config(stack, tmp_path, port=9123),
        serve_config(
            stack,
            tmp_path,
            port=9124,
            version_label=None,
            feature_lookup=False,
            request_log_dir=None,
            threads=3,
            access_log=True,
        ),
    ):
        assert parse_args(server_args(config)) == config


class RuntimeStyle(Server):
    """Started with the argv a KServe ServingRuntime renders: `--flag=value`, KServe's names first,
    the model directory where the storage initializer puts it, no version label, no request log."""

    def command(self) -> list[str]:
        c = self.config
        return [
            sys.executable,
            "-m",
            "serving",
            f"--model_name={c.model_name}",
            f"--model_dir={c.model_dir}",
            f"--http_port={c.port}",
            f"--content_hash={c.content_hash}",
            f"--feature_repo={c.feature_repo}",
            f"--feature_store_yaml={c.feature_store_yaml}",
        ]


@pytest.fixture(scope="module")
def copied_out(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The registered version directory copied to another path, like a storageUri download to
    /mnt/models: no registry, no index, nothing but the directory and the hash it must have."""
    work = tmp_path_factory.mktemp("storage-uri")
    mnt = writable_copy(stack.model_dir, work / "mnt" / "models")
    config = serve_config(stack, work, model_dir=mnt, version_label=None, request_log_dir=None)
    server = RuntimeStyle(config, work / "server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_the_flags_a_serving_runtime_passes_are_accepted(copied_out: Server) -> None:
    command = copied_out.command()
    for flag in ("--model_name=", "--model_dir=", "--http_port="):
        assert any(arg.startswith(flag) for arg in command), flag
    assert not any(arg.startswith("--model_version") for arg in command)
    with copied_out.client() as c:
        assert c.get(f"/v1/models/{copied_out.model}").json()["ready"] is True


def test_a_version_directory_copied_out_of_the_registry_is_served(
    copied_out: Server, server: Server, stack: Stack
) -> None:
    assert not str(copied_out.config.model_dir).startswith(str(stack.registry))
    rows = [
        {"customer_id": c, "ticket_text": t}
        for c, t in zip(known_entities(stack, 3), ["refund", "parcel lost", "login fails"], strict=True)
    ]
    copy, original = copied_out.v1(rows), server.v1(rows)
    assert copy.status_code == original.status_code == 200, (copy.text, original.text)
    # Same bytes, same answers; without a version label the version is the content hash's prefix.
    assert copy.json()["predictions"] == original.json()["predictions"]
    assert copy.json()["model_version"] == stack.content_hash[:12]
    info = [labels for name, labels, _ in scrape(copied_out) if name == "shipyard_model_info"]
    assert len(info) == 1
    assert info[0]["content_hash"] == stack.content_hash and info[0]["project"] == "ticket_routing"


# -- a healthy server ----------------------------------------------------------------------------------
def test_metrics_move_as_requests_flow(server: Server, stack: Stack) -> None:
    customer = known_entities(stack, 1)[0]
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
    assert delta("shipyard_entity_not_found_total", model=server.model) == 1
    assert delta("shipyard_feature_missing_total", feature="region") >= 1
    assert delta("shipyard_contract_violations_total", field="ticket_text", rule="max_length") == 1
    info = [labels for name, labels, _ in after if name == "shipyard_model_info"]
    assert len(info) == 1 and info[0]["version"] == stack.version and info[0]["online_store"] == "sqlite"
    assert info[0]["content_hash"] == stack.content_hash and info[0]["feature_service"] == "ticket_routing_v1"
    assert value(after, "shipyard_model_age_seconds", version=stack.version) > 0
    assert value(after, "shipyard_model_ready", model=server.model) == 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_request_log_holds_every_request_after_shutdown(stack: Stack, tmp_path: Path) -> None:
    server = start_server(stack, tmp_path / "srv", request_log_batch=7, request_log_flush_seconds=30)
    customer = known_entities(stack, 1)[0]
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
            assert row["customer_id"] == customer and row["entity_found"] is True
            assert row["prediction"] in row["probabilities"]
            assert set(row) >= {"customer_id", "ticket_text", "timestamp", "features", "prediction"}
            assert set(row["features"]) >= {"region", "open_invoices", "text_length", "kw_it"}
        else:
            assert record["error"]["field"] == "body"
            assert record["rows"] == []


def test_probes_stay_answerable_with_predictions_in_flight(server: Server, stack: Stack) -> None:
    """Functional, not timed: readiness answers while a pool's worth of batch predictions is running."""
    import concurrent.futures

    customer = known_entities(stack, 1)[0]
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
