"""Request validation against the input contract stored with the model version.

The server checks requests against the contract its model was trained with (input_contract.json in
the version directory), not against constants in today's code, so a retrained model with longer
texts or a bigger batch limit is served correctly without a code change. Every violation names the
field (with its position in the batch) and the rule, because "400 Bad Request" alone makes a
caller guess. Both protocols end up in the same per-row checks, so V1 and V2 cannot disagree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from serving.errors import InvalidRequest, MalformedRequest, echo
from shipyard.contract import CONTRACT_FILE
from shipyard.schema import ENTITY_KEY, TEXT

TIMESTAMP_FIELD = "timestamp"
REQUEST_FIELDS = (ENTITY_KEY, TEXT, TIMESTAMP_FIELD)
INT64_MAX = 2**63 - 1  # Feast stores the entity key as INT64.
# C0 control characters other than tab, newline and carriage return never occur in a real ticket
# and break downstream tools (NUL in particular); reject them instead of storing them.
_CONTROL = frozenset(chr(c) for c in range(32)) - {"\t", "\n", "\r"}
V2_INTEGER_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
V2_DATATYPES: Mapping[str, frozenset[str]] = {
    ENTITY_KEY: V2_INTEGER_TYPES,
    TEXT: frozenset({"BYTES"}),
    TIMESTAMP_FIELD: frozenset({"BYTES"}),
}


@dataclass(frozen=True)
class Ticket:
    """One validated request row."""

    customer_id: int
    ticket_text: str
    timestamp: str | None = None


@dataclass(frozen=True)
class RequestContract:
    """The request part of a model version's input contract, plus the feature expectations."""

    min_customer_id: int
    min_text_length: int
    max_text_length: int
    max_batch: int
    labels: tuple[str, ...]
    features: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RequestContract:
        req = raw["request"]
        return cls(
            min_customer_id=int(req[ENTITY_KEY].get("min", 1)),
            min_text_length=int(req[TEXT].get("min_length", 1)),
            max_text_length=int(req[TEXT]["max_length"]),
            max_batch=int(raw["max_batch"]),
            labels=tuple(str(label) for label in raw["labels"]),
            features=dict(raw.get("features", {})),
        )

    @classmethod
    def load(cls, model_dir: Path) -> RequestContract:
        return cls.from_json(json.loads((model_dir / CONTRACT_FILE).read_text()))

    def describe(self) -> dict[str, Any]:
        """The contract as callers see it (V2 model metadata, docs)."""
        return {
            ENTITY_KEY: {"type": "integer", "required": True, "min": self.min_customer_id, "max": INT64_MAX},
            TEXT: {
                "type": "string",
                "required": True,
                "min_length": self.min_text_length,
                "max_length": self.max_text_length,
            },
            TIMESTAMP_FIELD: {"type": "string", "format": "ISO 8601 with time zone", "required": False},
            "max_batch": self.max_batch,
        }

    # -- rows ------------------------------------------------------------------------------------
    def _batch_size(self, n: int, field: str) -> None:
        if n < 1:
            raise InvalidRequest(f"{field}: the batch is empty", field, "min_items")
        if n > self.max_batch:
            raise InvalidRequest(
                f"{field}: {n} rows exceed the limit of {self.max_batch}", field, "max_items"
            )

    def customer_id(self, value: object, field: str) -> int:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(f"{field}: must be a finite integer", field, "finite")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{field}: must be an integer, got {type(value).__name__}", field, "type")
        if value < self.min_customer_id:
            raise InvalidRequest(f"{field}: must be >= {self.min_customer_id}", field, "min")
        if value > INT64_MAX:
            raise InvalidRequest(f"{field}: must be <= {INT64_MAX}", field, "max")
        return value

    def ticket_text(self, value: object, field: str) -> str:
        if not isinstance(value, str):
            raise InvalidRequest(f"{field}: must be a string, got {type(value).__name__}", field, "type")
        if len(value.strip()) < self.min_text_length:
            raise InvalidRequest(
                f"{field}: needs at least {self.min_text_length} non-blank character(s)", field, "min_length"
            )
        if len(value) > self.max_text_length:
            raise InvalidRequest(
                f"{field}: {len(value)} characters exceed the limit of {self.max_text_length}",
                field,
                "max_length",
            )
        if not _CONTROL.isdisjoint(value):
            raise InvalidRequest(f"{field}: contains control characters", field, "characters")
        return value

    def timestamp(self, value: object, field: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidRequest(f"{field}: must be an ISO 8601 string", field, "type")
        if len(value) > 40:
            raise InvalidRequest(f"{field}: too long for a timestamp", field, "format")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRequest(
                f"{field}: {echo(value)!r} is not an ISO 8601 date-time", field, "format"
            ) from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise InvalidRequest(f"{field}: needs a time zone (e.g. 2025-06-01T12:00:00Z)", field, "timezone")
        return parsed.isoformat()

    def row(self, values: Mapping[str, object], where: str) -> Ticket:
        """One ticket from a mapping of field -> value; `where` prefixes field names in errors."""
        for key in values:
            if key not in REQUEST_FIELDS:
                name = f"{where}.{echo(key)}"
                raise InvalidRequest(
                    f"{name}: unknown field (allowed: {', '.join(REQUEST_FIELDS)})", name, "unknown_field"
                )
        for key in (ENTITY_KEY, TEXT):
            if key not in values:
                raise InvalidRequest(f"{where}.{key}: required", f"{where}.{key}", "required")
        return Ticket(
            customer_id=self.customer_id(values[ENTITY_KEY], f"{where}.{ENTITY_KEY}"),
            ticket_text=self.ticket_text(values[TEXT], f"{where}.{TEXT}"),
            timestamp=self.timestamp(values.get(TIMESTAMP_FIELD), f"{where}.{TIMESTAMP_FIELD}"),
        )

    # -- protocols -------------------------------------------------------------------------------
    def v1(self, payload: object) -> list[Ticket]:
        """`{"instances": [{"customer_id": 1, "ticket_text": "...", "timestamp": "..."}, ...]}`."""
        if not isinstance(payload, Mapping):
            raise MalformedRequest('body: must be a JSON object like {"instances": [...]}', "body", "type")
        for key in payload:
            if key != "instances":
                raise InvalidRequest(
                    f"{echo(key)}: unknown field (the V1 body has only 'instances')",
                    echo(key),
                    "unknown_field",
                )
        if "instances" not in payload:
            raise InvalidRequest("instances: required", "instances", "required")
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise InvalidRequest("instances: must be a list of objects", "instances", "type")
        self._batch_size(len(instances), "instances")
        tickets = []
        for i, instance in enumerate(instances):
            where = f"instances[{i}]"
            if not isinstance(instance, Mapping):
                raise InvalidRequest(f"{where}: must be an object", where, "type")
            tickets.append(self.row(instance, where))
        return tickets

    def v2(self, inputs: Sequence[tuple[str, str, Sequence[int], Sequence[object]]]) -> list[Ticket]:
        """Open Inference Protocol: one tensor per field, `(name, datatype, shape, data)` each.

        Shapes are `[n]` or `[n, 1]`; every tensor has the same `n`.
        """
        seen: dict[str, tuple[str, Sequence[object]]] = {}
        n: int | None = None
        for i, (name, datatype, shape, data) in enumerate(inputs):
            field = f"inputs[{i}]"
            if name not in REQUEST_FIELDS:
                raise InvalidRequest(
                    f"{field}.name: unknown input {echo(name)!r} (allowed: {', '.join(REQUEST_FIELDS)})",
                    f"{field}.name",
                    "unknown_field",
                )
            if name in seen:
                raise InvalidRequest(f"{name}: given more than once", name, "duplicate")
            if datatype not in V2_DATATYPES[name]:
                raise InvalidRequest(
                    f"{name}: datatype {echo(datatype)} is not one of "
                    + ", ".join(sorted(V2_DATATYPES[name])),
                    name,
                    "datatype",
                )
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or any(d < 0 for d in shape):
                raise InvalidRequest(f"{name}: shape must be [n] or [n, 1]", name, "shape")
            if shape[0] != len(data):
                raise InvalidRequest(
                    f"{name}: shape says {shape[0]} rows but data has {len(data)}", name, "shape"
                )
            if n is not None and shape[0] != n:
                raise InvalidRequest(f"{name}: {shape[0]} rows, other inputs have {n}", name, "shape")
            n = shape[0]
            seen[name] = (datatype, data)
        for key in (ENTITY_KEY, TEXT):
            if key not in seen:
                raise InvalidRequest(f"{key}: required input", key, "required")
        assert n is not None
        self._batch_size(n, "inputs")
        tickets = []
        for row in range(n):
            values = {name: _v2_value(name, data[row], f"{name}[{row}]") for name, (_, data) in seen.items()}
            tickets.append(
                Ticket(
                    customer_id=self.customer_id(values[ENTITY_KEY], f"{ENTITY_KEY}[{row}]"),
                    ticket_text=self.ticket_text(values[TEXT], f"{TEXT}[{row}]"),
                    timestamp=self.timestamp(values.get(TIMESTAMP_FIELD), f"{TIMESTAMP_FIELD}[{row}]"),
                )
            )
        return tickets


def _v2_value(name: str, value: object, field: str) -> object:
    """V2 BYTES may arrive as bytes (binary extension); anything else is checked by the row rules."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{field}: not valid UTF-8", field, "encoding") from None
    if hasattr(value, "item"):  # numpy scalar from a binary tensor
        return value.item()
    return value
