"""The HTTP edge of the server: request ids, body limits, content types, latency metrics, request log.

One pure-ASGI middleware wraps every request KServe's FastAPI app serves. Being pure ASGI (not
`BaseHTTPMiddleware`) keeps it cheap and lets the model reach the per-request context through a
context variable, so the request log gets exactly one record per prediction request, including
the ones rejected before the model saw them (malformed JSON, wrong content type, too large).
Unexpected exceptions are turned into a bare 500 with the request id here, before Starlette's
own error middleware could render anything.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from serving.errors import PayloadTooLarge, ServingError, UnsupportedMediaType, render
from serving.metrics import REQUEST_SECONDS, REQUESTS
from serving.requestlog import Record, RequestLog

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_PREDICT = re.compile(r"^/v1/models/[^/]+:predict$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
PREDICT_ROUTES = {"v1": "/v1/models/{model_name}:predict", "v2": "/v2/models/{model_name}/infer"}
JSON_TYPES = frozenset({"application/json", "application/cloudevents+json"})
V2_BINARY = "application/octet-stream"  # the Open Inference Protocol's binary tensor extension


@dataclass
class RequestContext:
    """What one request accumulates on its way through the server, for its log record."""

    request_id: str
    protocol: str
    received_at: str
    model: str | None = None
    model_version: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None


CURRENT: ContextVar[RequestContext | None] = ContextVar("shipyard_request", default=None)


def current() -> RequestContext | None:
    return CURRENT.get()


def protocol_of(path: str) -> str:
    if path.startswith("/v1/"):
        return "v1"
    if path.startswith("/v2/"):
        return "v2"
    return "other"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


class ServingMiddleware:
    """See the module docstring. `request_log` may be None (no log)."""

    def __init__(self, app: ASGIApp, request_log: RequestLog | None, max_body_bytes: int) -> None:
        self.app = app
        self.request_log = request_log
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope.get("path", "")
        protocol = protocol_of(path)
        is_predict = scope.get("method") == "POST" and _PREDICT.match(path) is not None

        request_id = _header(scope, REQUEST_ID_HEADER.encode())
        if request_id is None or not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
            headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() != b"x-request-id"]
            scope["headers"] = [*headers, (b"x-request-id", request_id.encode())]
        ctx = RequestContext(request_id, protocol, datetime.now(UTC).isoformat(timespec="microseconds"))
        token = CURRENT.set(ctx)
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
            return message

        try:
            early = self._reject_early(scope, is_predict)
            if early is not None:
                raise early
            await self.app(scope, receive_limited, send_wrapper)
        except Exception as exc:
            if response_started:  # nothing sensible can be sent any more; the client sees a cut stream
                raise
            code, body = render(exc, request_id)
            ctx.error = {k: v for k, v in body.items() if k != "request_id"}
            await self._send_json(send_wrapper, code, body)
        finally:
            CURRENT.reset(token)
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or (
                PREDICT_ROUTES[protocol] if is_predict else "unmatched"  # rejected before dispatch
            )
            elapsed = time.perf_counter() - started
            REQUEST_SECONDS.labels(protocol, endpoint, scope.get("method", "")).observe(elapsed)
            REQUESTS.labels(protocol, endpoint, str(status)).inc()
            if is_predict and self.request_log is not None:
                self.request_log.append(self._record(ctx, endpoint, status, elapsed))

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"body: larger than the limit of {self.max_body_bytes} bytes", "body", "max_bytes"
        )

    def _reject_early(self, scope: Scope, is_predict: bool) -> ServingError | None:
        """Checks that need only the headers: oversize bodies and non-JSON predictions."""
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return self._too_large()
        if is_predict:
            mt = media_type(_header(scope, b"content-type"))
            allowed = JSON_TYPES | ({V2_BINARY} if protocol_of(scope["path"]) == "v2" else set())
            if mt is not None and mt not in allowed and not mt.endswith("+json"):
                return UnsupportedMediaType(
                    f"content-type: {mt[:64]} is not supported; send application/json",
                    "content-type",
                    "media_type",
                )
        return None

    @staticmethod
    async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
        payload = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def _record(ctx: RequestContext, endpoint: str, status: int, elapsed: float) -> Record:
        return {
            "request_id": ctx.request_id,
            "received_at": ctx.received_at,
            "protocol": ctx.protocol,
            "endpoint": endpoint,
            "model": ctx.model,
            "model_version": ctx.model_version,
            "status": status,
            "latency_ms": round(elapsed * 1000, 3),
            "error": ctx.error,
            "rows": ctx.rows,
        }
