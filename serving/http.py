"""The HTTP edge of the server: request ids, body limits, content types, latency metrics, request log,
clients that go away or dawdle, and the drain on shutdown.

One pure-ASGI middleware wraps every request KServe's FastAPI app serves. Being pure ASGI (not
`BaseHTTPMiddleware`) keeps it cheap and lets the model reach the per-request context through a
context variable, so the request log gets exactly one record per prediction request, including
the ones rejected before the model saw them (malformed JSON, wrong content type, too large).
Unexpected exceptions are turned into a bare 500 with the request id here, before Starlette's
own error middleware could render anything.

The body must arrive within `body_timeout` seconds of the headers (else 408 and the connection is
closed; the header deadline is `serving.connections`'). A client that disconnects while sending its
body or waiting for its answer is recorded as 499 `client_disconnected`, never as a 5xx, and not
logged as an error; once a prediction's body is in, a watcher notices the client leaving so the
model can skip work nobody will read. While the server drains (`serving.lifecycle`), new prediction
requests answer 503 `shutting_down` and every answer closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from serving.errors import (
    ClientDisconnected,
    PayloadTooLarge,
    RequestTimeout,
    RouteNotFound,
    ServingError,
    ShuttingDown,
    UnsupportedMediaType,
    render,
)
from serving.lifecycle import Lifecycle
from serving.metrics import REQUEST_SECONDS, REQUESTS, exposition
from serving.requestlog import Record, RequestLog

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_PREDICT = re.compile(r"^/v1/models/[^/]+:predict$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
METRICS_PATH = "/metrics"
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
    # The client went away before its answer; read from the predict thread too (a plain flag).
    disconnected: bool = False
    # What really went wrong while the body was read (FastAPI re-raises it as a generic 400).
    receive_error: ServingError | None = None
    on_its_way: bool = False  # counted in `predictions_on_their_way`


CURRENT: ContextVar[RequestContext | None] = ContextVar("shipyard_request", default=None)
# Prediction requests admitted by the edge that have not reached the model's predict yet (their
# body is being read, parsed, validated): the batcher's "is anyone else on the way?". Only the
# event loop changes it.
_on_their_way = 0


def predictions_on_their_way() -> int:
    return _on_their_way


def reached_model(ctx: RequestContext | None) -> None:
    """The request is handed to the batcher (or failed before): it is no longer on its way."""
    global _on_their_way
    if ctx is not None and ctx.on_its_way:
        ctx.on_its_way = False
        _on_their_way -= 1


def current() -> RequestContext | None:
    return CURRENT.get()


def cause(exc: BaseException) -> BaseException:
    """The exception that really ended the current request (see `RequestContext.receive_error`)."""
    ctx = current()
    if ctx is not None and ctx.receive_error is not None:
        return ctx.receive_error
    return exc


def client_gone() -> ClientDisconnected:
    return ClientDisconnected("the client disconnected before its answer", "client", "disconnected")


# Generated request ids: 80 random bits per process, then a counter (32 hex digits, like a uuid4's
# hex): unique across processes and pods without an os.urandom call per request.
_ID_PREFIX = secrets.token_hex(10)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


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
    """See the module docstring. `request_log` may be None (no log), `lifecycle` None (no drain);
    paths for which `switched_off` is true answer 404 as if they did not exist."""

    def __init__(
        self,
        app: ASGIApp,
        request_log: RequestLog | None,
        max_body_bytes: int,
        lifecycle: Lifecycle | None = None,
        body_timeout: float = 30.0,
        switched_off: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app = app
        self.request_log = request_log
        self.max_body_bytes = max_body_bytes
        self.lifecycle = lifecycle
        self.body_timeout = body_timeout
        self.switched_off = switched_off

    @property
    def draining(self) -> bool:
        return self.lifecycle is not None and self.lifecycle.draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        global _on_their_way
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope.get("path", "")
        protocol = protocol_of(path)
        is_predict = scope.get("method") == "POST" and _PREDICT.match(path) is not None

        request_id = _header(scope, REQUEST_ID_HEADER.encode())
        if request_id is None or not _REQUEST_ID.match(request_id):
            request_id = new_request_id()
            headers = [(k, v) for k, v in scope.get("headers", ()) if k.lower() != b"x-request-id"]
            scope["headers"] = [*headers, (b"x-request-id", request_id.encode())]
        ctx = RequestContext(request_id, protocol, datetime.now(UTC).isoformat(timespec="microseconds"))
        token = CURRENT.set(ctx)
        status = 500
        response_started = response_done = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started, response_done
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                if ctx.disconnected or status == ClientDisconnected.status:
                    status = ClientDisconnected.status  # nobody to answer: record it, send nothing
                    if ctx.error is None:  # it left while its (computed) answer was on its way
                        ctx.error = client_gone().body()
                    return
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                # A body not read to its end (rejected early, timed out) would otherwise keep a
                # dribbling client's connection alive past every deadline: close it after this answer.
                if self.draining or (has_body and not body_complete):
                    headers = [(k, v) for k, v in headers if k.lower() != b"connection"]
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                if status == ClientDisconnected.status:
                    return
                if not message.get("more_body", False):
                    response_done = True
            await send(message)

        received = 0
        deadline = started + self.body_timeout
        length = _header(scope, b"content-length")
        has_body = _header(scope, b"transfer-encoding") is not None or (length is not None and length != "0")
        body_complete = False
        watcher: asyncio.Task[None] | None = None

        def failed(err: ServingError) -> ServingError:
            ctx.receive_error = err
            return err

        async def watch_for_disconnect() -> None:
            # After the body, the next ASGI message is http.disconnect: the client left, or the
            # response is complete (uvicorn says "disconnect" then too; `response_done` tells them apart).
            message = await receive()
            if message.get("type") == "http.disconnect" and not response_done:
                ctx.disconnected = True

        async def receive_guarded() -> Message:
            nonlocal received, body_complete, watcher
            if body_complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                late = f"body: not received within {self.body_timeout:g}s"
                raise failed(RequestTimeout(late, "body", "read_timeout")) from None
            if message.get("type") == "http.disconnect":
                ctx.disconnected = True
                gone = "the client disconnected while sending"
                raise failed(ClientDisconnected(gone, "body", "disconnected"))
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise failed(self._too_large())
                if not message.get("more_body", False):
                    body_complete = True
                    if is_predict:
                        watcher = asyncio.ensure_future(watch_for_disconnect())
            return message

        admitted = False
        try:
            early = self._reject_early(scope, is_predict)
            if early is not None:
                raise early
            if self.lifecycle is not None:
                self.lifecycle.in_flight += 1
            admitted = True
            if is_predict:
                _on_their_way += 1
                ctx.on_its_way = True
            if path == METRICS_PATH and scope.get("method") in ("GET", "HEAD"):
                await self._metrics(scope, send_wrapper)
            else:
                await self.app(scope, receive_guarded, send_wrapper)
        except Exception as exc:
            if response_started:  # nothing sensible can be sent any more; the client sees a cut stream
                if ctx.disconnected:
                    return
                raise
            err = ctx.receive_error or exc
            if ctx.disconnected:
                err = client_gone() if not isinstance(err, ClientDisconnected) else err
            code, body = render(err, request_id)
            ctx.error = {k: v for k, v in body.items() if k != "request_id"}
            await self._send_json(send_wrapper, code, body)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when the drain's grace period is over: answer that.
            if response_started or not self.draining:
                raise
            code, body = render(
                ShuttingDown("the server is shutting down; retry", "server", "shutting_down"), request_id
            )
            ctx.error = {k: v for k, v in body.items() if k != "request_id"}
            with contextlib.suppress(Exception):
                await self._send_json(send_wrapper, code, body, close=True)
        finally:
            if watcher is not None:
                watcher.cancel()
            if admitted and self.lifecycle is not None:
                self.lifecycle.in_flight -= 1
            reached_model(ctx)
            CURRENT.reset(token)
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or (
                PREDICT_ROUTES[protocol] if is_predict else "unmatched"  # rejected before dispatch
            )
            if path == METRICS_PATH and status != RouteNotFound.status:
                endpoint = METRICS_PATH
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
        """Checks that need only the headers: paths switched off, draining, oversize bodies, non-JSON
        predictions."""
        if self.switched_off(scope.get("path", "")):
            return RouteNotFound("no such endpoint", "path", "route")
        if is_predict and self.draining:
            return ShuttingDown("the server is shutting down; retry", "server", "shutting_down")
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
    async def _metrics(scope: Scope, send: Send) -> None:
        """`GET /metrics`, answered here in every mode: with several workers it must read every
        worker's samples (serving.metrics.exposition), which KServe's own handler does not."""
        body, content_type = exposition(_header(scope, b"accept"))
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})

    @staticmethod
    async def _send_json(send: Send, status: int, body: dict[str, Any], close: bool = False) -> None:
        payload = orjson.dumps(body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
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
