"""The model server over HTTP, through a real `kserve.ModelServer` process on a free port."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import pytest
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

from tests.integration.serving_stack import LABELS, MODEL, Server, Stack
from tests.integration.serving_stack import known_entities as known_customers

UNKNOWN_CUSTOMER = 9_000_000_001


def test_v1_single_and_batch_round_trip(server: Server, stack: Stack) -> None:
    known = known_customers(stack, 2)
    rows = [
        {"customer_id": known[0], "ticket_text": "I cannot log in to online banking"},
        {
            "customer_id": known[1],
            "ticket_text": "my order 42 has not arrived",
            "timestamp": "2025-03-30T10:00:00Z",
        },
        {"customer_id": UNKNOWN_CUSTOMER, "ticket_text": "please explain the fee on my statement"},
    ]
    single = server.v1(rows[:1])
    assert single.status_code == 200, single.text
    assert single.headers["x-request-id"]
    batch = server.v1(rows)
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["model_name"] == MODEL
    assert body["model_version"] == stack.version
    predictions = body["predictions"]
    assert len(predictions) == 3
    for p in predictions:
        assert p["department"] in LABELS
        assert list(p["probabilities"]) == LABELS
        assert math.isclose(sum(p["probabilities"].values()), 1.0, rel_tol=1e-9)
        assert p["department"] == max(p["probabilities"], key=p["probabilities"].__getitem__)
    # Batching does not change an answer.
    assert predictions[0] == single.json()["predictions"][0]
    # Documented unknown-entity behaviour: answered with imputed customer features, and flagged.
    assert [p["entity_found"] for p in predictions] == [True, True, False]
    assert set(predictions[0]) == {"department", "probabilities", "entity_found"}


def test_v2_round_trip_echoes_the_request_id(server: Server, stack: Stack) -> None:
    known = known_customers(stack, 2)
    payload = {
        "id": "ticket-batch-7",
        "inputs": [
            {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": known},
            {
                "name": "ticket_text",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["payslip question", "app crash"],
            },
        ],
    }
    with server.client() as c:
        r = c.post(f"/v2/models/{server.model}/infer", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "ticket-batch-7"
    assert body["model_version"] == stack.version
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["department"]["shape"] == [2]
    assert outputs["probabilities"]["shape"] == [2, 4]
    assert outputs["probabilities"]["parameters"]["labels"] == ",".join(LABELS)
    assert outputs["entity_found"]["data"] == [True, True]
    assert outputs["entity_found"]["datatype"] == "BOOL"
    # The same tickets through V1 get the same answers.
    v1 = server.v1(
        [
            {"customer_id": c, "ticket_text": t}
            for c, t in zip(known, ["payslip question", "app crash"], strict=True)
        ]
    )
    v1_probs = [p["probabilities"][label] for p in v1.json()["predictions"] for label in LABELS]
    assert outputs["probabilities"]["data"] == pytest.approx(v1_probs, abs=1e-12)


def test_v2_requested_outputs_are_honoured(server: Server, stack: Stack) -> None:
    payload = {
        "inputs": [
            {"name": "customer_id", "shape": [1], "datatype": "INT64", "data": known_customers(stack, 1)},
            {"name": "ticket_text", "shape": [1, 1], "datatype": "BYTES", "data": ["refund for invoice 3"]},
        ],
        "outputs": [{"name": "department"}],
    }
    with server.client() as c:
        r = c.post(f"/v2/models/{server.model}/infer", json=payload)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["department"]


def test_official_inference_rest_client_v1_and_v2(server: Server, stack: Stack) -> None:
    customer = known_customers(stack, 1)[0]

    async def call() -> tuple[Any, Any]:
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0, timeout=30))
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
        try:
            r1 = await v1.infer(
                server.url,
                {"instances": [{"customer_id": customer, "ticket_text": "password reset link broken"}]},
                model_name=server.model,
            )
            request = InferRequest(
                model_name=server.model,
                infer_inputs=[
                    InferInput("customer_id", [1], "INT64", [customer]),
                    InferInput("ticket_text", [1], "BYTES", ["password reset link broken"]),
                ],
                request_id="client-1",
            )
            r2 = await v2.infer(server.url, request, model_name=server.model)
        finally:
            await v1.close()
            await v2.close()
        return r1, r2

    r1, r2 = asyncio.run(call())
    assert r1["predictions"][0]["department"] in LABELS
    outputs = {o.name: o for o in r2.outputs}
    assert r2.id == "client-1"
    department = outputs["department"].data[0]
    department = department.decode() if isinstance(department, bytes) else department
    assert department == r1["predictions"][0]["department"]


def test_probes_and_metadata(server: Server) -> None:
    with server.client() as c:
        assert c.get("/").status_code == 200
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get(f"/v1/models/{server.model}").json()["ready"] is True
        assert c.get(f"/v2/models/{server.model}/ready").json()["ready"] is True
        meta = c.get(f"/v2/models/{server.model}").json()
        # The version's own request fields, in the project's order (ticket_id: the optional event id
        # monitoring joins late labels on).
        assert [i["name"] for i in meta["inputs"]] == ["customer_id", "ticket_text", "timestamp", "ticket_id"]
        assert [i["datatype"] for i in meta["inputs"]] == ["INT64", "BYTES", "BYTES", "BYTES"]
        assert [o["name"] for o in meta["outputs"]] == ["department", "probabilities", "entity_found"]
        missing = c.get("/v2/models/no-such-model/ready")
        assert missing.status_code == 404
        assert missing.json()["code"] == "model_not_found"
        assert c.get("/no/such/path").status_code == 404


# -- hostile payloads --------------------------------------------------------------------------------
V1 = "v1"
V2 = "v2"
JSON = "application/json"


def _v1(*instances: Any, **top: Any) -> bytes:
    return json.dumps({"instances": list(instances), **top}).encode()


def _v2(*inputs: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **top}).encode()


def cid(data: list[Any], datatype: str = "INT64", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": "customer_id", "datatype": datatype, "shape": shape or [len(data)], "data": data}


def txt(data: list[Any], datatype: str = "BYTES", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": "ticket_text", "datatype": datatype, "shape": shape or [len(data)], "data": data}


OK_ROW = {"customer_id": 100001, "ticket_text": "invoice question"}
HUGE = "x" * 20_000

# (id, protocol, body, content type, expected field (substring))
HOSTILE: list[tuple[str, str, bytes, str | None, str]] = [
    # envelope
    ("v1-malformed-json", V1, b'{"instances": [', JSON, "body"),
    ("v1-not-json", V1, b"hello", JSON, "body"),
    ("v1-empty-body", V1, b"", JSON, "body"),
    ("v1-json-array", V1, b"[1, 2]", JSON, "body"),
    ("v1-json-string", V1, b'"instances"', JSON, "body"),
    ("v1-json-null", V1, b"null", JSON, "body"),
    ("v1-nan-literal", V1, b'{"instances": [{"customer_id": NaN, "ticket_text": "a"}]}', JSON, "body"),
    ("v1-missing-instances", V1, b"{}", JSON, "instances"),
    ("v1-instances-object", V1, b'{"instances": {"customer_id": 1}}', JSON, "instances"),
    ("v1-instances-string", V1, b'{"instances": "abc"}', JSON, "instances"),
    ("v1-empty-batch", V1, _v1(), JSON, "instances"),
    ("v1-oversize-batch", V1, _v1(*[OK_ROW] * 257), JSON, "instances"),
    ("v1-unknown-top-field", V1, _v1(OK_ROW, debug=True), JSON, "debug"),
    ("v1-instance-not-object", V1, _v1(5), JSON, "instances[0]"),
    ("v1-instance-list", V1, _v1([100001, "x"]), JSON, "instances[0]"),
    ("v1-unknown-field", V1, _v1({**OK_ROW, "is_employee": 1}), JSON, "instances[0].is_employee"),
    ("v1-unknown-field-2nd-row", V1, _v1(OK_ROW, {**OK_ROW, "x": 1}), JSON, "instances[1].x"),
    # customer_id
    ("v1-id-missing", V1, _v1({"ticket_text": "a"}), JSON, "instances[0].customer_id"),
    ("v1-id-string", V1, _v1({**OK_ROW, "customer_id": "100001"}), JSON, "instances[0].customer_id"),
    ("v1-id-float", V1, _v1({**OK_ROW, "customer_id": 1.5}), JSON, "instances[0].customer_id"),
    ("v1-id-integral-float", V1, _v1({**OK_ROW, "customer_id": 100001.0}), JSON, "instances[0].customer_id"),
    ("v1-id-bool", V1, _v1({**OK_ROW, "customer_id": True}), JSON, "instances[0].customer_id"),
    ("v1-id-null", V1, _v1({**OK_ROW, "customer_id": None}), JSON, "instances[0].customer_id"),
    ("v1-id-zero", V1, _v1({**OK_ROW, "customer_id": 0}), JSON, "instances[0].customer_id"),
    ("v1-id-negative", V1, _v1({**OK_ROW, "customer_id": -5}), JSON, "instances[0].customer_id"),
    (
        "v1-id-overflow",
        V1,
        b'{"instances": [{"customer_id": 99999999999999999999999, "ticket_text": "a"}]}',
        JSON,
        "instances[0].customer_id",
    ),
    ("v1-id-int64-overflow", V1, _v1({**OK_ROW, "customer_id": 2**63}), JSON, "customer_id"),
    ("v1-id-list", V1, _v1({**OK_ROW, "customer_id": [1]}), JSON, "instances[0].customer_id"),
    ("v1-id-object", V1, _v1({**OK_ROW, "customer_id": {"id": 1}}), JSON, "instances[0].customer_id"),
    (
        "v1-id-infinity-literal",
        V1,
        b'{"instances": [{"customer_id": Infinity, "ticket_text": "a"}]}',
        JSON,
        "body",
    ),
    ("v1-id-exponent", V1, b'{"instances": [{"customer_id": 1e400, "ticket_text": "a"}]}', JSON, "body"),
    # ticket_text
    ("v1-text-missing", V1, _v1({"customer_id": 100001}), JSON, "instances[0].ticket_text"),
    ("v1-text-empty", V1, _v1({**OK_ROW, "ticket_text": ""}), JSON, "instances[0].ticket_text"),
    ("v1-text-blank", V1, _v1({**OK_ROW, "ticket_text": "   \n\t"}), JSON, "instances[0].ticket_text"),
    ("v1-text-huge", V1, _v1({**OK_ROW, "ticket_text": HUGE}), JSON, "instances[0].ticket_text"),
    ("v1-text-number", V1, _v1({**OK_ROW, "ticket_text": 42}), JSON, "instances[0].ticket_text"),
    ("v1-text-null", V1, _v1({**OK_ROW, "ticket_text": None}), JSON, "instances[0].ticket_text"),
    ("v1-text-list", V1, _v1({**OK_ROW, "ticket_text": ["a", "b"]}), JSON, "instances[0].ticket_text"),
    ("v1-text-nul", V1, _v1({**OK_ROW, "ticket_text": "abc\x00def"}), JSON, "instances[0].ticket_text"),
    ("v1-text-escape", V1, _v1({**OK_ROW, "ticket_text": "abc\x1b[31m"}), JSON, "instances[0].ticket_text"),
    (
        "v1-text-lone-surrogate",
        V1,
        b'{"instances": [{"customer_id": 100001, "ticket_text": "\\ud800"}]}',
        JSON,
        "body",
    ),
    # timestamp
    ("v1-ts-garbage", V1, _v1({**OK_ROW, "timestamp": "yesterday"}), JSON, "instances[0].timestamp"),
    ("v1-ts-naive", V1, _v1({**OK_ROW, "timestamp": "2025-03-01T10:00:00"}), JSON, "instances[0].timestamp"),
    ("v1-ts-number", V1, _v1({**OK_ROW, "timestamp": 1735689600}), JSON, "instances[0].timestamp"),
    ("v1-ts-huge", V1, _v1({**OK_ROW, "timestamp": "2025" * 1000}), JSON, "instances[0].timestamp"),
    (
        "v1-ts-bad-month",
        V1,
        _v1({**OK_ROW, "timestamp": "2025-13-01T00:00:00Z"}),
        JSON,
        "instances[0].timestamp",
    ),
    # content type and size
    ("v1-text-plain", V1, _v1(OK_ROW), "text/plain", "content-type"),
    ("v1-form", V1, b"customer_id=1&ticket_text=a", "application/x-www-form-urlencoded", "content-type"),
    ("v1-xml", V1, b"<instances/>", "application/xml", "content-type"),
    ("v1-octet-stream", V1, _v1(OK_ROW), "application/octet-stream", "content-type"),
    ("v1-body-too-large", V1, _v1({**OK_ROW, "ticket_text": "y" * 2_000_000}), JSON, "body"),
    # V2
    ("v2-malformed-json", V2, b'{"inputs": [', JSON, "body"),
    ("v2-inputs-not-list", V2, b'{"inputs": 5}', JSON, "inputs"),
    ("v2-missing-inputs", V2, b"{}", JSON, "inputs"),
    ("v2-input-no-name", V2, b'{"inputs": [{"shape": [1], "datatype": "INT64", "data": [1]}]}', JSON, "name"),
    ("v2-shape-not-ints", V2, _v2(cid([1], shape=["a"]), txt(["a"])), JSON, "shape"),  # type: ignore[list-item]
    (
        "v2-unknown-input",
        V2,
        _v2(cid([100001]), txt(["a"]), {"name": "age", "datatype": "INT64", "shape": [1], "data": [3]}),
        JSON,
        "inputs[2].name",
    ),
    ("v2-duplicate-input", V2, _v2(cid([100001]), cid([100001]), txt(["a"])), JSON, "customer_id"),
    ("v2-missing-text", V2, _v2(cid([100001])), JSON, "ticket_text"),
    ("v2-missing-id", V2, _v2(txt(["a"])), JSON, "customer_id"),
    ("v2-id-fp32", V2, _v2(cid([1.0], datatype="FP32"), txt(["a"])), JSON, "customer_id"),
    ("v2-text-int", V2, _v2(cid([100001]), txt([1], datatype="INT64")), JSON, "ticket_text"),
    ("v2-shape-mismatch", V2, _v2(cid([100001], shape=[3]), txt(["a"])), JSON, "customer_id"),
    ("v2-rows-disagree", V2, _v2(cid([100001, 100002]), txt(["a"])), JSON, "ticket_text"),
    ("v2-shape-3d", V2, _v2(cid([100001], shape=[1, 1, 1]), txt(["a"])), JSON, "customer_id"),
    ("v2-empty-batch", V2, _v2(cid([]), txt([])), JSON, "inputs"),
    ("v2-oversize-batch", V2, _v2(cid([100001] * 300), txt(["a"] * 300)), JSON, "inputs"),
    (
        "v2-id-nan",
        V2,
        b'{"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [NaN]},'
        b' {"name": "ticket_text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}',
        JSON,
        "customer_id[0]",
    ),
    (
        "v2-id-inf",
        V2,
        b'{"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64", "data": [Infinity]},'
        b' {"name": "ticket_text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}',
        JSON,
        "customer_id[0]",
    ),
    ("v2-id-string", V2, _v2(cid(["100001"]), txt(["a"])), JSON, "customer_id[0]"),
    ("v2-text-huge", V2, _v2(cid([100001]), txt([HUGE])), JSON, "ticket_text[0]"),
    ("v2-text-null", V2, _v2(cid([100001]), txt([None])), JSON, "ticket_text[0]"),
    ("v2-nested-data", V2, _v2(cid([[100001]], shape=[1, 1]), txt(["a"])), JSON, "customer_id[0]"),
    (
        "v2-unknown-output",
        V2,
        _v2(cid([100001]), txt(["a"]), outputs=[{"name": "secret"}]),
        JSON,
        "outputs[0].name",
    ),
    ("v2-text-plain", V2, _v2(cid([100001]), txt(["a"])), "text/plain", "content-type"),
    ("v2-binary-no-header", V2, b"\x00\x01\x02", "application/octet-stream", "body"),
]


def test_there_are_at_least_fifty_hostile_payloads() -> None:
    assert len(HOSTILE) >= 50
    assert len({h[0] for h in HOSTILE}) == len(HOSTILE)


@pytest.fixture(scope="module")
def hostile_client(server: Server) -> Any:
    with server.client() as c:
        yield c


@pytest.mark.parametrize(
    ("protocol", "body", "content_type", "field"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_payload_is_a_4xx_naming_the_field(
    hostile_client: httpx.Client,
    server: Server,
    protocol: str,
    body: bytes,
    content_type: str | None,
    field: str,
) -> None:
    path = f"/v1/models/{server.model}:predict" if protocol == V1 else f"/v2/models/{server.model}/infer"
    headers = {"content-type": content_type} if content_type else {}
    r = hostile_client.post(path, content=body, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    error = r.json()
    assert field in error["field"], error
    assert error["rule"] and error["code"] and error["error"]
    assert error["request_id"] == r.headers["x-request-id"]
    text = r.text
    for leak in ("Traceback", 'File "', "/work/", "site-packages", ".py"):
        assert leak not in text


def test_server_survives_the_hostile_payloads(server: Server, stack: Stack) -> None:
    r = server.v1([{"customer_id": known_customers(stack, 1)[0], "ticket_text": "still alive?"}])
    assert r.status_code == 200


def test_v2_binary_tensor_extension_gives_the_same_answers_as_json(server: Server, stack: Stack) -> None:
    import numpy as np

    known = known_customers(stack, 2)
    texts = ["my order is late", "login broken"]

    async def call() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
        ids = InferInput("customer_id", [2], "INT64")
        ids.set_data_from_numpy(np.array(known, dtype=np.int64), binary_data=True)
        text = InferInput("ticket_text", [2], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=True)
        try:
            return await client.infer(
                server.url,
                InferRequest(model_name=server.model, infer_inputs=[ids, text], request_id="bin-1"),
                model_name=server.model,
            )
        finally:
            await client.close()

    response = asyncio.run(call())
    binary = {o.name: o.as_numpy().tolist() for o in response.outputs}
    json_answer = server.v1([{"customer_id": c, "ticket_text": t} for c, t in zip(known, texts, strict=True)])
    predictions = json_answer.json()["predictions"]
    assert [d.decode() if isinstance(d, bytes) else d for d in binary["department"]] == [
        p["department"] for p in predictions
    ]
    assert np.allclose(
        binary["probabilities"], [[p["probabilities"][label] for label in LABELS] for p in predictions]
    )
