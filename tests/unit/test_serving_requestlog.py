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


# -- privacy: size cap, hashed text, retention (issue 8, item 12) -------------------------------------
class ListSink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        pass


def record_with(rows: int, text: str) -> Record:
    return {
        "request_id": "r1",
        "status": 200,
        "rows": [
            {
                "customer_id": i,
                "ticket_text": text,
                "features": {"region": "north", "open_invoices": 3.0},
                "prediction": "it",
                "probabilities": {"accounting": 0.25, "inventory": 0.25, "hr": 0.25, "it": 0.25},
            }
            for i in range(rows)
        ],
    }


def logged(record: Record, **options: object) -> Record:
    sink = ListSink()
    log = RequestLog(sink, batch_size=1, flush_seconds=0.05, **options)  # type: ignore[arg-type]
    log.text_fields = frozenset({"ticket_text"})
    log.append(record)
    log.close()
    (out,) = sink.records
    return out


def size(record: Record) -> int:
    return len(json.dumps(record, separators=(",", ":")).encode())


def test_a_record_over_the_size_cap_is_truncated_flagged_and_fits() -> None:
    huge = record_with(256, "word " * 1000)  # 256 rows of 5000 characters: about 1.3 MB as one line
    assert size(huge) > 1_000_000
    out = logged(huge, max_record_bytes=16_384)
    assert size(out) <= 16_384
    assert out["truncated"] is True
    first = out["rows"][0]["ticket_text"]
    assert first.startswith("word word") and first.endswith("chars]") and "[truncated" in first
    # Rows that do not fit even with short texts are dropped from the end, and the count is kept.
    assert len(out["rows"]) + out["rows_omitted"] == 256
    assert out["rows"][0]["customer_id"] == 0 and out["request_id"] == "r1"


def test_a_record_under_the_cap_is_written_as_is() -> None:
    small = record_with(2, "my parcel is lost")
    assert logged(small, max_record_bytes=16_384) == small


def test_text_fields_can_be_stored_as_their_sha256() -> None:
    import hashlib

    out = logged(record_with(2, "my salary is wrong"), text="sha256")
    digest = hashlib.sha256(b"my salary is wrong").hexdigest()
    assert [r["ticket_text"] for r in out["rows"]] == [f"sha256:{digest}"] * 2
    assert out["rows"][0]["features"] == {"region": "north", "open_invoices": 3.0}  # only text fields
    assert "my salary" not in json.dumps(out)


def test_capping_a_hashed_record_drops_rows_but_never_cuts_a_hash() -> None:
    out = logged(record_with(256, "word " * 1000), text="sha256", max_record_bytes=16_384)
    assert size(out) <= 16_384 and out["truncated"] is True and out["rows_omitted"] > 0
    assert all(len(r["ticket_text"]) == len("sha256:") + 64 for r in out["rows"])


def test_non_finite_numbers_never_reach_the_log_as_invalid_json() -> None:
    record = record_with(1, "x")
    record["rows"][0]["features"]["open_invoices"] = float("inf")
    out = logged(record)
    assert out["rows"][0]["features"]["open_invoices"] is None
    json.loads(json.dumps(out, allow_nan=False))


def _old_file(directory: Path, name: str, days: float, size_bytes: int) -> Path:
    import os
    import time

    path = directory / name
    path.write_bytes(b"{}\n" * (size_bytes // 3))
    stamp = time.time() - days * 86_400
    os.utime(path, (stamp, stamp))
    return path


def test_retention_by_age_deletes_whole_old_files(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    directory.mkdir()
    old = _old_file(directory, "requests-20250101-11.jsonl", days=10, size_bytes=300)
    recent = _old_file(directory, "requests-20250108-12.jsonl", days=2, size_bytes=300)
    other = _old_file(directory, "notes.txt", days=100, size_bytes=30)  # not a request log file
    sink = JsonLinesSink(directory, retention_days=7)
    sink.write([{"request_id": "new"}])
    sink.close()
    assert not old.exists() and recent.exists() and other.exists()
    assert len(list(directory.glob("requests-*.jsonl"))) == 2


def test_retention_by_size_deletes_the_oldest_files_first(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    directory.mkdir()
    files = [
        _old_file(directory, f"requests-2025010{i}-1.jsonl", days=9 - i, size_bytes=400_000)
        for i in range(1, 9)
    ]
    sink = JsonLinesSink(directory, retention_bytes=1_000_000)
    sink.write([{"request_id": "new"}])
    sink.close()
    kept = sorted(directory.glob("requests-*.jsonl"))
    assert sum(p.stat().st_size for p in kept) <= 1_000_000
    assert files[-1].exists() and files[-2].exists() and not files[0].exists()


def test_a_busy_log_stays_within_its_size_budget(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = RequestLog(JsonLinesSink(directory, retention_bytes=1_000_000), batch_size=50, flush_seconds=60)
    for i in range(6_000):  # about 3 MB of records
        log.append({"request_id": f"r{i}", "rows": [{"ticket_text": "x" * 400}]})
    log.close()
    files = list(directory.glob("requests-*.jsonl"))
    assert len(files) > 1  # the file being written rolls over, so old ones can be deleted whole
    assert sum(p.stat().st_size for p in files) <= 1_000_000 + 50 * 500  # the budget plus one batch
    last = max(files, key=lambda p: p.stat().st_mtime)
    assert json.loads(last.read_text().splitlines()[-1])["request_id"] == "r5999"
