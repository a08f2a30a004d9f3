"""The same server on the Redis online store, with the deployed environments' Feast config.

`feature_repo/environments/dev.yaml` (Redis online store, SQL registry, connection strings from the
environment) is used as is, with a real `redis-server` and a SQLite-backed SQL registry.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shipyard import featurestore
from tests.integration.serving_stack import (
    RedisServer,
    Server,
    Stack,
    known_entities,
    materialize_window,
    start_server,
)

DEPLOYED_YAML = "environments/dev.yaml"


@dataclass(frozen=True)
class RedisFeatures:
    yaml_name: str
    env: dict[str, str]


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_into_redis(stack: Stack, redis: RedisServer, registry_dir: Path) -> RedisFeatures:
    """`feast apply` + materialize with the deployed config, pointed at this redis and registry."""
    registry_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "FEAST_REDIS_CONNECTION": redis.connection,
        "FEAST_REGISTRY_URL": f"sqlite:///{registry_dir / 'registry.db'}",
    }
    with environ(env):
        featurestore.apply(stack.repo, DEPLOYED_YAML)
        featurestore.materialize(stack.repo, *materialize_window(), yaml_name=DEPLOYED_YAML)
    return RedisFeatures(DEPLOYED_YAML, env)


@pytest.fixture(scope="module")
def redis_features(
    stack: Stack, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> RedisFeatures:
    return load_into_redis(stack, redis_server, tmp_path_factory.mktemp("feast-sql-registry"))


@pytest.fixture(scope="module")
def redis_model_server(
    stack: Stack, redis_features: RedisFeatures, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    srv = start_server(
        stack,
        tmp_path_factory.mktemp("redis-server"),
        feature_store_yaml=redis_features.yaml_name,
        env=redis_features.env,
    )
    yield srv
    srv.stop()


def test_redis_and_sqlite_servers_give_the_same_answers(
    server: Server, redis_model_server: Server, stack: Stack
) -> None:
    rows = [
        {"customer_id": c, "ticket_text": text}
        for c, text in zip(
            known_entities(stack, 6),
            [
                "invoice 3 overdue",
                "parcel lost",
                "login fails",
                "payslip",
                "refund please",
                "order 9 missing",
            ],
            strict=True,
        )
    ]
    rows.append({"customer_id": 9_000_000_003, "ticket_text": "who is my manager"})
    sqlite = server.v1(rows)
    redis = redis_model_server.v1(rows)
    assert sqlite.status_code == redis.status_code == 200, (sqlite.text, redis.text)
    assert redis.json()["predictions"] == sqlite.json()["predictions"]
    assert [p["entity_found"] for p in redis.json()["predictions"]] == [True] * 6 + [False]
    with redis_model_server.client() as c:
        metrics = c.get("/metrics").text
    assert 'online_store="redis"' in metrics
    assert 'shipyard_feature_lookup_duration_seconds_count{store="redis"}' in metrics


def test_redis_down_is_503_and_the_server_recovers_by_itself(stack: Stack, tmp_path: Path) -> None:
    with contextlib.ExitStack() as cleanup:
        redis = RedisServer(tmp_path / "redis")
        redis.start()
        cleanup.callback(redis.stop)
        features = load_into_redis(stack, redis, tmp_path / "registry")
        server = start_server(
            stack, tmp_path / "srv", feature_store_yaml=features.yaml_name, env=features.env
        )
        cleanup.callback(server.stop)
        row = [{"customer_id": known_entities(stack, 1)[0], "ticket_text": "my card reader is out of stock"}]

        healthy = server.v1(row)
        assert healthy.status_code == 200, healthy.text

        redis.stop()
        down = server.v1(row)
        assert down.status_code == 503, down.text
        error = down.json()
        assert error["code"] == "feature_store_unavailable"
        assert error["field"] == "feature_store"
        assert "redis" in error["error"] and "Traceback" not in down.text and "127.0.0.1" not in down.text
        with server.client() as c:
            assert c.get("/v2/health/live").status_code == 200
            metrics = c.get("/metrics").text
        assert 'shipyard_feature_store_errors_total{store="redis"}' in metrics
        # Still down: every request keeps getting the same clear 503, never a 500 or a hang.
        assert [server.v1(row).json()["code"] for _ in range(3)] == ["feature_store_unavailable"] * 3

        redis.start()  # same port; the dataset was saved on shutdown and is loaded again
        deadline = time.monotonic() + 60
        recovered: httpx.Response | None = None
        while time.monotonic() < deadline:
            recovered = server.v1(row)
            if recovered.status_code == 200:
                break
            time.sleep(0.25)
        assert recovered is not None and recovered.status_code == 200, recovered and recovered.text
        assert recovered.json()["predictions"] == healthy.json()["predictions"]


def test_a_non_finite_value_in_redis_is_a_missing_value(
    stack: Stack, redis_features: RedisFeatures, redis_model_server: Server
) -> None:
    """Issue 8, item 5 on the deployed store: `inf` in a customer's Redis row is answered like the
    value missing (never a 5xx), for that row only."""
    import math

    from tests.integration.test_serving_online_values import write_customers

    bad, missing = 9_100_000_001, 9_100_000_002
    with environ(redis_features.env):
        write_customers(
            stack.repo,
            redis_features.yaml_name,
            {bad: {"days_since_last_payment": math.inf}, missing: {"days_since_last_payment": None}},
        )
    healthy = known_entities(stack, 1)[0]
    rows = [{"customer_id": c, "ticket_text": "refund for invoice 9"} for c in (bad, missing, healthy)]
    r = redis_model_server.v1(rows)
    assert r.status_code == 200, r.text
    bad_p, missing_p, healthy_p = (p["probabilities"] for p in r.json()["predictions"])
    assert bad_p == missing_p
    assert healthy_p == redis_model_server.v1(rows[2:]).json()["predictions"][0]["probabilities"]
