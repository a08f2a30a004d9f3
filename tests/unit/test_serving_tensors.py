"""The V2 binary tensor extension decoder (`serving.tensors`): values as plain lists, every claimed
length checked. The malformed cases are exercised over HTTP in tests/integration/test_serving_hardening.py."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from serving import tensors
from serving.errors import InvalidRequest, MalformedRequest, ServingError


def body(*inputs: tuple[dict[str, Any], bytes], **top: Any) -> tuple[bytes, str]:
    head = json.dumps({"inputs": [meta for meta, _ in inputs], **top}).encode()
    return head + b"".join(raw for _, raw in inputs), str(len(head))


def binary(name: str, datatype: str, shape: list[int], raw: bytes) -> tuple[dict[str, Any], bytes]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": len(raw)},
    }, raw


def test_binary_and_json_inputs_decode_to_plain_lists() -> None:
    raw, header = body(
        binary("customer_id", "INT64", [2, 1], struct.pack("<2q", 7, 8)),
        binary(
            "ticket_text",
            "BYTES",
            [2],
            b"".join(struct.pack("<I", len(t)) + t for t in (b"caf\xc3\xa9", b"")),
        ),
        ({"name": "amount", "datatype": "FP32", "shape": [2], "data": [1.5, 2.5]}, b""),
        binary("flag", "BOOL", [2], b"\x01\x00"),
        id="req-1",
        outputs=[{"name": "department"}],
    )
    request = tensors.decode(raw, header, "m")
    got = {i.name: (i.datatype, i.shape, i.data) for i in request.inputs}
    assert got == {
        "customer_id": ("INT64", [2, 1], [7, 8]),
        "ticket_text": ("BYTES", [2], [b"caf\xc3\xa9", b""]),
        "amount": ("FP32", [2], [1.5, 2.5]),
        "flag": ("BOOL", [2], [True, False]),
    }
    assert request.id == "req-1" and [o.name for o in request.request_outputs] == ["department"]
    assert all(type(v) is int for v in got["customer_id"][2])


@pytest.mark.parametrize(
    ("raw", "header", "kind", "field", "rule"),
    [
        (b"{}", None, MalformedRequest, "body", "inference_header"),
        (b"{}", " 2 ", MalformedRequest, "inputs", "type"),
        (b"{}", "\u0662", InvalidRequest, tensors.HEADER, "format"),  # a non-ASCII digit
        (*body(binary("x", "FP64", [2], b"\0" * 8)), InvalidRequest, "x", "shape"),
        (*body(binary("x", "UINT8", [0], b"")), None, None, None),  # an empty tensor is fine here
    ],
)
def test_rules(
    raw: bytes, header: str | None, kind: type[ServingError] | None, field: str, rule: str
) -> None:
    if kind is None:
        assert tensors.decode(raw, header, "m").inputs[0].data == []
        return
    with pytest.raises(kind) as info:
        tensors.decode(raw, header, "m")
    assert (info.value.field, info.value.rule) == (field, rule)
