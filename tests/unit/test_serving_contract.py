"""Request validation rules of the serving input contract.

The contract is data (a version's input_contract.json): these tests use a small hand-written one
with every field type, so they test the rules, not one project's fields.
"""

from __future__ import annotations

from typing import Any

import pytest

from serving.contract import INT64_MAX, Field, RequestContract
from serving.errors import InvalidRequest, MalformedRequest, ServingError

RAW: dict[str, Any] = {
    "version": 2,
    "model_name": "ticket-router",
    "entity_key": "customer_id",
    "label": "department",
    "labels": ["accounting", "inventory", "hr", "it"],
    "request": [
        {"name": "customer_id", "type": "integer", "required": True, "min": 1.0, "max": None},
        {"name": "ticket_text", "type": "text", "required": True, "min_length": 1, "max_length": 50},
        {"name": "amount", "type": "number", "required": False, "min": 0.0, "max": 1000.0},
        {"name": "timestamp", "type": "timestamp", "required": False},
    ],
    "max_batch": 3,
    "inputs": {"text": ["ticket_text"], "categorical": ["region"], "numeric": ["amount", "open_invoices"]},
    "on_demand": {},
    "features": {},
}
CONTRACT = RequestContract.from_json(RAW)


def row(**values: Any) -> dict[str, Any]:
    """A validated row: every contract field, absent optional ones as None."""
    return {"customer_id": None, "ticket_text": None, "amount": None, "timestamp": None, **values}


def rejects(payload: Any) -> ServingError:
    with pytest.raises(ServingError) as info:
        CONTRACT.v1(payload)
    return info.value


def test_the_contract_is_read_from_its_json() -> None:
    assert CONTRACT.field_names == ("customer_id", "ticket_text", "amount", "timestamp")
    assert (CONTRACT.entity_key, CONTRACT.label, CONTRACT.max_batch) == ("customer_id", "department", 3)
    assert CONTRACT.labels == ("accounting", "inventory", "hr", "it")
    assert CONTRACT.inputs.columns == ("ticket_text", "region", "amount", "open_invoices")
    described = CONTRACT.describe()
    assert described["customer_id"] == {"type": "integer", "required": True, "min": 1.0, "max": INT64_MAX}
    assert described["ticket_text"]["max_length"] == 50 and described["max_batch"] == 3


def test_valid_rows_are_dicts_of_every_field_with_normalised_timestamps() -> None:
    rows = CONTRACT.v1(
        {
            "instances": [
                {"customer_id": 7, "ticket_text": "hello"},
                {"customer_id": 8, "ticket_text": "hi", "timestamp": "2025-01-02T03:04:05Z", "amount": 3},
                {"customer_id": 9, "ticket_text": "x", "timestamp": None, "amount": 2.5},
            ]
        }
    )
    assert rows == [
        row(customer_id=7, ticket_text="hello"),
        row(customer_id=8, ticket_text="hi", amount=3.0, timestamp="2025-01-02T03:04:05+00:00"),
        row(customer_id=9, ticket_text="x", amount=2.5),
    ]
    assert isinstance(rows[1]["amount"], float)


@pytest.mark.parametrize(
    ("values", "field", "rule"),
    [
        ({"ticket_text": "a"}, "instances[0].customer_id", "required"),
        ({"customer_id": "7", "ticket_text": "a"}, "instances[0].customer_id", "type"),
        ({"customer_id": True, "ticket_text": "a"}, "instances[0].customer_id", "type"),
        ({"customer_id": 7.0, "ticket_text": "a"}, "instances[0].customer_id", "type"),
        ({"customer_id": float("nan"), "ticket_text": "a"}, "instances[0].customer_id", "finite"),
        ({"customer_id": float("inf"), "ticket_text": "a"}, "instances[0].customer_id", "finite"),
        ({"customer_id": 0, "ticket_text": "a"}, "instances[0].customer_id", "min"),
        ({"customer_id": INT64_MAX + 1, "ticket_text": "a"}, "instances[0].customer_id", "max"),
        ({"customer_id": 7}, "instances[0].ticket_text", "required"),
        ({"customer_id": 7, "ticket_text": " "}, "instances[0].ticket_text", "min_length"),
        ({"customer_id": 7, "ticket_text": "x" * 51}, "instances[0].ticket_text", "max_length"),
        ({"customer_id": 7, "ticket_text": b"a"}, "instances[0].ticket_text", "type"),
        ({"customer_id": 7, "ticket_text": "a\x00"}, "instances[0].ticket_text", "characters"),
        ({"customer_id": 7, "ticket_text": "a", "amount": "3"}, "instances[0].amount", "type"),
        ({"customer_id": 7, "ticket_text": "a", "amount": False}, "instances[0].amount", "type"),
        ({"customer_id": 7, "ticket_text": "a", "amount": float("nan")}, "instances[0].amount", "finite"),
        ({"customer_id": 7, "ticket_text": "a", "amount": -0.5}, "instances[0].amount", "min"),
        ({"customer_id": 7, "ticket_text": "a", "amount": 1000.5}, "instances[0].amount", "max"),
        ({"customer_id": 7, "ticket_text": "a", "timestamp": "soon"}, "instances[0].timestamp", "format"),
        (
            {"customer_id": 7, "ticket_text": "a", "timestamp": "2025-01-01T00:00:00"},
            "instances[0].timestamp",
            "timezone",
        ),
        ({"customer_id": 7, "ticket_text": "a", "timestamp": 5}, "instances[0].timestamp", "type"),
        (
            {"customer_id": 7, "ticket_text": "a", "department": "it"},
            "instances[0].department",
            "unknown_field",
        ),
    ],
)
def test_each_row_rule_names_field_and_rule(values: dict[str, Any], field: str, rule: str) -> None:
    err = rejects({"instances": [values]})
    assert isinstance(err, InvalidRequest)
    assert (err.field, err.rule, err.status) == (field, rule, 400)
    assert field in err.message


def test_tabs_and_newlines_are_ordinary_text() -> None:
    assert CONTRACT.v1({"instances": [{"customer_id": 7, "ticket_text": "line\n\tnext\r"}]})


def test_a_field_checks_one_value_on_its_own() -> None:
    optional = Field("note", "string", required=False, max_length=3)
    assert optional.check(None, "note") is None
    assert optional.check("abc", "note") == "abc"
    with pytest.raises(InvalidRequest) as info:
        optional.check("abcd", "note")
    assert (info.value.field, info.value.rule) == ("note", "max_length")


@pytest.mark.parametrize(
    ("payload", "field", "rule", "kind"),
    [
        ([], "body", "type", MalformedRequest),
        (None, "body", "type", MalformedRequest),
        ({}, "instances", "required", InvalidRequest),
        ({"instances": {}}, "instances", "type", InvalidRequest),
        ({"instances": []}, "instances", "min_items", InvalidRequest),
        (
            {"instances": [{"customer_id": 1, "ticket_text": "a"}] * 4},
            "instances",
            "max_items",
            InvalidRequest,
        ),
        ({"instances": [1]}, "instances[0]", "type", InvalidRequest),
        ({"instances": [], "extra": 1}, "extra", "unknown_field", InvalidRequest),
    ],
)
def test_envelope_rules(payload: Any, field: str, rule: str, kind: type[ServingError]) -> None:
    err = rejects(payload)
    assert isinstance(err, kind)
    assert (err.field, err.rule) == (field, rule)


def test_a_hostile_field_name_is_echoed_bounded_and_printable() -> None:
    err = rejects({"instances": [{"customer_id": 1, "ticket_text": "a", "\x1b" + "k" * 500: 1}]})
    assert err.field is not None and len(err.field) < 100 and "\x1b" not in err.message


def v2(*inputs: tuple[str, str, list[int], list[Any]]) -> list[dict[str, Any]]:
    return CONTRACT.v2(list(inputs))


def test_v2_tensors_become_the_same_rows_as_v1() -> None:
    rows = v2(
        ("ticket_text", "BYTES", [2, 1], [b"hello", "hi"]),
        ("customer_id", "INT32", [2], [7, 8]),
        ("amount", "INT64", [2], [1, 2]),
    )
    assert rows == CONTRACT.v1(
        {
            "instances": [
                {"customer_id": 7, "ticket_text": "hello", "amount": 1.0},
                {"customer_id": 8, "ticket_text": "hi", "amount": 2.0},
            ]
        }
    )


def test_v2_numpy_scalars_from_binary_tensors_are_plain_values() -> None:
    import numpy as np

    (got,) = v2(
        ("customer_id", "INT64", [1], [np.int64(7)]),
        ("ticket_text", "BYTES", [1], [b"hello"]),
        ("amount", "FP32", [1], [np.float32(1.5)]),
    )
    assert got == row(customer_id=7, ticket_text="hello", amount=1.5)
    assert type(got["customer_id"]) is int and type(got["amount"]) is float


@pytest.mark.parametrize(
    ("inputs", "field", "rule"),
    [
        ([("customer_id", "INT64", [1], [7])], "ticket_text", "required"),
        (
            [("customer_id", "FP64", [1], [7.0]), ("ticket_text", "BYTES", [1], ["a"])],
            "customer_id",
            "datatype",
        ),
        (
            [
                ("customer_id", "INT64", [1], [7]),
                ("ticket_text", "BYTES", [1], ["a"]),
                ("amount", "BYTES", [1], ["1"]),
            ],
            "amount",
            "datatype",
        ),
        ([("customer_id", "INT64", [2], [7]), ("ticket_text", "BYTES", [1], ["a"])], "customer_id", "shape"),
        (
            [("customer_id", "INT64", [1, 2], [7, 8]), ("ticket_text", "BYTES", [1], ["a"])],
            "customer_id",
            "shape",
        ),
        (
            [("customer_id", "INT64", [1], [7]), ("ticket_text", "BYTES", [2], ["a", "b"])],
            "ticket_text",
            "shape",
        ),
        (
            [("customer_id", "INT64", [1], [7]), ("customer_id", "INT64", [1], [7])],
            "customer_id",
            "duplicate",
        ),
        ([("age", "INT64", [1], [7])], "inputs[0].name", "unknown_field"),
        ([("customer_id", "INT64", [0], []), ("ticket_text", "BYTES", [0], [])], "inputs", "min_items"),
        (
            [("customer_id", "INT64", [4], [7] * 4), ("ticket_text", "BYTES", [4], ["a"] * 4)],
            "inputs",
            "max_items",
        ),
        (
            [("customer_id", "INT64", [1], [7]), ("ticket_text", "BYTES", [1], [b"\xff"])],
            "ticket_text[0]",
            "encoding",
        ),
        (
            [("customer_id", "INT64", [1], [-1]), ("ticket_text", "BYTES", [1], ["a"])],
            "customer_id[0]",
            "min",
        ),
    ],
)
def test_v2_rules(inputs: list[tuple[str, str, list[int], list[Any]]], field: str, rule: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        CONTRACT.v2(inputs)
    assert (info.value.field, info.value.rule) == (field, rule)


def test_the_real_project_contract_loads_and_validates(tmp_path: Any) -> None:
    """The contract `shipyard.contract` writes for ticket routing is one this server reads."""
    import json

    import pandas as pd

    from shipyard.contract import input_contract
    from shipyard.project import load_project
    from shipyard.training import ModelInputs

    spec = load_project("ticket_routing")
    train = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "ticket_text": ["a", "b"],
            "region": ["north", "south"],
            "open_invoices": [0, 3],
            "department": ["it", "hr"],
        }
    )
    inputs = ModelInputs(("ticket_text",), ("region",), ("open_invoices",))
    (tmp_path / "input_contract.json").write_text(json.dumps(input_contract(train, spec, inputs)))
    contract = RequestContract.load(tmp_path)
    assert contract.field_names == tuple(f.name for f in spec.request)
    assert contract.label == spec.label and contract.labels == spec.classes
    (got,) = contract.v1({"instances": [{"customer_id": 5, "ticket_text": "login broken"}]})
    assert got == {"customer_id": 5, "ticket_text": "login broken", "timestamp": None, "ticket_id": None}
