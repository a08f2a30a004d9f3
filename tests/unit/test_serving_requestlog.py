"""The request log batches writes, never blocks the caller, and loses nothing on close."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from serving.requestlog import JsonLinesSink, Record, RequestLog


class SlowSink:
    """Records batch sizes; blocks writes until released, like a stalled disk."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []
        self.release = threading.Event()
        self.closed = False

    def write(self, records: Sequence[Record]) -> None:
        self.release.wait(10)
        self.batches.append(list(records))

    def close(self) -> None:
        self.closed = True


def test_batches_are_bounded_and_close_flushes_the_rest() -> None:
    sink = SlowSink()
    sink.release.set()
    log = RequestLog(sink, batch_size=10, flush_seconds=60)
    for i in range(25):
        log.append({"i": i})
    log.close()
    assert [r["i"] for batch in sink.batches for r in batch] == list(range(25))
    assert max(len(b) for b in sink.batches) <= 10
    assert sink.closed


def test_a_full_buffer_drops_instead_of_blocking() -> None:
    sink = SlowSink()  # not released: the writer thread is stuck on its first batch
    log = RequestLog(sink, batch_size=1, flush_seconds=60, capacity=5)
    for i in range(50):
        log.append({"i": i})  # returns at once even though nothing can be written
    sink.release.set()
    log.close()
    written = [r["i"] for batch in sink.batches for r in batch]
    assert 0 < len(written) < 50
    assert written == sorted(written)


def test_json_lines_sink_writes_one_object_per_line(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "log")
    log = RequestLog(sink, batch_size=2, flush_seconds=0.05)
    for i in range(5):
        log.append({"request_id": f"r{i}", "rows": [{"x": i}]})
    log.close()
    (path,) = (tmp_path / "log").glob("requests-*.jsonl")
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        f"r{i}" for i in range(5)
    ]
    log.close()  # idempotent
