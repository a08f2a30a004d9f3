"""Every way a prediction request can fail, each mapped to exactly one HTTP status, here and only here.

The model, the contract and the HTTP layer raise these types and never build error responses
themselves, so a status code cannot drift between code paths and no handler can leak a stack trace:
the body is always `{"error", "code", "field", "rule", "request_id"}` built from the exception's own
message, which is written for the caller. Foreign exceptions (KServe's, FastAPI's, Starlette's)
are translated into these types before they are rendered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from shipyard.errors import ShipyardError

log = logging.getLogger("shipyard.serving")

MAX_ECHO = 64  # Caller-supplied names are echoed in errors; cap them so a response cannot be inflated.


def echo(text: object) -> str:
    """A caller-supplied string made safe to quote in an error: bounded and printable."""
    s = str(text)
    s = "".join(ch if ch.isprintable() else "?" for ch in s[: MAX_ECHO + 1])
    return s if len(s) <= MAX_ECHO else s[:MAX_ECHO] + "..."


class ServingError(ShipyardError):
    """Base class: `status` and `code` say what the caller gets; the message is shown to the caller."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # Counted in shipyard_contract_violations_total when it is a 4xx with a rule: a caller's data error.
    violation: ClassVar[bool] = True

    def __init__(self, message: str, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.rule = rule

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            out["field"] = self.field
        if self.rule is not None:
            out["rule"] = self.rule
        if request_id:
            out["request_id"] = request_id
        return out


class InvalidRequest(ServingError):
    """A request breaks the model version's input contract (type, range, length, batch size...)."""

    status = 400
    code = "invalid_request"


class MalformedRequest(ServingError):
    """The body is not a parseable request at all (not JSON, not an object, wrong envelope)."""

    status = 400
    code = "malformed_request"


class PayloadTooLarge(ServingError):
    """The body exceeds the server's byte limit; rejected before it is parsed."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    """The content type is not JSON (or the V2 binary extension)."""

    status = 415
    code = "unsupported_media_type"


class UnknownModel(ServingError):
    """The URL names a model this server does not serve."""

    status = 404
    code = "model_not_found"
    violation = False


class RouteNotFound(ServingError):
    """No endpoint at this path or with this method."""

    status = 404
    code = "not_found"
    violation = False


class MethodNotAllowed(ServingError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(ServingError):
    """The client sent its headers or body too slowly (a slow-loris must not pin a connection)."""

    status = 408
    code = "request_timeout"
    violation = False


class HeadersTooLarge(ServingError):
    """The request's headers exceed the server's limit."""

    status = 431
    code = "headers_too_large"
    violation = False


class ClientDisconnected(ServingError):
    """The client went away before its answer (nginx's 499): counted apart, never a server error.

    Nobody reads this response; it exists so the status is recorded in the metrics and the request log.
    """

    status = 499
    code = "client_disconnected"
    violation = False


class ModelNotReady(ServingError):
    """The model version is not loaded: missing or corrupted artifact, or still loading."""

    status = 503
    code = "model_not_ready"


class ShuttingDown(ServingError):
    """The server received SIGTERM: it finishes what is in flight and takes nothing new."""

    status = 503
    code = "shutting_down"


class FeatureStoreUnavailable(ServingError):
    """The online feature store did not answer; the server recovers when it does again."""

    status = 503
    code = "feature_store_unavailable"


class InternalError(ServingError):
    """Anything unexpected. The caller gets a request id to quote; the details stay in the log."""

    status = 500
    code = "internal_error"


def from_exception(exc: BaseException) -> ServingError:
    """Translate any exception into the one `ServingError` that describes it for a caller."""
    if isinstance(exc, ServingError):
        return exc
    from fastapi.exceptions import RequestValidationError
    from kserve import errors as kerrors
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    if isinstance(exc, RequestValidationError):
        return _from_validation_error(exc)
    if isinstance(exc, ClientDisconnect):
        return ClientDisconnected("the client disconnected", "body", "disconnected")
    if isinstance(exc, kerrors.InvalidInput):
        return MalformedRequest(f"request body could not be decoded: {echo(exc.reason)}", "body", "decode")
    if isinstance(exc, kerrors.ModelNotFound):
        return UnknownModel("no model with this name is served here", "model_name", "exists")
    if isinstance(exc, kerrors.ModelNotReady | kerrors.ServerNotReady | kerrors.NoModelReady):
        return ModelNotReady("the model is not ready to serve", "model", "ready")
    if isinstance(exc, kerrors.ServerNotLive):
        return ModelNotReady("the server is not live", "server", "live")
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return RouteNotFound("no such endpoint", "path", "route")
        if exc.status_code == 405:
            return MethodNotAllowed("method not allowed on this endpoint", "method", "allowed")
        if exc.status_code == 413:
            return PayloadTooLarge("body: too large", "body", "max_bytes")
        if exc.status_code == 400:  # FastAPI: "There was an error parsing the body"
            return MalformedRequest("body: could not be read", "body", "read")
    if isinstance(exc, NotImplementedError | kerrors.UnsupportedProtocol):
        return RouteNotFound("not supported by this server", "path", "supported")
    return InternalError("internal error; quote the request id when reporting it")


def _from_validation_error(exc: Any) -> ServingError:
    """FastAPI's body validation (V2 envelope): name the first offending field, never echo the input."""
    errors = list(exc.errors())
    if not errors:
        return MalformedRequest("request body is not valid", "body", "schema")
    first = errors[0]
    # Drop the "body" root and the union-branch tag FastAPI adds for `InferenceRequest | bytes`.
    loc = [p for p in first.get("loc", ()) if p not in ("body", "InferenceRequest", "bytes")]
    rule = str(first.get("type", "schema"))
    if rule == "json_invalid":
        return MalformedRequest("request body is not valid JSON", "body", "json")
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{echo(p)}" for p in loc).lstrip(".") or "body"
    return MalformedRequest(f"{field}: {echo(first.get('msg', 'invalid'))}", field, rule)


def render(exc: BaseException, request_id: str | None) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for any exception; unexpected ones are logged with their traceback here.

    Caller errors are counted as contract violations by field (position stripped) and rule.
    """
    from serving.metrics import CONTRACT_VIOLATIONS, contract_field

    err = from_exception(exc)
    if isinstance(err, InternalError) and err is not exc:
        log.error("unhandled error (request %s)", request_id, exc_info=exc)
    if 400 <= err.status < 500 and err.rule is not None and err.violation:
        CONTRACT_VIOLATIONS.labels(contract_field(err.field), err.rule).inc()
    return err.status, err.body(request_id)


def handled_types() -> tuple[type[BaseException], ...]:
    """Every exception type an app handler may see: ours, FastAPI's and Starlette's, and KServe's."""
    from fastapi.exceptions import RequestValidationError
    from kserve import errors as kerrors
    from starlette.exceptions import HTTPException

    return (
        ServingError,
        RequestValidationError,
        HTTPException,
        NotImplementedError,
        kerrors.InvalidInput,
        kerrors.InferenceError,
        kerrors.ModelNotFound,
        kerrors.ModelNotReady,
        kerrors.UnsupportedProtocol,
        kerrors.ServerNotLive,
        kerrors.ServerNotReady,
    )


def install_handlers(
    app: Any,
    on_error: Callable[[dict[str, Any]], str | None],
    cause: Callable[[BaseException], BaseException] = lambda exc: exc,
) -> None:
    """Route every exception type the app's handlers see through `render`.

    `on_error` receives the error body (for the request log) and returns the request id; `cause`
    maps an exception to the one that really happened (FastAPI wraps anything raised while it reads
    a body, e.g. a body limit or a client that went away, into a 400). KServe registers handlers of
    its own for its types when the server starts, after these: `serving.server` installs these again
    once KServe has, so the last word is always this module's.
    """
    from fastapi.responses import ORJSONResponse

    async def handler(request: Any, exc: Exception) -> Any:
        status, body = render(cause(exc), None)
        request_id = on_error(dict(body))
        if request_id:
            body["request_id"] = request_id
        return ORJSONResponse(status_code=status, content=body)

    for exc_type in handled_types():
        app.add_exception_handler(exc_type, handler)
