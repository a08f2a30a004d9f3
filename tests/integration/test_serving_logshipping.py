"""The model server ships its request log to object storage (a real MinIO), where monitoring reads it.

On a cluster the pod's log directory is an emptyDir: without shipping, a rescheduled pod takes its
requests with it. These run the real server with `--request_log_upload s3://...`, check what lands in
the bucket while it serves, after a SIGKILL (the next process ships what the dead one left) and after
a clean stop, and read it back through the monitoring pipeline's own reader.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shipyard.monitoring import read_request_log
from shipyard.settings import RequestLogSettings, ServingSettings, Settings, request_log_location
from tests.integration.serving_stack import Server, Stack, known_entities, start_server
from tests.s3server import S3Server


@pytest.fixture()
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    return s3


def _ids(uri: str) -> list[str]:
    now = datetime.now(UTC)
    read = read_request_log(uri, now - timedelta(hours=1), now + timedelta(hours=1))
    return [str(r["request_id"]) for r in read.records]


def _written(spool: Path, ids: set[str]) -> bool:
    """Whether every one of `ids` is on disk in the spool (the sink flushes every 0.2 s)."""
    found: set[str] = set()
    for path in spool.glob("requests-*.jsonl"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                found.add(str(json.loads(line).get("request_id")))
    return ids <= found


def _wait_for(uri: str, expected: set[str], timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        ids = _ids(uri)
        if expected <= set(ids) or time.monotonic() > deadline:
            return ids
        time.sleep(0.2)


def test_the_server_ships_its_log_while_serving_after_a_kill_and_on_stop(
    stack: Stack, s3_env: S3Server, tmp_path: Path
) -> None:
    uri = f"s3://{s3_env.new_bucket('logs')}/staging"
    workdir = tmp_path / "srv"
    customer = known_entities(stack, 1)[0]

    def shipping_server(where: Path, rollover: float) -> Server:
        return start_server(
            stack, where, env=s3_env.env(), request_log_upload=uri, request_log_rollover_seconds=rollover
        )

    def ask(server: Server, request_id: str) -> None:
        r = server.v1(
            [{"customer_id": customer, "ticket_text": "my invoice was charged twice"}],
            headers={"x-request-id": request_id},
        )
        assert r.status_code == 200, r.text

    # 1. While it serves: a file is closed every rollover and shipped, with no stop or new request.
    first = shipping_server(workdir, rollover=0.5)
    try:
        for i in range(3):
            ask(first, f"a{i}")
        assert set(_wait_for(uri, {"a0", "a1", "a2"})) == {"a0", "a1", "a2"}
        # 2. A server killed with records written but not shipped: they stay in the spool ...
        killed = shipping_server(tmp_path / "killed", rollover=3600)
    except BaseException:
        first.stop()
        raise
    try:
        ask(killed, "k0")
        ask(killed, "k1")
        spool = killed.request_log
        deadline = time.monotonic() + 30
        while not _written(spool, {"k0", "k1"}) and time.monotonic() < deadline:
            time.sleep(0.1)  # both on disk before the kill: what is only in memory dies with it
    finally:
        killed.stop(signal.SIGKILL)
    assert _written(spool, {"k0", "k1"})
    assert not {"k0", "k1"} & set(_ids(uri))
    try:
        ask(first, "a3")
    finally:
        assert first.stop() == 0  # 3. a clean stop ships the file being written
    assert list(workdir.joinpath("request_log").glob("requests-*.jsonl")) == []

    # ... and the next server on that spool ships what the dead one left.
    after = shipping_server(tmp_path / "killed", rollover=3600)
    try:
        ask(after, "n0")
    finally:
        assert after.stop() == 0
    assert list(spool.glob("requests-*.jsonl")) == []
    ids = _ids(uri)
    # Each once: nothing lost, nothing doubled.
    assert sorted(ids) == sorted(["a0", "a1", "a2", "a3", "k0", "k1", "n0"])
    keys = s3_env.filesystem().find(uri.removeprefix("s3://"))
    assert len({k.rsplit("/", 1)[-1].split("-")[2] for k in keys}) == 1  # this host's name is in every key


def test_monitoring_reads_the_log_where_the_server_ships_it(tmp_path: Path) -> None:
    def settings(log: RequestLogSettings, monitored: str | None = None) -> Settings:
        return Settings.model_validate(
            {
                "environment": "test",
                "project": "ticket_routing",
                "state_dir": str(tmp_path),
                "serving": ServingSettings(request_log=log).model_dump(),
                "monitoring": {"request_log": monitored},
            }
        )

    shipped = RequestLogSettings(upload="s3://logs/staging")
    assert request_log_location(settings(shipped)) == "s3://logs/staging"
    assert request_log_location(settings(shipped, "s3://elsewhere/x")) == "s3://elsewhere/x"
    assert request_log_location(settings(RequestLogSettings())) == str(tmp_path / "request_log")
    assert request_log_location(settings(RequestLogSettings(directory=None))) is None
    with pytest.raises(ValueError, match="upload"):
        RequestLogSettings(upload="/var/log/requests")  # a path is not object storage
