"""Shipping the request log to object storage: closed files only, nothing lost, nothing written twice.

These use a file:// store (shipyard.storage.LocalStore: the same ObjectStore interface the s3://
backend implements); tests/integration/test_serving_logshipping.py runs the server against MinIO.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from serving.metrics import REQUEST_LOG_UPLOADS
from serving.requestlog import JsonLinesSink, LogShipper, RequestLog, ShippingSink, shipped_key
from shipyard.monitoring import parse_time, read_request_log


def _uploads(outcome: str) -> float:
    return float(REQUEST_LOG_UPLOADS.labels(outcome)._value.get())


def _records(n: int, start: int = 0) -> list[dict[str, object]]:
    now = time.time()
    return [
        {
            "request_id": f"r{i}",
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "+00:00",
            "rows": [{"x": i}],
        }
        for i in range(start, start + n)
    ]


def _shipped(target: Path) -> dict[str, list[str]]:
    return {
        p.name: [json.loads(line)["request_id"] for line in p.read_text().splitlines()]
        for p in sorted(target.glob("*.jsonl"))
    }


def test_only_closed_files_are_shipped_then_removed_from_the_spool(tmp_path: Path) -> None:
    spool, target = tmp_path / "spool", tmp_path / "bucket"
    sink = JsonLinesSink(spool, rollover_seconds=0.2)
    shipper = LogShipper(sink, f"file://{target}", interval_seconds=3600)  # rounds driven by the test
    try:
        sink.write(_records(3))
        assert shipper.ship() == 0  # the file being written is never shipped
        assert not target.exists() or not list(target.iterdir())
        time.sleep(0.3)
        before = _uploads("uploaded")
        assert shipper.ship() == 1  # now due: closed by the round itself, though no request came
        assert _uploads("uploaded") == before + 1
        assert list(spool.glob("requests-*.jsonl")) == []
        ((name, ids),) = _shipped(target).items()
        assert ids == ["r0", "r1", "r2"]
        assert name.startswith("requests-") and f"-{os.getpid()}-" in name
        sink.write(_records(2, start=3))  # the next file, a new part
    finally:
        ShippingSink(sink, shipper).close()
    assert sorted(i for ids in _shipped(target).values() for i in ids) == ["r0", "r1", "r2", "r3", "r4"]
    assert list(spool.glob("requests-*.jsonl")) == []


def test_closing_the_request_log_ships_everything_and_monitoring_reads_it_there(tmp_path: Path) -> None:
    spool, target = tmp_path / "spool", tmp_path / "bucket"
    sink = JsonLinesSink(spool, rollover_seconds=300)  # never due during the test
    log = RequestLog(ShippingSink(sink, LogShipper(sink, f"file://{target}", 3600)), flush_seconds=0.05)
    for record in _records(40):
        log.append(record)
    log.close()
    assert list(spool.glob("requests-*.jsonl")) == []
    now = parse_time(time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    read = read_request_log(f"file://{target}", now.replace(hour=0, minute=0, second=0), now.replace(hour=23))
    assert [r["request_id"] for r in read.records] == [f"r{i}" for i in range(40)]


def test_a_failed_upload_keeps_the_file_and_the_next_round_ships_it(tmp_path: Path) -> None:
    spool, target = tmp_path / "spool", tmp_path / "bucket"
    target.write_text("a file where the store's directory should be")  # every upload fails for real
    sink = JsonLinesSink(spool, rollover_seconds=0.01)
    shipper = LogShipper(sink, f"file://{target}", interval_seconds=3600)
    try:
        sink.write(_records(5))
        time.sleep(0.05)
        failed = _uploads("failed")
        assert shipper.ship() == 0
        assert _uploads("failed") == failed + 1
        assert len(list(spool.glob("requests-*.jsonl"))) == 1  # kept for the next round
        target.unlink()  # the store is back
        assert shipper.ship() == 1
    finally:
        shipper.close()
    assert [i for ids in _shipped(target).values() for i in ids] == ["r0", "r1", "r2", "r3", "r4"]
    assert list(spool.glob("requests-*.jsonl")) == []


def test_files_a_killed_process_left_are_shipped_by_the_next_one(tmp_path: Path) -> None:
    spool, target = tmp_path / "spool", tmp_path / "bucket"
    spool.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(dead.stdout)  # a process that has exited
    day = time.strftime("%Y%m%d", time.gmtime())
    left = spool / f"requests-{day}-{pid}.jsonl"
    torn = json.dumps(_records(1)[0]) + "\n" + '{"request_id": "r1", "recei'  # killed mid-write
    left.write_text(torn)
    (spool / f"requests-{day}-{pid}-1.jsonl").write_text("")  # opened, never written
    sink = JsonLinesSink(spool, rollover_seconds=300)
    shipper = LogShipper(sink, f"file://{target}", interval_seconds=3600)
    try:
        assert shipper.ship() == 1
    finally:
        shipper.close()
    ((name, _),) = ((p.name, p) for p in target.glob("*.jsonl"))
    assert name.startswith(f"requests-{day}-") and f"-{pid}-" in name
    assert (target / name).read_text() == torn  # byte for byte: the reader counts the torn line
    assert list(spool.iterdir()) == []


def test_a_restart_with_the_same_pid_never_appends_and_never_overwrites_what_was_shipped(
    tmp_path: Path,
) -> None:
    # In a container the server can get the same pid after every restart: the files it writes then
    # have the same name stem, and their shipped keys must still differ.
    spool = tmp_path / "spool"
    first = JsonLinesSink(spool)
    first.write(_records(2))
    first.close()
    second = JsonLinesSink(spool)  # same pid, same day: a restart
    second.write(_records(2, start=2))
    second.close()
    files = sorted(spool.glob("requests-*.jsonl"))
    assert len(files) == 2
    assert [len(p.read_text().splitlines()) for p in files] == [2, 2]
    # Two files of one name (spools of two restarts of one pod) get two keys.
    renamed = tmp_path / "other" / files[0].name
    renamed.parent.mkdir()
    renamed.write_text(files[1].read_text())
    from serving.requestlog import _digest

    a = shipped_key(files[0], _digest(files[0]), "pod-a")
    b = shipped_key(renamed, _digest(renamed), "pod-a")
    assert a is not None and b is not None and a != b
    assert shipped_key(files[0], _digest(files[0]), "pod-b") != a  # and pods never share one
    assert shipped_key(tmp_path / "notes.jsonl", "0" * 64, "pod-a") is None
