"""Issue 8, model server items 1-3, each reproduced from outside against a real server process.

1. Management endpoints (KServe's model repository: load/unload), the OpenAPI document and the docs
   UI are off by default; the listen address is configurable (127.0.0.1 unless told otherwise).
2. Malformed V2 binary bodies are 4xx naming the input and the rule; every error of every endpoint
   is Shipyard's one error format, never KServe's or uvicorn's, never a stack trace.
3. A client that goes away is counted apart (499), not as a server error, and its work is skipped.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.serving_stack import Server, Stack, known_entities, start_server
from tests.integration.test_serving_lifecycle import scrape, value

LEAKS = ("Traceback", 'File "', "/work/", "site-packages", ".py")


def assert_shipyard_error(r: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """The one error format: JSON with error, code and the request id the response carries."""
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    assert 400 <= r.status_code < 600, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    body: dict[str, Any] = r.json()
    assert body["error"] and body["code"], body
    assert body["request_id"] == r.headers["x-request-id"], body
    for leak in LEAKS:
        assert leak not in r.text, r.text
    return body


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


# -- 1. management endpoints, docs, listen address --------------------------------------------------
MANAGEMENT = [
    ("POST", "/v2/repository/models/{m}/unload"),
    ("POST", "/v2/repository/models/{m}/load"),
    ("POST", "/v2/repository/index"),
    ("GET", "/v2/repository/index"),
    ("POST", "/v1/models/{m}:load"),
    ("POST", "/v1/models/{m}:unload"),
]
DOCS = ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]


@pytest.fixture(scope="module")
def default_server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server started with no security-related flags at all: what the defaults give."""
    srv = start_server(stack, tmp_path_factory.mktemp("defaults"))
    yield srv
    srv.stop()


def test_an_anonymous_unload_cannot_take_the_model_down(default_server: Server, stack: Stack) -> None:
    before = scrape(default_server)
    with default_server.client() as c:
        for method, path in MANAGEMENT:
            r = c.request(method, path.format(m=default_server.model))
            body = assert_shipyard_error(r, 404)
            assert body["code"] == "not_found", (path, body)
        assert c.get("/v2/health/ready").status_code == 200
        assert c.get(f"/v2/models/{default_server.model}/ready").status_code == 200
        # The server does not advertise an extension it does not offer.
        assert "model_repository_extension" not in c.get("/v2").json().get("extensions", [])
    row = [{"customer_id": known_entities(stack, 1)[0], "ticket_text": "still serving?"}]
    assert default_server.v1(row).status_code == 200
    after = scrape(default_server)
    assert value(after, "shipyard_model_ready", model=default_server.model) == 1
    # Nothing of this is a contract violation: unknown paths are not a caller's data error.
    assert value(after, "shipyard_contract_violations_total") == value(
        before, "shipyard_contract_violations_total"
    )


def test_docs_and_the_openapi_document_are_off_by_default(default_server: Server) -> None:
    with default_server.client() as c:
        for path in DOCS:
            assert_shipyard_error(c.get(path), 404)


def test_the_server_listens_on_loopback_by_default(default_server: Server) -> None:
    port = default_server.config.port
    assert connects("127.0.0.1", port)
    # 127.0.0.2 is this machine too, but not the address the server was told to listen on.
    assert not connects("127.0.0.2", port)


@pytest.fixture(scope="module")
def opted_in(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Everything switched on explicitly, listening on every interface (what a pod passes)."""
    srv = start_server(
        stack,
        tmp_path_factory.mktemp("opted-in"),
        host="0.0.0.0",
        enable_model_repository=True,
        enable_docs=True,
    )
    yield srv
    srv.stop()


def test_host_0_0_0_0_listens_on_every_address(opted_in: Server) -> None:
    assert connects("127.0.0.2", opted_in.config.port)


def test_docs_can_be_switched_on(opted_in: Server) -> None:
    with opted_in.client() as c:
        assert c.get("/openapi.json").status_code == 200
        assert c.get("/docs").status_code == 200


def test_switched_on_the_repository_endpoints_unload_and_load_coherently(
    opted_in: Server, stack: Stack
) -> None:
    """Opt-in unload: not ready everywhere (probes, predictions, the gauge), the request log still
    open; load verifies the directory again and serves exactly as before."""
    row = [{"customer_id": known_entities(stack, 1)[0], "ticket_text": "invoice 77 charged twice"}]
    first = opted_in.v1(row, headers={"x-request-id": "before-unload"})
    assert first.status_code == 200, first.text
    with opted_in.client() as c:
        assert c.post(f"/v2/repository/models/{opted_in.model}/unload").status_code == 200
        assert_shipyard_error(c.get("/v2/health/ready"), 503)
        unloaded = opted_in.v1(row, headers={"x-request-id": "while-unloaded"})
        assert assert_shipyard_error(unloaded, 503)["code"] == "model_not_ready"
        assert value(scrape(opted_in), "shipyard_model_ready", model=opted_in.model) == 0
        unknown = c.post("/v2/repository/models/no-such-model/load")
        assert assert_shipyard_error(unknown, 404)["code"] == "model_not_found"
        assert c.post(f"/v2/repository/models/{opted_in.model}/load").status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
    again = opted_in.v1(row, headers={"x-request-id": "after-load"})
    assert again.status_code == 200 and again.json() == first.json()
    assert value(scrape(opted_in), "shipyard_model_ready", model=opted_in.model) == 1
    deadline = time.monotonic() + 10
    ids: set[str] = set()
    while time.monotonic() < deadline and "after-load" not in ids:
        time.sleep(0.2)
        ids = {r["request_id"] for r in read_request_log(opted_in.request_log)}
    assert {"before-unload", "while-unloaded", "after-load"} <= ids


def read_request_log(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("requests-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


# -- 2. V2 binary bodies and the one error format ---------------------------------------------------
HEADER = "inference-header-content-length"


def tensor(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> tuple[dict[str, Any], bytes]:
    meta = {
        "name": name,
        "datatype": datatype,
        "shape": list(shape),
        "parameters": {"binary_data_size": len(raw)},
    }
    return meta, raw


def int64s(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}q", *values)


def strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def binary_body(
    *tensors: tuple[dict[str, Any], bytes], extra: bytes = b"", header: str | None = None
) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": [meta for meta, _ in tensors]}).encode()
    body = head + b"".join(raw for _, raw in tensors) + extra
    return body, {
        "content-type": "application/octet-stream",
        HEADER: header if header is not None else str(len(head)),
    }


def ids(*values: int) -> tuple[dict[str, Any], bytes]:
    return tensor("customer_id", "INT64", [len(values)], int64s(*values))


def texts(*values: bytes) -> tuple[dict[str, Any], bytes]:
    return tensor("ticket_text", "BYTES", [len(values)], strings(*values))


def _with(t: tuple[dict[str, Any], bytes], **meta: Any) -> tuple[dict[str, Any], bytes]:
    return {**t[0], **meta}, t[1]


def _size(t: tuple[dict[str, Any], bytes], size: Any) -> tuple[dict[str, Any], bytes]:
    return {**t[0], "parameters": {"binary_data_size": size}}, t[1]


C, T = ids(100001), texts(b"my parcel is lost")
OCTETS = "application/octet-stream"
NO_DATA = {"name": "customer_id", "datatype": "INT64", "shape": [1]}
NO_NAME = {"datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}


def text_raw(raw: bytes, rows: int = 1) -> tuple[dict[str, Any], bytes]:
    return tensor("ticket_text", "BYTES", [rows], raw)


def id_raw(raw: bytes, datatype: str = "INT64") -> tuple[dict[str, Any], bytes]:
    return tensor("customer_id", datatype, [1], raw)


# (id, body + headers, field (substring), rule)
BINARY: list[tuple[str, tuple[bytes, dict[str, str]], str, str]] = [
    ("header-not-a-number", binary_body(C, T, header="abc"), HEADER, "format"),
    ("header-negative", binary_body(C, T, header="-5"), HEADER, "format"),
    ("header-float", binary_body(C, T, header="1.5"), HEADER, "format"),
    ("header-past-the-body", binary_body(C, T, header="100000"), HEADER, "range"),
    ("header-cuts-the-json", binary_body(C, T, header="10"), "body", "json"),
    ("json-not-an-object", (b"[1]", {"content-type": OCTETS, HEADER: "3"}), "body", "type"),
    ("shape-says-more-rows", binary_body(_with(C, shape=[3]), T), "customer_id", "shape"),
    ("shape-not-integers", binary_body(_with(C, shape=["x"]), T), "customer_id", "shape"),
    ("size-past-the-body", binary_body(_size(C, 4096), T), "customer_id", "binary_data_size"),
    ("size-negative", binary_body(_size(C, -8), T), "customer_id", "binary_data_size"),
    ("size-not-a-number", binary_body(_size(C, "8"), T), "customer_id", "binary_data_size"),
    ("int64-partial-element", binary_body(id_raw(b"\x01\x02\x03"), T), "customer_id", "shape"),
    (
        "bytes-prefix-lies",
        binary_body(C, text_raw(struct.pack("<I", 500) + b"short")),
        "ticket_text",
        "bytes_length",
    ),
    ("bytes-prefix-truncated", binary_body(C, text_raw(b"\x05\x00")), "ticket_text", "bytes_length"),
    ("bytes-fewer-elements", binary_body(C, text_raw(strings(b"one"), rows=2)), "ticket_text", "shape"),
    (
        "bytes-trailing-garbage",
        binary_body(C, text_raw(strings(b"one") + b"zz")),
        "ticket_text",
        "bytes_length",
    ),
    ("invalid-utf8", binary_body(C, texts(b"caf\xc3\x28 latte")), "ticket_text[0]", "encoding"),
    ("unknown-datatype", binary_body(id_raw(b"\0" * 16, "INT128"), T), "customer_id", "datatype"),
    ("bytes-after-last-input", binary_body(C, T, extra=b"\0" * 7), "body", "binary_data_size"),
    ("no-data-no-size", binary_body((NO_DATA, b""), T), "customer_id", "data"),
    ("input-without-name", binary_body((NO_NAME, int64s(1)), T), "inputs[0].name", "required"),
]


@pytest.mark.parametrize(("body", "field", "rule"), [b[1:] for b in BINARY], ids=[b[0] for b in BINARY])
def test_malformed_v2_binary_body_is_a_4xx_naming_input_and_rule(
    server: Server, body: tuple[bytes, dict[str, str]], field: str, rule: str
) -> None:
    content, headers = body
    with server.client() as c:
        r = c.post(f"/v2/models/{server.model}/infer", content=content, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    error = assert_shipyard_error(r)
    assert field in error["field"] and error["rule"] == rule, error


def test_a_valid_binary_body_with_a_multibyte_text_is_answered(server: Server, stack: Stack) -> None:
    known = known_entities(stack, 2)
    content, headers = binary_body(ids(*known), texts("café au lait".encode(), b"login fails"))
    with server.client() as c:
        r = c.post(f"/v2/models/{server.model}/infer", content=content, headers=headers)
    assert r.status_code == 200, r.text
    assert {o["name"]: o for o in r.json()["outputs"]}["entity_found"]["data"] == [True, True]


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_every_error_of_every_endpoint_is_the_one_format(server: Server, stack: Stack) -> None:
    m = server.model
    row = {"customer_id": known_entities(stack, 1)[0], "ticket_text": "hello"}
    v2 = {
        "inputs": [
            {"name": "customer_id", "datatype": "INT64", "shape": [1], "data": [row["customer_id"]]},
            {"name": "ticket_text", "datatype": "BYTES", "shape": [1], "data": ["hello"]},
        ]
    }
    too_big = json.dumps({"inputs": [{**v2["inputs"][1], "data": ["y" * 2_000_000]}]}).encode()
    with server.client() as c:
        cases = {
            "explain (no explainer)": c.post(f"/v1/models/{m}:explain", json={"instances": [row]}),
            "model version metadata": c.get(f"/v2/models/{m}/versions/1"),
            "model version ready": c.get(f"/v2/models/{m}/versions/1/ready"),
            "model version infer": c.post(f"/v2/models/{m}/versions/1/infer", json=v2),
            "unknown route": c.get("/no/such/route"),
            "wrong method": c.delete("/v2/health/ready"),
            "unknown model": c.post("/v2/models/nope/infer", json=v2),
            # No content-length: the limit is found while reading, inside FastAPI's body parsing.
            "chunked V2 body over the limit": c.post(
                f"/v2/models/{m}/infer",
                content=_chunks(too_big),
                headers={"content-type": "application/json"},
            ),
            "chunked V1 body over the limit": c.post(
                f"/v1/models/{m}:predict",
                content=_chunks(
                    json.dumps({"instances": [{**row, "ticket_text": "y" * 2_000_000}]}).encode()
                ),
                headers={"content-type": "application/json"},
            ),
        }
    for name, r in cases.items():
        assert r.status_code != 500, (name, r.text)
        assert_shipyard_error(r)
    assert cases["chunked V2 body over the limit"].status_code == 413
    assert cases["chunked V1 body over the limit"].status_code == 413


def raw_exchange(server: Server, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", server.config.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_a_malformed_http_request_is_answered_in_the_one_format(server: Server) -> None:
    answer = raw_exchange(server, b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    error = json.loads(body)
    assert error["code"] == "malformed_request" and error["request_id"], error


# -- 3. clients that go away --------------------------------------------------------------------------
def log_since(server: Server, offset: int) -> str:
    return server.log_text()[offset:]


def test_a_client_that_disconnects_mid_body_is_499_not_500(server: Server, stack: Stack) -> None:
    before = scrape(server)
    offset = len(server.log_text())
    body = json.dumps(
        {"instances": [{"customer_id": known_entities(stack, 1)[0], "ticket_text": "x" * 3000}]}
    )
    for path, rid in (
        (f"/v1/models/{server.model}:predict", "gone-v1"),
        (f"/v2/models/{server.model}/infer", "gone-v2"),
    ):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"x-request-id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.config.port)) as s:
            s.sendall(head + body[:100].encode())
            time.sleep(0.3)  # the server is reading the body now
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = scrape(server)
        if (
            value(after, "shipyard_requests_total", code="499")
            - value(before, "shipyard_requests_total", code="499")
            >= 2
        ):
            break
        time.sleep(0.1)
    delta = {
        code: value(after, "shipyard_requests_total", code=code)
        - value(before, "shipyard_requests_total", code=code)
        for code in ("499", "500", "400")
    }
    assert delta == {"499": 2, "500": 0, "400": 0}, delta
    assert "Traceback" not in log_since(server, offset)
    records: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not {"gone-v1", "gone-v2"} <= set(records):
        time.sleep(0.2)
        records = {r["request_id"]: r for r in read_request_log(server.request_log)}
    for rid in ("gone-v1", "gone-v2"):
        assert records[rid]["status"] == 499 and records[rid]["error"]["code"] == "client_disconnected"


def test_a_client_gone_before_its_turn_costs_no_prediction(server: Server, stack: Stack) -> None:
    """The predict pool is busy; a client sends a full request and leaves. Its rows are never
    scored (the predictions counter moves by exactly the other requests' rows) and it counts as 499."""
    customers = known_entities(stack, 3)
    batch = [
        {"customer_id": customers[i % 3], "ticket_text": f"my order {i} has not arrived"} for i in range(256)
    ]
    busy = 12
    before = scrape(server)

    def predict() -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return c.post(f"/v1/models/{server.model}:predict", json={"instances": batch}).status_code

    victim = json.dumps(
        {"instances": [{"customer_id": customers[0], "ticket_text": "where is my refund"}] * 3}
    )
    with concurrent.futures.ThreadPoolExecutor(busy) as pool:
        futures = [pool.submit(predict) for _ in range(busy)]
        # One batch is answered: the others are queued for the one predict thread behind it.
        concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
        head = (
            f"POST /v1/models/{server.model}:predict HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n"
            f"x-request-id: gone-early\r\nContent-Length: {len(victim)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.config.port)) as s:
            s.sendall(head + victim.encode())
        assert [f.result() for f in futures] == [200] * busy
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = scrape(server)
        if value(after, "shipyard_requests_total", code="499") > value(
            before, "shipyard_requests_total", code="499"
        ):
            break
        time.sleep(0.1)
    rows = value(after, "shipyard_predictions_total", model=server.model) - value(
        before, "shipyard_predictions_total", model=server.model
    )
    assert rows == busy * 256
    assert (
        value(after, "shipyard_requests_total", code="499")
        - value(before, "shipyard_requests_total", code="499")
        == 1
    )
    assert value(after, "shipyard_requests_total", code="500") == value(
        before, "shipyard_requests_total", code="500"
    )
