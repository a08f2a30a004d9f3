"""Where a request's feature vector comes from: the Feast online store plus the on-demand features.

The feature service a model version was trained on is resolved from the Feast registry at load
time, so the server reads exactly the views that training read. Its batch views are fetched from
the online store (SQLite locally, Redis when deployed: same code, the Feast config decides). Its
on-demand view `ticket_text` is computed in-process by `shipyard.features.text_features`, the
function that Feast's own on-demand view calls during training; running Feast's pandas wrapper
per request would cost ~10 ms for the same numbers. An on-demand view without an in-process twin
falls back to Feast's execution, so a new view is correct before it is fast. Sameness with the
offline vector is tested (tests/integration/test_serving_consistency.py), not assumed.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from serving.contract import Ticket
from serving.errors import FeatureStoreUnavailable
from shipyard.features import TEXT_FEATURES, text_features
from shipyard.schema import CATEGORICAL_FEATURES, ENTITY_KEY, NUMERIC_BATCH_FEATURES, TEXT
from shipyard.training import model_inputs

log = logging.getLogger("shipyard.serving")
CUSTOMER_FEATURES = (*CATEGORICAL_FEATURES, *NUMERIC_BATCH_FEATURES)

# On-demand views with an in-process twin: view name -> (function over texts, its output columns).
LOCAL_ON_DEMAND: dict[str, tuple[Callable[[Iterable[object]], dict[str, list[int]]], tuple[str, ...]]] = {
    "ticket_text": (text_features, TEXT_FEATURES),
}


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the online store did not answer", as opposed to a bug in our code."""
    errors: list[type[BaseException]] = [OSError, sqlite3.Error]
    try:
        from redis.exceptions import RedisError

        errors.append(RedisError)
    except ImportError:  # pragma: no cover - redis ships with feast[redis]
        pass
    return tuple(errors)


UNAVAILABLE = _unavailable_errors()
COOLDOWN_SECONDS = 1.0  # after a failed lookup, answer 503 at once for this long, then try again


def bound_redis_retries(store: Any) -> None:
    """Replace redis-py's default retry policy on Feast's Redis client with one quick retry.

    The default (3 retries, exponential backoff from 1 s) holds each request for 3-6 s while Redis
    is down, and with it the predict thread; a blip is covered by one retry, an outage by the
    cooldown in `FeastOnlineFeatures`. Feast has no setting for this, so it reaches into the
    provider; if Feast's internals move, the server keeps the default and says so.
    """
    try:
        from redis.backoff import ConstantBackoff
        from redis.retry import Retry

        online_store = store._get_provider().online_store
        client = online_store._get_client(store.config.online_store)
        client.set_retry(Retry(ConstantBackoff(0.05), 1))
    except (AttributeError, ImportError, TypeError) as exc:
        log.warning("could not bound Feast's Redis retries (%s); an outage will answer slowly", exc)


@dataclass
class FeatureBatch:
    """Model inputs for a batch, plus what monitoring needs to know about how they were found."""

    frame: pd.DataFrame  # exactly the columns and dtypes the trained pipeline reads
    customer_found: list[bool]
    lookup_seconds: float = 0.0
    raw: dict[str, list[Any]] = field(default_factory=dict)


class FeatureSource(Protocol):
    """Turns validated tickets into the model's input frame."""

    store_kind: str

    def assemble(self, tickets: Sequence[Ticket]) -> FeatureBatch: ...


def _frame(tickets: Sequence[Ticket], columns: dict[str, list[Any]]) -> pd.DataFrame:
    data: dict[str, list[Any]] = {TEXT: [t.ticket_text for t in tickets]}
    for name in (*CUSTOMER_FEATURES, *TEXT_FEATURES):
        data[name] = columns.get(name, [None] * len(tickets))
    return model_inputs(pd.DataFrame(data))


def _found(columns: dict[str, list[Any]], n: int) -> list[bool]:
    present = [columns.get(name, [None] * n) for name in CUSTOMER_FEATURES]
    return [any(col[i] is not None for col in present) for i in range(n)]


class FeastOnlineFeatures:
    """Feast online lookup for one feature service; thread-safe for concurrent lookups."""

    def __init__(self, repo: Path, yaml_name: str, feature_service: str) -> None:
        from shipyard.featurestore import open_store

        self.store = open_store(repo, yaml_name)
        self.service = self.store.get_feature_service(feature_service)
        on_demand = {v.name for v in self.store.list_on_demand_feature_views()}
        self.store_kind = str(self.store.config.online_store.type)
        if self.store_kind == "redis":
            bound_redis_retries(self.store)
        self._closed_until = 0.0  # monotonic time before which lookups fail fast
        self.refs: list[str] = []
        self.local: list[str] = []
        self.feast_on_demand = False
        for projection in self.service.feature_view_projections:
            names = [f.name for f in projection.features]
            view = projection.name_to_use()
            if projection.name in on_demand:
                twin = LOCAL_ON_DEMAND.get(projection.name)
                if twin is not None and set(names) <= set(twin[1]):
                    self.local.append(projection.name)
                    continue
                self.feast_on_demand = True
            self.refs.extend(f"{view}:{name}" for name in names)

    def online(self, tickets: Sequence[Ticket]) -> dict[str, list[Any]]:
        """The raw online response (batch features, and on-demand ones Feast computes itself)."""
        if time.monotonic() < self._closed_until:
            raise self._unavailable()
        rows: list[dict[str, Any]] = [{ENTITY_KEY: t.customer_id} for t in tickets]
        if self.feast_on_demand:
            rows = [{**r, TEXT: t.ticket_text} for r, t in zip(rows, tickets, strict=True)]
        try:
            result: dict[str, list[Any]] = self.store.get_online_features(
                features=self.refs, entity_rows=rows
            ).to_dict()
        except UNAVAILABLE as exc:
            log.warning("online feature store (%s) lookup failed: %s", self.store_kind, exc)
            self._closed_until = time.monotonic() + COOLDOWN_SECONDS
            raise self._unavailable() from exc
        return result

    def _unavailable(self) -> FeatureStoreUnavailable:
        return FeatureStoreUnavailable(
            f"the online feature store ({self.store_kind}) is unavailable; retry later",
            "feature_store",
            "available",
        )

    def assemble(self, tickets: Sequence[Ticket]) -> FeatureBatch:
        started = time.perf_counter()
        columns = self.online(tickets)
        lookup = time.perf_counter() - started
        texts = [t.ticket_text for t in tickets]
        for name in self.local:
            fn, _ = LOCAL_ON_DEMAND[name]
            columns.update(fn(texts))
        return FeatureBatch(_frame(tickets, columns), _found(columns, len(tickets)), lookup, columns)


class RequestOnlyFeatures:
    """No online lookup: customer features are missing (imputed as in training), text features local.

    For the benchmark's "server without Feast" baseline and for running with the store switched
    off on purpose; every customer is reported as not found, so the degradation is visible.
    """

    store_kind = "none"

    def assemble(self, tickets: Sequence[Ticket]) -> FeatureBatch:
        columns: dict[str, list[Any]] = dict(text_features([t.ticket_text for t in tickets]))
        return FeatureBatch(_frame(tickets, columns), [False] * len(tickets), 0.0, columns)
