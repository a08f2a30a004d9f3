"""Session fixtures for the serving tests: one small trained stack, one model server on SQLite,
one real redis-server. Tests that stop or break a server start their own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.drift_replay import Replayed, replay_drifted_march
from tests.integration.serving_stack import RedisServer, Server, Stack, build_stack, start_server
from tests.support import require


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return build_stack(tmp_path_factory.mktemp("serving-stack"))


@pytest.fixture(scope="session")
def server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(stack, tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """A drifted March served, logged and monitored (both halves); shared by the monitoring and the
    continuous-training tests."""
    return replay_drifted_march(tmp_path_factory.mktemp("monitor-tickets"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
