"""Issue 8, item 12 (and the settings of items 1 and 4): the request log's size cap, hashed text and
retention, configured per environment in the settings and passed to the server as flags."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import pytest

from serving.server import ServeConfig, config_from_settings, parse_args, server_args
from shipyard.settings import RequestLogSettings, ServingSettings, Settings
from tests.integration.serving_stack import Stack, known_entities, serve_config, start_server


def test_every_serving_setting_reaches_the_server_config(stack: Stack, tmp_path: Path) -> None:
    settings = Settings(
        environment="test",
        project="ticket_routing",
        feature_repo=stack.repo,
        model_registry=str(stack.registry),
        state_dir=tmp_path / "state",
        serving=ServingSettings(
            host="0.0.0.0",
            grace_period_seconds=7.5,
            header_timeout_seconds=3,
            body_timeout_seconds=4,
            enable_model_repository=True,
            enable_docs=True,
            request_log=RequestLogSettings(
                max_record_bytes=8192,
                text="sha256",
                retention_days=30,
                retention_bytes=2_000_000,
                upload="s3://logs/test",
                rollover_seconds=60,
            ),
        ),
    )
    config = config_from_settings(settings)
    timing = (config.grace_period, config.header_timeout, config.body_timeout)
    assert config.host == "0.0.0.0" and timing == (7.5, 3, 4)
    assert config.enable_model_repository and config.enable_docs
    assert config.request_log_dir == tmp_path / "state" / "request_log"
    assert (
        config.request_log_max_record_bytes,
        config.request_log_text,
        config.request_log_retention_days,
        config.request_log_retention_bytes,
    ) == (8192, "sha256", 30, 2_000_000)
    assert (config.request_log_upload, config.request_log_rollover_seconds) == ("s3://logs/test", 60)
    # ... and every one of them survives the trip through the command line of `python -m serving`.
    assert parse_args(server_args(config)) == config
    # The defaults: loopback, everything optional off, raw text kept, nothing deleted.
    default = config_from_settings(settings.model_copy(update={"serving": ServingSettings()}))
    assert (default.host, default.enable_model_repository, default.enable_docs) == ("127.0.0.1", False, False)
    assert parse_args(server_args(default)) == default


def test_server_flags_and_config_agree_for_every_new_option(stack: Stack, tmp_path: Path) -> None:
    config = serve_config(
        stack,
        tmp_path,
        port=9125,
        host="::1",
        grace_period=2.5,
        header_timeout=1.5,
        body_timeout=2.0,
        request_log_max_record_bytes=5000,
        request_log_text="sha256",
        request_log_retention_days=0.5,
        request_log_retention_bytes=3_000_000,
        request_log_upload="file:///var/spool/shipped",
        request_log_rollover_seconds=12.5,
        enable_model_repository=True,
        enable_docs=True,
    )
    assert parse_args(server_args(config)) == config
    assert isinstance(config, ServeConfig) and dataclasses.is_dataclass(config)


def test_a_hashed_capped_request_log_keeps_no_ticket_text(stack: Stack, tmp_path: Path) -> None:
    server = start_server(
        stack,
        tmp_path / "srv",
        request_log_text="sha256",
        request_log_max_record_bytes=4096,
        request_log_retention_bytes=1_048_576,
    )
    customer = known_entities(stack, 1)[0]
    secret = "my salary account 12345678 was overdrawn by my manager"
    rows = [{"customer_id": customer, "ticket_text": f"{secret} #{i}"} for i in range(50)]
    try:
        r = server.v1(rows, headers={"x-request-id": "private"})
        assert r.status_code == 200, r.text
    finally:
        assert server.stop() == 0
    lines = [line for p in server.request_log.glob("requests-*.jsonl") for line in p.read_text().splitlines()]
    assert lines
    assert all(len(line.encode()) <= 4096 for line in lines)
    assert not any(secret in line for line in lines)
    (record,) = [json.loads(line) for line in lines if json.loads(line)["request_id"] == "private"]
    assert record["truncated"] is True
    assert len(record["rows"]) + record["rows_omitted"] == 50 and record["rows"]
    expected = "sha256:" + hashlib.sha256(f"{secret} #0".encode()).hexdigest()
    assert record["rows"][0]["ticket_text"] == expected
    assert record["rows"][0]["prediction"] and record["rows"][0]["features"]


def test_retention_deletes_old_files_when_the_server_starts_writing(stack: Stack, tmp_path: Path) -> None:
    import os

    log_dir = tmp_path / "srv" / "request_log"
    log_dir.mkdir(parents=True)
    old = log_dir / "requests-20240101-1.jsonl"
    old.write_text('{"request_id": "old"}\n')
    stamp = time.time() - 40 * 86_400
    os.utime(old, (stamp, stamp))
    server = start_server(stack, tmp_path / "srv", request_log_retention_days=30)
    try:
        r = server.v1([{"customer_id": known_entities(stack, 1)[0], "ticket_text": "parcel lost"}])
        assert r.status_code == 200
    finally:
        server.stop()
    assert not old.exists()
    assert list(log_dir.glob("requests-*.jsonl"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--request_log_upload", "/var/log/x"], "--request_log_upload: an s3:// or file:// URI"),
        (["--request_log_upload", "s3://logs/x", "--request_log_rollover_seconds", "0"], "rollover_seconds"),
    ],
)
def test_bad_shipping_flags_are_refused_by_name(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    args = server_args(serve_config(stack, tmp_path)) + flags
    with pytest.raises(SystemExit) as exited:
        parse_args(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
