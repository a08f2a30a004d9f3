"""The Open Inference Protocol's binary tensor extension, decoded strictly.

A binary V2 request is a JSON header (its length in the `Inference-Header-Content-Length` header)
followed by the raw bytes of the inputs that carry `parameters.binary_data_size` instead of `data`,
in order. Every length in it is the caller's claim: the header length, each input's size, its shape,
each BYTES element's 4-byte little-endian length prefix. KServe's own decoder trusts them, so a lie
surfaced as a 500 from deep inside numpy. Here each claim is checked against the bytes actually
there before anything is read, and a lie is a 400 naming the input and the rule it broke. The
decoded values are plain Python lists, so the contract checks them exactly like JSON-sent data
(BYTES stay bytes until the contract decodes them: invalid UTF-8 is its `encoding` rule).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from serving.errors import InvalidRequest, MalformedRequest, echo

HEADER = "inference-header-content-length"
FIXED_TYPES: dict[str, str] = {
    "BOOL": "<?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = frozenset({*FIXED_TYPES, "BYTES"})
_PREFIX = struct.Struct("<I")


def _shape(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidRequest(f"{name}: shape must be a list of integers", name, "shape")
    if any(d < 0 for d in shape):
        raise InvalidRequest(f"{name}: shape must not be negative", name, "shape")
    return shape


def _bytes_elements(name: str, raw: bytes, count: int) -> list[bytes]:
    """BYTES: each element is a 4-byte little-endian length, then that many bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(raw):
        if len(raw) - pos < _PREFIX.size:
            raise InvalidRequest(
                f"{name}: element {len(out)}: {len(raw) - pos} byte(s) left, too few for a length prefix",
                name,
                "bytes_length",
            )
        (length,) = _PREFIX.unpack_from(raw, pos)
        pos += _PREFIX.size
        if length > len(raw) - pos:
            raise InvalidRequest(
                f"{name}: element {len(out)}: length prefix says {length} bytes, {len(raw) - pos} remain",
                name,
                "bytes_length",
            )
        if len(out) == count:
            raise InvalidRequest(f"{name}: more elements than the shape's {count}", name, "bytes_length")
        out.append(raw[pos : pos + length])
        pos += length
    if len(out) != count:
        claim = f"{name}: shape says {count} element(s), the data holds {len(out)}"
        raise InvalidRequest(claim, name, "shape")
    return out


def _values(name: str, datatype: str, shape: list[int], raw: bytes) -> list[Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(name, raw, count)
    dtype = np.dtype(FIXED_TYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequest(
            f"{name}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, got {len(raw)}",
            name,
            "shape",
        )
    values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
    return values


def _header_length(value: str | None, body_length: int) -> int:
    if value is None:
        raise MalformedRequest(
            f"body: a binary V2 body needs the {HEADER} header (the length of its JSON part)",
            "body",
            "inference_header",
        )
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise InvalidRequest(f"{HEADER}: must be a non-negative integer", HEADER, "format")
    length = int(text)
    if length > body_length:
        claim = f"{HEADER}: {length} is longer than the body ({body_length} bytes)"
        raise InvalidRequest(claim, HEADER, "range")
    return length


def decode(body: bytes, header: str | None, model_name: str) -> InferRequest:
    """A binary (or JSON-only) V2 request body as an `InferRequest` with plain-list data."""
    json_length = _header_length(header, len(body))
    try:
        head = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError:
        raise MalformedRequest(
            f"body: the first {json_length} bytes ({HEADER}) are not valid JSON", "body", "json"
        ) from None
    if not isinstance(head, dict):
        raise MalformedRequest('body: the JSON part must be an object like {"inputs": [...]}', "body", "type")
    inputs = head.get("inputs")
    if not isinstance(inputs, list):
        raise MalformedRequest("inputs: required, a list of tensors", "inputs", "type")
    pos = json_length
    decoded: list[InferInput] = []
    for i, spec in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(spec, dict):
            raise MalformedRequest(f"{where}: must be an object", where, "type")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise MalformedRequest(f"{where}.name: required", f"{where}.name", "required")
        label = echo(name)
        datatype = spec.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            unknown = f"{label}: datatype {echo(datatype)} is not a V2 datatype"
            raise InvalidRequest(unknown, label, "datatype")
        shape = _shape(label, spec.get("shape"))
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise MalformedRequest(f"{label}: parameters must be an object", label, "type")
        size = parameters.get("binary_data_size")
        data = spec.get("data")
        if size is None and data is None:
            raise InvalidRequest(f"{label}: needs data or parameters.binary_data_size", label, "data")
        if size is not None and data is not None:
            raise InvalidRequest(f"{label}: has both data and binary_data_size", label, "data")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidRequest(
                    f"{label}: binary_data_size must be a non-negative integer", label, "binary_data_size"
                )
            if size > len(body) - pos:
                raise InvalidRequest(
                    f"{label}: binary_data_size says {size} bytes, {len(body) - pos} remain in the body",
                    label,
                    "binary_data_size",
                )
            data = _values(label, datatype, shape, body[pos : pos + size])
            pos += size
        rest = {k: v for k, v in parameters.items() if k != "binary_data_size"}
        tensor = InferInput(name=name, shape=shape, datatype=datatype, parameters=rest or None)
        tensor.data = data if isinstance(data, list) else [data]
        decoded.append(tensor)
    if pos != len(body):
        raise InvalidRequest(
            f"body: {len(body) - pos} byte(s) after the last input's binary data", "body", "binary_data_size"
        )
    outputs = head.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise MalformedRequest("outputs: must be a list of objects", "outputs", "type")
        requested = [RequestedOutput(str(o.get("name")), o.get("parameters")) for o in outputs]
    request_id = head.get("id")
    return InferRequest(
        model_name=model_name,
        infer_inputs=decoded,
        request_id=str(request_id) if request_id is not None else None,
        parameters=head.get("parameters") if isinstance(head.get("parameters"), dict) else None,
        request_outputs=requested,
    )
