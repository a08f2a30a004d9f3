"""Every failure mode renders as one status with a caller-safe body."""

from __future__ import annotations

import pytest
from kserve import errors as kerrors

from serving import errors
from serving.metrics import contract_field, set_contract_fields


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidRequest("x", "f", "r"), 400, "invalid_request"),
        (kerrors.InvalidInput("Unrecognized request format: bad"), 400, "malformed_request"),
        (kerrors.ModelNotFound("m"), 404, "model_not_found"),
        (kerrors.ModelNotReady("m"), 503, "model_not_ready"),
        (
            errors.FeatureStoreUnavailable("down", "feature_store", "available"),
            503,
            "feature_store_unavailable",
        ),
        (errors.PayloadTooLarge("big", "body", "max_bytes"), 413, "payload_too_large"),
        (errors.UnsupportedMediaType("xml", "content-type", "media_type"), 415, "unsupported_media_type"),
        (NotImplementedError("versions"), 404, "not_found"),
        (errors.ShuttingDown("bye", "server", "shutting_down"), 503, "shutting_down"),
        (errors.RequestTimeout("slow", "body", "read_timeout"), 408, "request_timeout"),
        (errors.HeadersTooLarge("big", "headers", "max_bytes"), 431, "headers_too_large"),
        (errors.ClientDisconnected("gone", "body", "disconnected"), 499, "client_disconnected"),
        (kerrors.ServerNotLive(), 503, "model_not_ready"),
        (kerrors.UnsupportedProtocol("grpc"), 404, "not_found"),
        (KeyError("/srv/secret/path.py"), 500, "internal_error"),
        (RuntimeError("Traceback (most recent call last): File /x.py"), 500, "internal_error"),
    ],
)
def test_one_status_per_failure_mode(exc: BaseException, status: int, code: str) -> None:
    got_status, body = errors.render(exc, "rid-1")
    assert (got_status, body["code"], body["request_id"]) == (status, code, "rid-1")


def test_unexpected_errors_never_leak_their_message() -> None:
    _, body = errors.render(ValueError("password=hunter2 at /opt/app/x.py line 3"), None)
    assert "hunter2" not in str(body) and "/opt" not in str(body)
    assert body == {
        "error": "internal error; quote the request id when reporting it",
        "code": "internal_error",
    }


def test_violation_labels_are_a_closed_set() -> None:
    """Label values are the served contract's field names (set at load) plus the envelope's."""
    try:
        set_contract_fields(())
        assert contract_field("instances[3].ticket_text") == "other"  # before a model is loaded
        set_contract_fields(("customer_id", "ticket_text", "timestamp"))
        assert contract_field("instances[3].ticket_text") == "ticket_text"
        assert contract_field("customer_id[12]") == "customer_id"
        assert contract_field("instances[0].attacker_chosen_name") == "other"
        assert contract_field("inputs[2].name") == "name"
        assert contract_field("content-type") == "content-type"
        assert contract_field(None) == "body"
    finally:
        set_contract_fields(())


def test_what_starlette_and_fastapi_raise_is_translated_too() -> None:
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    assert errors.render(ClientDisconnect(), None)[0] == 499
    # FastAPI wraps anything raised while it reads a body as "400 There was an error parsing the body".
    status, body = errors.render(HTTPException(400, "There was an error parsing the body"), None)
    assert (status, body["code"], body["rule"]) == (400, "malformed_request", "read")
    assert errors.render(HTTPException(413), None)[0] == 413


def test_slow_or_vanished_clients_are_not_contract_violations() -> None:
    from serving.metrics import CONTRACT_VIOLATIONS

    def total() -> float:
        return sum(
            s.value for m in CONTRACT_VIOLATIONS.collect() for s in m.samples if s.name.endswith("_total")
        )

    before = total()
    for exc in (
        errors.RequestTimeout("slow", "body", "read_timeout"),
        errors.ClientDisconnected("gone", "body", "disconnected"),
        errors.HeadersTooLarge("big", "headers", "max_bytes"),
        errors.RouteNotFound("no", "path", "route"),
    ):
        errors.render(exc, None)
    assert total() == before
    errors.render(errors.InvalidRequest("x", "ticket_text", "max_length"), None)
    assert total() == before + 1
