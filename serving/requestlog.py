"""The request log: every prediction request with its inputs, features and answer, for monitoring.

The hot path only appends a dict to a bounded in-memory queue; a background thread serialises and
writes records in batches (every `batch_size` records or `flush_seconds`, whichever comes first)
and drains the queue on shutdown. A full queue drops the record and counts it
(`shipyard_request_log_records_total{outcome="dropped"}`) rather than stalling predictions behind
a slow disk. The sink is pluggable: anything with `write(records)` and `close()`.

Records carry the request id and UTC timestamps so the monitoring pipeline can join them with
labels that arrive later (event -> label).

Privacy and size, all applied by the writer thread (never on the request path):

* a record over `max_record_bytes` as a JSON line is cut down: its longest string values inside
  `rows` are truncated with a `...[truncated N chars]` marker, then trailing rows are dropped
  (`rows_omitted`), and it carries `"truncated": true` (a 256-row batch was a 1 MB line);
* `text="sha256"` stores the contract's `text` request fields (`text_fields`, set by the model from
  its contract) as `sha256:<hex of the UTF-8 bytes>`: joins and duplicate detection still work, the
  text itself is not kept. It is a pseudonym, not anonymisation: a short or guessable text can be
  found by hashing candidates;
* non-finite numbers are written as null (the log is strict JSON).

`JsonLinesSink` deletes whole files older than `retention_days` (by last write) and, with
`retention_bytes`, the oldest files until the directory is under the budget; the file being
written rolls over at a quarter of the budget so that old data can go as whole files.

On a cluster the log must outlive the pod: `ShippingSink` makes the directory a spool. The file
being written rolls over every `rollover_seconds`; a `LogShipper` thread copies each closed file to
object storage (`--request_log_upload`, read there by the monitoring pipeline) under a key no other
pod, worker or restart can take (host, pid, part and a digest of the bytes), then deletes it. An
upload is retried until it succeeds; meanwhile retention keeps the spool within its budget, so an
object-store outage costs the oldest records, never the disk or the predictions. Files a killed
process left in the spool are shipped by the next one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from serving.metrics import REQUEST_LOG, REQUEST_LOG_UPLOADS

log = logging.getLogger("shipyard.serving")

Record = dict[str, Any]


class RequestLogSink(Protocol):
    def write(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per line, one file per server process and UTC day (rolled over at a quarter
    of `retention_bytes` when that is set), appended and fsynced per batch, old files deleted whole."""

    RETENTION_CHECK_SECONDS = 60.0

    def __init__(
        self,
        directory: Path,
        retention_days: float | None = None,
        retention_bytes: int | None = None,
        rollover_seconds: float | None = None,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retention_days = retention_days
        self.retention_bytes = retention_bytes
        self.max_file_bytes = max(retention_bytes // 4, 4096) if retention_bytes else None
        self.rollover_seconds = rollover_seconds
        self._day = ""
        self._part = 0
        self._path: Path | None = None
        self._fh: Any = None
        self._opened = 0.0
        self._next_retention = 0.0
        # The writer thread writes; a shipper thread asks which file is open and closes an old one.
        self._lock = threading.Lock()

    def path_for(self, day: str, part: int = 0) -> Path:
        suffix = f"-{part}" if part else ""
        return self.directory / f"requests-{day}-{os.getpid()}{suffix}.jsonl"

    def _due(self) -> bool:
        return (
            self._fh is not None
            and self.rollover_seconds is not None
            and time.monotonic() - self._opened >= self.rollover_seconds
        )

    def write(self, records: Sequence[Record]) -> None:
        with self._lock:
            self._write(records)
        # A size budget is checked after every batch (a directory listing: cheap next to the fsync),
        # an age limit at most once a minute.
        if self.retention_bytes is not None or time.monotonic() >= self._next_retention:
            self.apply_retention()
            self._next_retention = time.monotonic() + self.RETENTION_CHECK_SECONDS

    def _write(self, records: Sequence[Record]) -> None:
        day = datetime.now(UTC).strftime("%Y%m%d")
        limit = self.max_file_bytes
        full = limit is not None and self._fh is not None and self._fh.tell() >= limit
        if day != self._day or self._fh is None or full or self._due():
            self._close()
            self._part = self._part + 1 if day == self._day else 0
            self._day = day
            self._path = self.path_for(day, self._part)
            # Never append to an existing file: a restarted process can have the same pid (pid 1 in
            # a container), and a file that may have been shipped already must stay as it was.
            while self._path.exists():
                self._part += 1
                self._path = self.path_for(day, self._part)
            self._fh = self._path.open("x", encoding="utf-8")
            self._opened = time.monotonic()
            self._next_retention = 0.0  # a new file: check what can go
        self._fh.write("".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def roll_if_due(self) -> None:
        """Close the file being written once it is `rollover_seconds` old, even when no request
        comes to roll it over, so that a quiet server's last records get shipped too."""
        with self._lock:
            if self._due():
                self._close()

    def current_path(self) -> Path | None:
        """The file open for writing, if any: the one file a shipper must leave alone."""
        with self._lock:
            return self._path if self._fh is not None else None

    def apply_retention(self) -> list[Path]:
        """Delete whole log files past the age or size budget, oldest first; never the current one."""
        if self.retention_days is None and self.retention_bytes is None:
            return []
        files = []
        for path in self.directory.glob("requests-*.jsonl"):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        files.sort()
        deleted: list[Path] = []
        now = time.time()
        total = sum(size for _, size, _ in files)
        written_by_others = _current_files_of_live_writers(p for _, _, p in files)
        for mtime, size, path in files:
            if path == self._path or path in written_by_others:
                continue
            too_old = self.retention_days is not None and now - mtime > self.retention_days * 86_400
            too_big = self.retention_bytes is not None and total > self.retention_bytes
            if not (too_old or too_big):
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("request log retention: could not delete %s: %s", path.name, exc)
                continue
            total -= size
            deleted.append(path)
        if deleted:
            log.info("request log retention: deleted %d old file(s)", len(deleted))
        return deleted

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


_FILE_NAME = re.compile(r"^requests-(?P<day>\d{8})-(?P<pid>\d+)(?:-(?P<part>\d+))?\.jsonl$")


def _current_files_of_live_writers(paths: Iterable[Path]) -> set[Path]:
    """The file each other live process is writing (its newest): retention never deletes those.

    With several workers (serving.workers) in one directory, one worker's retention would otherwise
    unlink a sibling's open file, and the sibling would go on writing records into a deleted file.
    """
    newest: dict[int, tuple[str, int, Path]] = {}
    for path in paths:
        match = _FILE_NAME.match(path.name)
        if match is None:
            continue
        pid = int(match["pid"])
        key = (match["day"], int(match["part"] or 0), path)
        if pid not in newest or key[:2] > newest[pid][:2]:
            newest[pid] = key
    # Files roll over every UTC day: an older file is no live process's current one (pid reuse).
    recent = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")
    current = set()
    for pid, (day, _, path) in newest.items():
        if pid == os.getpid() or day < recent:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue  # gone: its files are old data like any other
        except PermissionError:
            pass  # alive, someone else's
        current.add(path)
    return current


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _host() -> str:
    """This pod's name (the hostname), as far as it is safe in an object key."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()).strip(".-") or "host"


def shipped_key(path: Path, digest: str, host: str) -> str | None:
    """The object key of a closed log file: `requests-<day>-<host>-<pid>[-part]-<digest>.jsonl`.

    The day stays first (monitoring picks files by it); the host tells pods apart, the pid and part
    a pod's workers and files, and 16 hex digits of the content's sha256 a restarted container that
    reused pid and part: no two different files get one key, and shipping a file twice is harmless.
    None: not a log file's name.
    """
    match = _FILE_NAME.match(path.name)
    if match is None:
        return None
    part = f"-{match['part']}" if match["part"] else ""
    return f"requests-{match['day']}-{host}-{match['pid']}{part}-{digest[:16]}.jsonl"


class LogShipper:
    """Copies closed request-log files from the spool directory to object storage, then deletes them.

    One per server process; with several workers in one directory two shippers may copy the same
    closed file, which writes the same bytes to the same key (see `shipped_key`). A file is deleted
    only after its upload returned. Failures are logged once per outage and counted
    (`shipyard_request_log_uploads_total{outcome="failed"}`); the file waits for the next round.
    """

    def __init__(self, sink: JsonLinesSink, uri: str, interval_seconds: float, store: Any = None) -> None:
        from shipyard.storage import store_for

        self.sink = sink
        self.uri = uri
        self.store = store if store is not None else store_for(uri)
        self.interval = interval_seconds
        self.host = _host()
        self._failing = False
        self._stop = threading.Event()
        self._round = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="request-log-shipper", daemon=True)
        self._thread.start()

    def ship(self) -> int:
        """One round: close the current file if it is due, copy every closed file; files shipped."""
        with self._round:
            self.sink.roll_if_due()
            paths = sorted(self.sink.directory.glob("requests-*.jsonl"))
            busy = _current_files_of_live_writers(paths)
            current = self.sink.current_path()
            shipped = 0
            for path in paths:
                if path == current or path in busy:
                    continue
                try:
                    if path.stat().st_size == 0:  # opened and never written (a kill at the wrong moment)
                        path.unlink(missing_ok=True)
                        continue
                    key = shipped_key(path, _digest(path), self.host)
                    if key is None:
                        continue
                    self.store.put_file(key, path)
                except FileNotFoundError:
                    continue  # a sibling worker shipped it, or retention deleted it
                except Exception as exc:  # object storage down or refusing: retry next round
                    REQUEST_LOG_UPLOADS.labels("failed").inc()
                    if not self._failing:
                        log.warning("request log: could not ship %s to %s: %s", path.name, self.uri, exc)
                    self._failing = True
                    return shipped
                path.unlink(missing_ok=True)
                REQUEST_LOG_UPLOADS.labels("uploaded").inc()
                shipped += 1
            if self._failing:
                log.info("request log: shipping to %s works again", self.uri)
            self._failing = False
            return shipped

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.ship()
            except Exception:  # a bug here must not stop the next rounds
                log.exception("request log: shipping round failed")

    def close(self) -> None:
        """Stop the rounds and ship what is closed now (the sink is closed first: everything)."""
        self._stop.set()
        self._thread.join()
        try:
            self.ship()
        except Exception:
            log.exception("request log: last shipping round failed; files stay in %s", self.sink.directory)


class ShippingSink:
    """A `JsonLinesSink` whose closed files a `LogShipper` moves to object storage."""

    def __init__(self, sink: JsonLinesSink, shipper: LogShipper) -> None:
        self.sink = sink
        self.shipper = shipper

    def write(self, records: Sequence[Record]) -> None:
        self.sink.write(records)

    def close(self) -> None:
        self.sink.close()
        self.shipper.close()


TEXT_STORAGE = ("raw", "sha256")
_MIN_TEXT = 80  # truncated strings keep at least this many characters (a 71-char sha256 pseudonym: all)


def _size(record: Record) -> int:
    return len(json.dumps(record, separators=(",", ":"), default=str, allow_nan=False).encode())


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _truncate_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}...[truncated {len(value) - limit} chars]"
    if isinstance(value, dict):
        return {k: _truncate_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_truncate_strings(v, limit) for v in value]
    return value


def _sha256(text: str) -> str:
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def hash_text_fields(record: Record, text_fields: frozenset[str]) -> Record:
    """The record with the `text_fields` of its rows replaced by `sha256:<hex>` of their UTF-8 bytes."""
    rows = record.get("rows")
    if not text_fields or not isinstance(rows, list):
        return record
    hashed = []
    for row in rows:
        if isinstance(row, dict):
            row = {k: _sha256(v) if k in text_fields and isinstance(v, str) else v for k, v in row.items()}
        hashed.append(row)
    return {**record, "rows": hashed}


def cap_record(record: Record, max_bytes: int) -> Record:
    """The record as is if its JSON line fits in `max_bytes`; else cut down to fit, and flagged."""
    try:
        if _size(record) <= max_bytes:
            return record
    except ValueError:  # a non-finite number somewhere
        record = _finite(record)
        if _size(record) <= max_bytes:
            return record
    rows = record.get("rows") if isinstance(record.get("rows"), list) else []
    out: Record = {**record, "truncated": True}
    limit = max((len(s) for s in _strings(rows)), default=0)
    while limit > _MIN_TEXT:
        limit //= 2
        out["rows"] = _truncate_strings(rows, max(limit, _MIN_TEXT))
        if _size(out) <= max_bytes:
            return out
    shortened = _truncate_strings(rows, _MIN_TEXT)

    def with_rows(k: int) -> Record:
        return {**out, "rows": shortened[:k], "rows_omitted": len(shortened) - k}

    fits, too_many = 0, len(shortened)  # the longest prefix of rows that fits, by bisection
    while too_many - fits > 1:
        mid = (fits + too_many) // 2
        if _size(with_rows(mid)) <= max_bytes:
            fits = mid
        else:
            too_many = mid
    return with_rows(fits)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


_STOP = object()


class RequestLog:
    """Bounded, batched, background-written request log."""

    def __init__(
        self,
        sink: RequestLogSink,
        batch_size: int = 256,
        flush_seconds: float = 1.0,
        capacity: int = 50_000,
        max_record_bytes: int = 65_536,
        text: str = "raw",
    ) -> None:
        if text not in TEXT_STORAGE:
            raise ValueError(f"request log text storage must be one of {TEXT_STORAGE}, got {text!r}")
        self.sink = sink
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_record_bytes = max_record_bytes
        self.text = text
        # The served contract's `text` request fields (set by the model when it loads).
        self.text_fields: frozenset[str] = frozenset()
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

    def prepare(self, record: Record) -> Record:
        """What is stored for `record`: text fields hashed if configured, capped in size, strict JSON."""
        if self.text == "sha256":
            record = hash_text_fields(record, self.text_fields)
        return cap_record(record, self.max_record_bytes)

    def _write(self, batch: list[Record]) -> None:
        if not batch:
            return
        try:
            self.sink.write([self.prepare(r) for r in batch])
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
