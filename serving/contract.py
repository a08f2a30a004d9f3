"""Request validation against the input contract stored with the model version.

The server checks requests against the contract its model was trained with (input_contract.json in
the version directory), not against constants in today's code: the request fields, their types and
bounds, the batch limit, the labels and the model's input columns all come from that file, so the
same server serves any project. Every violation names the field (with its position in the batch)
and the rule, because "400 Bad Request" alone makes a caller guess. Both protocols end up in the
same per-field checks, so V1 and V2 cannot disagree.
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
from shipyard.artifacts import CONTRACT_FILE
from shipyard.training import ModelInputs

INT64_MAX = 2**63 - 1  # Feast stores integer entity keys as INT64.
# C0 control characters other than tab, newline and carriage return never occur in real text and
# break downstream tools (NUL in particular); reject them instead of storing them.
_CONTROL = frozenset(chr(c) for c in range(32)) - {"\t", "\n", "\r"}
V2_INTEGER_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
V2_DATATYPES: Mapping[str, frozenset[str]] = {
    "integer": V2_INTEGER_TYPES,
    "number": V2_INTEGER_TYPES | {"FP16", "FP32", "FP64"},
    "string": frozenset({"BYTES"}),
    "text": frozenset({"BYTES"}),
    "timestamp": frozenset({"BYTES"}),
}
V2_OUTPUT_TYPES = {"integer": "INT64", "number": "FP64"}

Row = dict[str, Any]


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    min: float | None = None
    max: float | None = None
    min_length: int = 1
    max_length: int | None = None
    categories: tuple[str, ...] | None = None

    def check(self, value: object, where: str) -> object:
        """The validated value, or InvalidRequest naming `where` and the rule."""
        if value is None:
            if self.required:
                raise InvalidRequest(f"{where}: required", where, "required")
            return None
        if self.type == "integer":
            return self._integer(value, where)
        if self.type == "number":
            return self._number(value, where)
        if self.type == "timestamp":
            return self._timestamp(value, where)
        return self._string(value, where)

    def _bounds(self, value: float, where: str) -> None:
        if self.min is not None and value < self.min:
            raise InvalidRequest(f"{where}: must be >= {self.min:g}", where, "min")
        if self.max is not None and value > self.max:
            raise InvalidRequest(f"{where}: must be <= {self.max:g}", where, "max")

    def _integer(self, value: object, where: str) -> int:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(f"{where}: must be a finite integer", where, "finite")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{where}: must be an integer, got {type(value).__name__}", where, "type")
        if value > INT64_MAX or value < -INT64_MAX - 1:
            raise InvalidRequest(f"{where}: must fit in 64 bits", where, "max")
        self._bounds(value, where)
        return value

    def _number(self, value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{where}: must be a number, got {type(value).__name__}", where, "type")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidRequest(f"{where}: must be a finite number", where, "finite")
        self._bounds(number, where)
        return number

    def _string(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}: must be a string, got {type(value).__name__}", where, "type")
        if len(value.strip()) < self.min_length:
            raise InvalidRequest(
                f"{where}: needs at least {self.min_length} non-blank character(s)", where, "min_length"
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise InvalidRequest(
                f"{where}: {len(value)} characters exceed the limit of {self.max_length}", where, "max_length"
            )
        if not _CONTROL.isdisjoint(value):
            raise InvalidRequest(f"{where}: contains control characters", where, "characters")
        return value

    def _timestamp(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}: must be an ISO 8601 string", where, "type")
        if len(value) > 40:
            raise InvalidRequest(f"{where}: too long for a timestamp", where, "format")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRequest(
                f"{where}: {echo(value)!r} is not an ISO 8601 date-time", where, "format"
            ) from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise InvalidRequest(f"{where}: needs a time zone (e.g. 2025-06-01T12:00:00Z)", where, "timezone")
        return parsed.isoformat()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "required": self.required}
        for key in ("min", "max", "max_length"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.type in ("string", "text"):
            out["min_length"] = self.min_length
        if self.type == "integer":
            out.setdefault("max", INT64_MAX)
        return out


@dataclass(frozen=True)
class RequestContract:
    """The request part of a model version's input contract, plus what the model reads."""

    model_name: str
    entity_key: str
    label: str
    fields: tuple[Field, ...]
    max_batch: int
    labels: tuple[str, ...]
    inputs: ModelInputs
    on_demand: Mapping[str, str]
    features: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RequestContract:
        fields = tuple(
            Field(
                name=str(f["name"]),
                type=str(f["type"]),
                required=bool(f.get("required", True)),
                min=f.get("min"),
                max=f.get("max"),
                min_length=int(f.get("min_length", 1)),
                max_length=f.get("max_length"),
                categories=tuple(f["categories"]) if f.get("categories") else None,
            )
            for f in raw["request"]
        )
        return cls(
            model_name=str(raw["model_name"]),
            entity_key=str(raw["entity_key"]),
            label=str(raw["label"]),
            fields=fields,
            max_batch=int(raw["max_batch"]),
            labels=tuple(str(label) for label in raw["labels"]),
            inputs=ModelInputs.from_json(raw["inputs"]),
            on_demand=dict(raw.get("on_demand", {})),
            features=dict(raw.get("features", {})),
        )

    @classmethod
    def load(cls, model_dir: Path) -> RequestContract:
        return cls.from_json(json.loads((model_dir / CONTRACT_FILE).read_text()))

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def describe(self) -> dict[str, Any]:
        """The contract as callers see it (V2 model metadata, docs)."""
        return {**{f.name: f.describe() for f in self.fields}, "max_batch": self.max_batch}

    # -- rows ------------------------------------------------------------------------------------
    def _batch_size(self, n: int, field: str) -> None:
        if n < 1:
            raise InvalidRequest(f"{field}: the batch is empty", field, "min_items")
        if n > self.max_batch:
            raise InvalidRequest(
                f"{field}: {n} rows exceed the limit of {self.max_batch}", field, "max_items"
            )

    def row(self, values: Mapping[str, object], where: str) -> Row:
        """One row from a mapping of field -> value; `where` prefixes field names in errors."""
        allowed = self.field_names
        for key in values:
            if key not in allowed:
                name = f"{where}.{echo(key)}"
                raise InvalidRequest(
                    f"{name}: unknown field (allowed: {', '.join(allowed)})", name, "unknown_field"
                )
        return {f.name: f.check(values.get(f.name), f"{where}.{f.name}") for f in self.fields}

    # -- protocols -------------------------------------------------------------------------------
    def v1(self, payload: object) -> list[Row]:
        """`{"instances": [{"<field>": value, ...}, ...]}`."""
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
        rows = []
        for i, instance in enumerate(instances):
            where = f"instances[{i}]"
            if not isinstance(instance, Mapping):
                raise InvalidRequest(f"{where}: must be an object", where, "type")
            rows.append(self.row(instance, where))
        return rows

    def v2(self, inputs: Sequence[tuple[str, str, Sequence[int], Sequence[object]]]) -> list[Row]:
        """Open Inference Protocol: one tensor per field, `(name, datatype, shape, data)` each.

        Shapes are `[n]` or `[n, 1]`; every tensor has the same `n`.
        """
        by_name = {f.name: f for f in self.fields}
        seen: dict[str, Sequence[object]] = {}
        n: int | None = None
        for i, (name, datatype, shape, data) in enumerate(inputs):
            where = f"inputs[{i}]"
            spec = by_name.get(name)
            if spec is None:
                raise InvalidRequest(
                    f"{where}.name: unknown input {echo(name)!r} (allowed: {', '.join(by_name)})",
                    f"{where}.name",
                    "unknown_field",
                )
            if name in seen:
                raise InvalidRequest(f"{name}: given more than once", name, "duplicate")
            if datatype not in V2_DATATYPES[spec.type]:
                raise InvalidRequest(
                    f"{name}: datatype {echo(datatype)} is not one of "
                    + ", ".join(sorted(V2_DATATYPES[spec.type])),
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
            seen[name] = data
        for f in self.fields:
            if f.required and f.name not in seen:
                raise InvalidRequest(f"{f.name}: required input", f.name, "required")
        assert n is not None
        self._batch_size(n, "inputs")
        rows = []
        for r in range(n):
            row: Row = {}
            for f in self.fields:
                where = f"{f.name}[{r}]"
                value = _v2_value(seen[f.name][r], where) if f.name in seen else None
                row[f.name] = f.check(value, where)
            rows.append(row)
        return rows


def _v2_value(value: object, field: str) -> object:
    """V2 BYTES may arrive as bytes (binary extension); anything else is checked by the field rules."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{field}: not valid UTF-8", field, "encoding") from None
    if hasattr(value, "item"):  # numpy scalar from a binary tensor
        return value.item()
    return value
