"""The request log: every prediction request with its inputs, features and answer, for monitoring.

The hot path only appends a dict to a bounded in-memory queue; a background thread serialises and
writes records in batches (every `batch_size` records or `flush_seconds`, whichever comes first)
and drains the queue on shutdown. A full queue drops the record and counts it
(`shipyard_request_log_records_total{outcome="dropped"}`) rather than stalling predictions behind
a slow disk. The sink is pluggable: anything with `write(records)` and `close()`.

Records carry the request id and UTC timestamps so the monitoring pipeline can join them with
labels that arrive later (event -> label).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from serving.metrics import REQUEST_LOG

log = logging.getLogger("shipyard.serving")

Record = dict[str, Any]


class RequestLogSink(Protocol):
    def write(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per line, one file per server process and UTC day, appended and fsynced per batch."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._day = ""
        self._fh: Any = None

    def path_for(self, day: str) -> Path:
        return self.directory / f"requests-{day}-{os.getpid()}.jsonl"

    def write(self, records: Sequence[Record]) -> None:
        day = datetime.now(UTC).strftime("%Y%m%d")
        if day != self._day or self._fh is None:
            self.close()
            self._fh = self.path_for(day).open("a", encoding="utf-8")
            self._day = day
        self._fh.write("".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


_STOP = object()


class RequestLog:
    """Bounded, batched, background-written request log."""

    def __init__(
        self,
        sink: RequestLogSink,
        batch_size: int = 256,
        flush_seconds: float = 1.0,
        capacity: int = 50_000,
    ) -> None:
        self.sink = sink
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def append(self, record: Record) -> None:
        """Never blocks: a full buffer drops the record and counts the drop."""
        if self._closed.is_set():
            REQUEST_LOG.labels("dropped").inc()
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            REQUEST_LOG.labels("dropped").inc()

    def _write(self, batch: list[Record]) -> None:
        if not batch:
            return
        try:
            self.sink.write(batch)
            REQUEST_LOG.labels("written").inc(len(batch))
        except Exception:  # a failing sink must not take the server down with it
            log.exception("request log: could not write %d records", len(batch))
            REQUEST_LOG.labels("dropped").inc(len(batch))

    def _run(self) -> None:
        batch: list[Record] = []
        deadline = time.monotonic() + self.flush_seconds
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                # Drain whatever arrived before the stop marker, then finish.
                while True:
                    try:
                        rest = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if rest is not _STOP:
                        batch.append(rest)
                self._write(batch)
                return
            if item is not None:
                batch.append(item)
            if len(batch) >= self.batch_size or time.monotonic() >= deadline:
                self._write(batch)
                batch = []
                deadline = time.monotonic() + self.flush_seconds

    def close(self, timeout: float = 10.0) -> None:
        """Flush everything queued so far and close the sink; safe to call more than once."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        try:  # blocks only while the buffer is full, which the writer thread is draining
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("request log: writer thread is stuck; records still queued are lost")
        self._thread.join(timeout)
        self.sink.close()
