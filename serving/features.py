"""Where a request's feature vector comes from: the Feast online store plus the on-demand features.

The feature service a model version was trained on is resolved from the Feast registry at load
time, so the server reads exactly the views that training read. Its batch views are fetched from
the online store (SQLite locally, Redis when deployed: same code, the Feast config decides). An
on-demand view whose project names an in-process twin (`ProjectSpec.on_demand`, recorded in the
version's contract) is computed by that function, the one Feast's own view calls during training;
running Feast's pandas wrapper per request would cost ~10 ms for the same numbers. An on-demand view
without a twin falls back to Feast's execution, so a new view is correct before it is fast. The
model's columns and their order come from the contract, never from code, and they are handed to
the scorer as arrays (serving.scoring.input_arrays): building a DataFrame per request cost more
than the lookup. The batcher calls `assemble` once per batch of merged requests, so the online
store is read once per batch. Sameness with the offline
vector is tested (tests/integration/test_serving_consistency.py), not assumed.

A looked-up value the model cannot take is a missing value, for that row only, never a 5xx: a
non-finite number (`inf` in a row of the online store made scikit-learn raise, and the whole batch
answered 500), a non-number where the contract says number, a category the model was not trained
on. It becomes None, which the model imputes exactly as it did in training (median / the 'missing'
category), and the row records which feature was replaced and why (`FeatureBatch.invalid`). Finite
numbers outside the training range are served as they are (counted as out of range): a range is
what training saw, not a rule, and entities keep ageing past it.
"""

from __future__ import annotations

import logging
import math
import numbers
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from serving.contract import RequestContract, Row
from serving.errors import FeatureStoreUnavailable
from serving.scoring import input_arrays, input_frame
from shipyard.project import import_callable
from shipyard.training import ModelInputs

log = logging.getLogger("shipyard.serving")
OnDemandTwin = Callable[[Mapping[str, Sequence[Any]]], Mapping[str, Sequence[Any]]]


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

    # The model's input columns as arrays, missing values already as the trained pipeline expects
    # them (serving.scoring.input_arrays); no DataFrame is built on the request path.
    arrays: dict[str, np.ndarray]
    entity_found: list[bool]
    lookup_seconds: float = 0.0
    raw: dict[str, list[Any]] = field(default_factory=dict)
    # Per row: feature -> why its value was replaced by a missing one ("non_finite", "type", ...).
    invalid: list[dict[str, str]] = field(default_factory=list)
    inputs: ModelInputs | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """The same inputs as the DataFrame training's `prepare` returns (tests, the benchmark)."""
        assert self.inputs is not None
        return input_frame(self.inputs, self.arrays)


class FeatureSource(Protocol):
    """Turns validated request rows into the model's input frame."""

    store_kind: str

    def assemble(self, rows: Sequence[Row]) -> FeatureBatch: ...


def _request_columns(rows: Sequence[Row], contract: RequestContract) -> dict[str, list[Any]]:
    return {name: [r.get(name) for r in rows] for name in contract.field_names}


def invalid_reason(value: Any, spec: Mapping[str, Any]) -> str | None:
    """Why the model cannot take `value` for a feature described by `spec` (the contract), or None."""
    if value is None:
        return None
    if "categories" in spec:
        return None if str(value) in spec["categories"] else "unknown_category"
    if spec.get("type") in ("integer", "number"):
        if isinstance(value, bool):
            return None
        if not isinstance(value, numbers.Real):
            return "type"
        number = float(value)
        if math.isnan(number):
            return None  # already a missing value: imputed, counted as missing, not flagged
        if not math.isfinite(number):
            return "non_finite"
    return None


def sanitize(
    columns: dict[str, list[Any]], contract: RequestContract, names: Iterable[str], n: int
) -> list[dict[str, str]]:
    """Replace, in place, the values of `names` the model cannot take by None; per row, which and why."""
    invalid: list[dict[str, str]] = [{} for _ in range(n)]
    for name in names:
        spec = contract.features.get(name)
        values = columns.get(name)
        if spec is None or values is None:
            continue
        reasons = [invalid_reason(v, spec) for v in values]
        if any(reasons):
            columns[name] = [None if reason else v for v, reason in zip(values, reasons, strict=True)]
            for i, reason in enumerate(reasons):
                if reason:
                    invalid[i][name] = reason
    return invalid


def _batch(
    contract: RequestContract,
    columns: dict[str, list[Any]],
    found: list[bool],
    lookup: float,
    invalid: list[dict[str, str]],
) -> FeatureBatch:
    arrays = input_arrays(contract.inputs, columns, len(found))
    return FeatureBatch(arrays, found, lookup, columns, invalid, contract.inputs)


def _twins(contract: RequestContract) -> dict[str, OnDemandTwin]:
    return {
        view: import_callable(path, f"on-demand twin of {view}") for view, path in contract.on_demand.items()
    }


class FeastOnlineFeatures:
    """Feast online lookup for one feature service; thread-safe for concurrent lookups."""

    def __init__(self, repo: Path, yaml_name: str, feature_service: str, contract: RequestContract) -> None:
        from shipyard.featurestore import open_store

        self.contract = contract
        self.store = open_store(repo, yaml_name)
        self.service = self.store.get_feature_service(feature_service)
        on_demand = {v.name for v in self.store.list_on_demand_feature_views()}
        self.store_kind = str(self.store.config.online_store.type)
        if self.store_kind == "redis":
            bound_redis_retries(self.store)
        self._closed_until = 0.0  # monotonic time before which lookups fail fast
        twins = _twins(contract)
        self.refs: list[str] = []
        self.batch_features: list[str] = []
        self.local: list[OnDemandTwin] = []
        self.feast_on_demand = False
        for projection in self.service.feature_view_projections:
            names = [f.name for f in projection.features]
            view = projection.name_to_use()
            if projection.name in on_demand:
                twin = twins.get(projection.name)
                if twin is not None:
                    self.local.append(twin)
                    continue
                self.feast_on_demand = True
            else:
                self.batch_features.extend(names)
            self.refs.extend(f"{view}:{name}" for name in names)

    def online(self, rows: Sequence[Row]) -> dict[str, list[Any]]:
        """The raw online response (batch features, and on-demand ones Feast computes itself)."""
        if time.monotonic() < self._closed_until:
            raise self._unavailable()
        key = self.contract.entity_key
        entity_rows: list[dict[str, Any]] = [{key: r[key]} for r in rows]
        if self.feast_on_demand:
            entity_rows = [
                {**r, **{k: v for k, v in row.items() if v is not None}}
                for r, row in zip(entity_rows, rows, strict=True)
            ]
        try:
            result: dict[str, list[Any]] = self.store.get_online_features(
                features=self.refs, entity_rows=entity_rows
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

    def assemble(self, rows: Sequence[Row]) -> FeatureBatch:
        started = time.perf_counter()
        columns = self.online(rows)
        lookup = time.perf_counter() - started
        request = _request_columns(rows, self.contract)
        for twin in self.local:
            columns.update({k: list(v) for k, v in twin(request).items()})
        columns = {**request, **columns}
        n = len(rows)
        present = [columns.get(name, [None] * n) for name in self.batch_features]
        found = [any(col[i] is not None for col in present) for i in range(n)]
        looked_up = [name for name in columns if name not in request]
        invalid = sanitize(columns, self.contract, looked_up, n)
        return _batch(self.contract, columns, found, lookup, invalid)


class RequestOnlyFeatures:
    """No online lookup: entity features are missing (imputed as in training), request ones local.

    For the benchmark's "server without Feast" baseline and for running with the store switched
    off on purpose; every entity is reported as not found, so the degradation is visible.
    """

    store_kind = "none"

    def __init__(self, contract: RequestContract) -> None:
        self.contract = contract
        self.local = list(_twins(contract).values())

    def assemble(self, rows: Sequence[Row]) -> FeatureBatch:
        columns = _request_columns(rows, self.contract)
        request = set(columns)
        for twin in self.local:
            columns.update({k: list(v) for k, v in twin(columns).items()})
        n = len(rows)
        invalid = sanitize(columns, self.contract, [c for c in columns if c not in request], n)
        return _batch(self.contract, columns, [False] * n, 0.0, invalid)
