"""Request validation rules of the serving input contract."""

from __future__ import annotations

from typing import Any

import pytest

from serving.contract import INT64_MAX, RequestContract, Ticket
from serving.errors import InvalidRequest, MalformedRequest, ServingError

CONTRACT = RequestContract.from_json(
    {
        "request": {
            "customer_id": {"type": "integer", "required": True, "min": 1},
            "ticket_text": {"type": "string", "required": True, "min_length": 1, "max_length": 50},
            "timestamp": {"type": "string", "required": False},
        },
        "max_batch": 3,
        "labels": ["accounting", "inventory", "hr", "it"],
        "features": {},
    }
)


def rejects(payload: Any) -> ServingError:
    with pytest.raises(ServingError) as info:
        CONTRACT.v1(payload)
    return info.value


def test_valid_rows_become_tickets_with_normalised_timestamps() -> None:
    tickets = CONTRACT.v1(
        {
            "instances": [
                {"customer_id": 7, "ticket_text": "hello"},
                {"customer_id": 8, "ticket_text": "hi", "timestamp": "2025-01-02T03:04:05Z"},
                {"customer_id": 9, "ticket_text": "x", "timestamp": None},
            ]
        }
    )
    assert tickets == [
        Ticket(7, "hello"),
        Ticket(8, "hi", "2025-01-02T03:04:05+00:00"),
        Ticket(9, "x"),
    ]


@pytest.mark.parametrize(
    ("row", "field", "rule"),
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
        ({"customer_id": 7, "ticket_text": "a", "timestamp": "soon"}, "instances[0].timestamp", "format"),
        (
            {"customer_id": 7, "ticket_text": "a", "timestamp": "2025-01-01T00:00:00"},
            "instances[0].timestamp",
            "timezone",
        ),
        ({"customer_id": 7, "ticket_text": "a", "timestamp": 5}, "instances[0].timestamp", "type"),
        ({"customer_id": 7, "ticket_text": "a", "label": "it"}, "instances[0].label", "unknown_field"),
    ],
)
def test_each_row_rule_names_field_and_rule(row: dict[str, Any], field: str, rule: str) -> None:
    err = rejects({"instances": [row]})
    assert isinstance(err, InvalidRequest)
    assert (err.field, err.rule, err.status) == (field, rule, 400)
    assert field in err.message


def test_tabs_and_newlines_are_ordinary_text() -> None:
    assert CONTRACT.v1({"instances": [{"customer_id": 7, "ticket_text": "line\n\tnext\r"}]})


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


def v2(*inputs: tuple[str, str, list[int], list[Any]]) -> list[Ticket]:
    return CONTRACT.v2(list(inputs))


def test_v2_tensors_become_the_same_tickets_as_v1() -> None:
    tickets = v2(
        ("ticket_text", "BYTES", [2, 1], [b"hello", "hi"]),
        ("customer_id", "INT32", [2], [7, 8]),
    )
    assert tickets == CONTRACT.v1(
        {"instances": [{"customer_id": 7, "ticket_text": "hello"}, {"customer_id": 8, "ticket_text": "hi"}]}
    )


@pytest.mark.parametrize(
    ("inputs", "field", "rule"),
    [
        ([("customer_id", "INT64", [1], [7])], "ticket_text", "required"),
        (
            [("customer_id", "FP64", [1], [7.0]), ("ticket_text", "BYTES", [1], ["a"])],
            "customer_id",
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
