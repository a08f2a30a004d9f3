"""HTTP/1.1 connections below the ASGI app: a header deadline, a header size limit, and errors in
Shipyard's format for requests the app never sees.

uvicorn bounds only the idle time between two requests on a kept-alive connection
(`--timeout-keep-alive`). A connection that sends nothing, or its headers one byte at a time, was
held forever (measured: still open after 45 s; one client pinned 3 000 connections in 0.2 s, and
the process allows 20 000 descriptors), and httptools buffers headers without a size limit. This
subclass of uvicorn's httptools protocol arms a timer when a connection opens and when a request's
first byte arrives; headers complete in time disarm it, otherwise the client gets a 408 and the
connection is closed. Headers larger than `max_header_bytes` get a 431. The body is bounded in the
ASGI layer (`serving.http`), where the request is known and the rejection is logged.

uvicorn answers a malformed request with a plain-text 400; here it is the one JSON error format.
"""

from __future__ import annotations

import asyncio
import uuid
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.errors import HeadersTooLarge, MalformedRequest, RequestTimeout, ServingError
from serving.metrics import REQUESTS

MAX_HEADER_BYTES = 65_536


def error_response(err: ServingError, request_id: str | None = None) -> bytes:
    """A complete HTTP/1.1 response carrying `err` in the one error format, closing the connection."""
    request_id = request_id or uuid.uuid4().hex
    body = orjson.dumps(err.body(request_id))
    head = (
        f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and size limit. Configure with `configured`."""

    header_timeout: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = MAX_HEADER_BYTES

    @classmethod
    def configured(cls, header_timeout: float, max_header_bytes: int = MAX_HEADER_BYTES) -> type[Any]:
        limits = {"header_timeout": header_timeout, "max_header_bytes": max_header_bytes}
        return type("ShipyardHttpProtocol", (cls,), limits)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0

    # -- the deadline -----------------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self._awaiting_headers:
            self._reject(
                RequestTimeout(
                    f"request headers not received within {self.header_timeout:g}s", "headers", "read_timeout"
                )
            )

    def _reject(self, err: ServingError) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._disarm()
        REQUESTS.labels("other", "unmatched", str(err.status)).inc()
        self.transport.write(error_response(err))
        self.transport.close()

    # -- uvicorn's protocol callbacks ------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Counted before parsing, so a chunk that also held the body would overcount; only headers
        # still incomplete after the bytes were parsed are judged.
        if self._awaiting_headers and self._header_bytes > self.max_header_bytes:
            self._reject(
                HeadersTooLarge(
                    f"request headers larger than {self.max_header_bytes} bytes", "headers", "max_bytes"
                )
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._arm()  # a kept-alive connection: the clock starts with the next request's first byte

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._reject(MalformedRequest("request: not valid HTTP/1.1", "request", "http"))
