"""Adaptive batching: concurrent prediction requests scored together, answers split back out.

Scoring a batch of rows costs little more than scoring one (the per-call overhead of feature
lookup and predict dominates: ~2 ms for one row, ~3 ms for 64 on the benchmark machine), so
requests that are waiting for the predict thread at the same time are merged into one batch: one
online-store read and one predict call, each request then gets its own rows' answers. This is the
dynamic batching of Triton (`max_queue_delay_microseconds`, `preferred_batch_size`) and KServe's
batcher (`maxLatency`, `maxBatchSize`), with one difference that keeps a lone request fast:

* a batch is dispatched as soon as a predict thread is free and either `max_rows` rows are
  queued, or no other prediction request is on its way (no request the server received is still
  being read or validated: waiting could not add anyone), or the oldest queued request has waited
  `max_wait` seconds;
* so at concurrency 1 nothing ever waits for a window, under load the queue fills while the thread
  works (batches form by themselves), and `max_wait` only bounds how long a queued request waits
  for requests that are still being read and validated.

A batch holds at most `max_rows` rows (a single request larger than that is scored alone). One
batch failing for the feature store fails each of its requests with that error; any other failure
of a merged batch is retried request by request, so one request cannot fail its neighbours. A
request whose client left while it was queued is dropped before the feature lookup.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from serving.metrics import BATCH_REQUESTS, BATCH_ROWS, BATCH_WAIT_SECONDS

T = TypeVar("T")  # a request's payload
R = TypeVar("R")  # a request's answer


@dataclass
class Pending(Generic[T, R]):
    payload: T
    rows: int
    future: asyncio.Future[R]
    queued_at: float = field(default_factory=time.perf_counter)
    gone: Callable[[], bool] = lambda: False  # the client left: nobody reads the answer


# Scores a list of payloads on a predict thread; returns one answer or exception per payload.
ScoreMany = Callable[[list[T]], list[R | BaseException]]


class AdaptiveBatcher(Generic[T, R]):
    """Queues requests on the event loop and runs batches of them on `executor` (see module doc)."""

    def __init__(
        self,
        score_many: ScoreMany[T, R],
        executor: Executor,
        threads: int,
        max_rows: int,
        max_wait: float,
        expected: Callable[[], int] = lambda: 0,
        gone_error: Callable[[], BaseException] = lambda: ConnectionError("client gone"),
    ) -> None:
        if max_rows < 1 or max_wait < 0 or threads < 1:
            raise ValueError("batching needs max_rows >= 1, max_wait >= 0 and threads >= 1")
        self.score_many = score_many
        self.executor = executor
        self.threads = threads
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.expected = expected  # prediction requests received but not yet submitted here
        self.gone_error = gone_error
        self.queue: deque[Pending[T, R]] = deque()
        self.running = 0  # batches on the executor
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, payload: T, rows: int, gone: Callable[[], bool] = lambda: False) -> R:
        loop = asyncio.get_running_loop()
        pending: Pending[T, R] = Pending(payload, rows, loop.create_future(), gone=gone)
        self.queue.append(pending)
        self._kick()
        return await pending.future

    # -- dispatch (event loop) ----------------------------------------------------------------------
    def _ready(self) -> bool:
        if sum(p.rows for p in self.queue) >= self.max_rows:
            return True
        if self.expected() <= 0:  # nobody else is being read or validated: waiting cannot add anyone
            return True
        return time.perf_counter() - self.queue[0].queued_at >= self.max_wait

    def _kick(self) -> None:
        while self.queue and self.running < self.threads:
            self._drop_gone()
            if not self.queue:
                return
            if not self._ready():
                if self._timer is None:
                    delay = self.queue[0].queued_at + self.max_wait - time.perf_counter()
                    self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._on_timer)
                return
            self._dispatch(self._take())

    def _on_timer(self) -> None:
        self._timer = None
        self._kick()

    def _drop_gone(self) -> None:
        for pending in [p for p in self.queue if p.future.done() or p.gone()]:
            self.queue.remove(pending)
            if not pending.future.done():
                pending.future.set_exception(self.gone_error())

    def _take(self) -> list[Pending[T, R]]:
        batch = [self.queue.popleft()]
        rows = batch[0].rows
        while self.queue and rows + self.queue[0].rows <= self.max_rows:
            rows += self.queue[0].rows
            batch.append(self.queue.popleft())
        return batch

    def _dispatch(self, batch: list[Pending[T, R]]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.perf_counter()
        for p in batch:
            BATCH_WAIT_SECONDS.observe(now - p.queued_at)
        BATCH_REQUESTS.observe(len(batch))
        BATCH_ROWS.observe(sum(p.rows for p in batch))
        self.running += 1
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.executor, self.score_many, [p.payload for p in batch])
        work.add_done_callback(lambda done: self._finished(batch, done))

    def _finished(self, batch: list[Pending[T, R]], done: asyncio.Future[list[R | BaseException]]) -> None:
        self.running -= 1
        try:
            answers: list[R | BaseException] = done.result()
        except BaseException as exc:  # the executor itself failed (shut down): every request fails
            answers = [exc] * len(batch)
        for pending, answer in zip(batch, answers, strict=True):
            if pending.future.done():  # cancelled: its request was cancelled (drain deadline)
                continue
            if isinstance(answer, BaseException):
                pending.future.set_exception(answer)
            else:
                pending.future.set_result(answer)
        self._kick()
