"""The server process's life: starting, serving, draining, stopped; and what SIGTERM does in each.

KServe's own handling has two holes. Its signal handler unloads every model at once (a SIGTERM in
the ~200 ms between its `start()` installing the handler and uvicorn installing its own left a
server listening with no model), and uvicorn's shutdown closes the listening socket at once and
cancels whatever is still running after a fixed timeout, answering it 500. Here one `Lifecycle`
object owns SIGTERM/SIGINT from the start of `serving.server.run`:

* while the model loads (synchronous start-up): start-up is unwound (`StartupInterrupted`) and the
  process exits 0 without serving;
* once KServe's event loop runs, a signal sets the drain: before uvicorn listens, it never binds
  the port and the process exits 0; while serving, readiness answers 503 at once (so Kubernetes
  stops sending traffic here), new prediction requests answer 503 `shutting_down` with `connection:
  close`, and requests already in flight finish and answer normally. When none is left, or the
  grace period is over, uvicorn shuts down; a request still running then is answered 503, never 500.

A second SIGINT (Ctrl-C twice) ends the drain at once.
"""

from __future__ import annotations

import enum
import logging
import math
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from kserve.protocol.rest.server import _RefreshingServer

log = logging.getLogger("shipyard.serving")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"


class StartupInterrupted(BaseException):
    """SIGTERM/SIGINT while the server was starting. A BaseException, so that no `except Exception`
    on the way (the model's load, Feast, KServe) can swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Lifecycle:
    """Phase, requests in flight and the drain deadline of one server process.

    The signal handler only records the request and the deadline (plain attributes): it may run
    between any two bytecodes of the main thread, also while that thread holds a lock (a metric's,
    the log's), so logging and the drain's callbacks run later, on the event loop (`announce`).
    """

    def __init__(self, grace_period: float) -> None:
        self.grace_period = grace_period
        self.phase = Phase.STARTING
        self.in_flight = 0
        self.deadline: float | None = None
        self.requested: int | None = None  # the signal that asked for the drain
        self.interrupted_start = False
        self._announced = False
        self._in_event_loop = False
        self._on_drain: list[Callable[[], None]] = []

    # -- signals ------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for sig in SIGNALS:
            signal.signal(sig, self.handle_signal)

    def handle_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._in_event_loop:  # synchronous start-up (the model loading): unwind it
            self.interrupted_start = True
            raise StartupInterrupted(signum)
        if self.requested is None:
            self.requested = signum
            self.deadline = time.monotonic() + self.grace_period
            if self.phase is Phase.STARTING:
                self.interrupted_start = True
        elif signum == signal.SIGINT:  # Ctrl-C twice: end the drain now
            self.deadline = time.monotonic()

    def announce(self) -> None:
        """On the event loop, once after a signal: log it and run the drain's callbacks."""
        if self.requested is None or self._announced:
            return
        self._announced = True
        name = signal.Signals(self.requested).name
        if self.interrupted_start:
            log.warning("%s during start-up: start-up interrupted, exiting without serving", name)
        else:
            log.info("%s: draining (readiness 503, new requests 503; up to %gs for %d in flight)",
                     name, self.grace_period, self.in_flight)  # fmt: skip
        for callback in self._on_drain:
            callback()

    def on_drain(self, callback: Callable[[], None]) -> None:
        self._on_drain.append(callback)

    # -- state ----------------------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self.requested is not None

    def entering_event_loop(self) -> None:
        """From here on a signal is noticed by the event loop (a flag), not raised into the code."""
        self._in_event_loop = True

    def started(self) -> None:
        if self.phase is Phase.STARTING:
            self.phase = Phase.SERVING

    def remaining(self) -> float:
        return 0.0 if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def should_stop(self) -> bool:
        return self.draining and (self.in_flight == 0 or self.remaining() == 0.0)


class DrainingServer(_RefreshingServer):  # type: ignore[misc]
    """KServe's uvicorn server, with SIGTERM/SIGINT meaning "drain" instead of "close the socket"."""

    should_exit: bool

    def __init__(self, config: Any, lifecycle: Lifecycle, listen: socket.socket | None = None) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.listen = listen  # a worker's own socket on the shared port (serving.workers)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn installs this for SIGINT/SIGTERM while it serves (and re-raises the signals it
        # captured once it is done, which a drain never needs).
        self.lifecycle.handle_signal(sig, frame)

    async def serve(self, sockets: Any = None) -> None:
        if self.lifecycle.draining:  # stopped before it started: nothing to start, nothing to drain
            self.lifecycle.announce()
            return
        if sockets is None and self.listen is not None:
            sockets = [self.listen]
        await super().serve(sockets=sockets)

    async def startup(self, sockets: Any = None) -> None:
        if self.lifecycle.draining:  # stopped before it listened: never bind the port at all
            self.lifecycle.announce()
            self.should_exit = True
            return
        await super().startup(sockets=sockets)
        self.lifecycle.started()

    async def on_tick(self, counter: int) -> bool:
        self.lifecycle.announce()
        if not self.should_exit and self.lifecycle.should_stop():
            left = self.lifecycle.in_flight
            # uvicorn's own wait for in-flight work: what is left of the grace period (none when the
            # grace period is what ended the drain: what still runs is cancelled and answered 503).
            self.config.timeout_graceful_shutdown = math.ceil(self.lifecycle.remaining()) if left == 0 else 0
            if left:
                log.warning("grace period over with %d request(s) in flight: answering them 503", left)
            self.should_exit = True
        should_exit: bool = await super().on_tick(counter)
        return should_exit
