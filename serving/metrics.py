"""Prometheus metrics of the model server, defined once per process on the default registry.

`GET /metrics` (answered by `exposition`, from the edge middleware) exposes the default registry,
so these appear next to KServe's own (`request_predict_seconds` ...) and the process collector's
resource metrics. Label values are always from a closed set (route templates, contract field
names, labels, feature names): nothing a caller sends can create a new time series.

With several worker processes (`--workers N`, serving.workers) every worker runs with
`PROMETHEUS_MULTIPROC_DIR` set to its supervisor's directory (and a server started alone never
does, whatever it inherited), so prometheus_client keeps its samples in files there and any
worker's `/metrics` reads all of them: counters and histograms are summed over the workers,
`shipyard_model_ready` is the minimum over the live ones (1 only when every worker is ready),
`shipyard_model_info` and `shipyard_model_age_seconds` the maximum. prometheus_client's `Info` and
callback gauges do not work across processes, so there the info is a gauge of value 1 with the
same labels (the same series), and the age is refreshed when a scrape arrives. The per-process
collectors (CPU, memory of one worker) are left out: summed across workers they would mislead.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client import exposition as _exposition

disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` series double the scrape size and nothing here reads them

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5)
PROBABILITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

REQUEST_SECONDS = Histogram(
    "shipyard_request_duration_seconds",
    "HTTP request latency, by protocol (v1, v2, other) and endpoint (route template).",
    ["protocol", "endpoint", "method"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "shipyard_requests_total",
    "HTTP requests by protocol, endpoint and status code.",
    ["protocol", "endpoint", "code"],
)
FEATURE_LOOKUP_SECONDS = Histogram(
    "shipyard_feature_lookup_duration_seconds",
    "Latency of one online feature store lookup (one per request batch).",
    ["store"],
    buckets=LATENCY_BUCKETS,
)
FEATURE_STORE_ERRORS = Counter(
    "shipyard_feature_store_errors_total",
    "Online feature store lookups that failed (answered 503).",
    ["store"],
)
PREDICTIONS = Counter(
    "shipyard_predictions_total",
    "Predicted rows by model version and predicted class.",
    ["model", "version", "label"],
)
PROBABILITY = Histogram(
    "shipyard_prediction_probability",
    "Distribution of the predicted probability of each class, per row.",
    ["model", "label"],
    buckets=PROBABILITY_BUCKETS,
)
FEATURE_MISSING = Counter(
    "shipyard_feature_missing_total",
    "Model input values that were missing or NaN before imputation, per feature.",
    ["feature"],
)
FEATURE_OUT_OF_RANGE = Counter(
    "shipyard_feature_out_of_range_total",
    "Looked-up feature values outside the training range or categories (served, not rejected).",
    ["feature"],
)
CONTRACT_VIOLATIONS = Counter(
    "shipyard_contract_violations_total",
    "Rejected requests by field (position stripped) and rule of the input contract.",
    ["field", "rule"],
)
ENTITY_NOT_FOUND = Counter(
    "shipyard_entity_not_found_total",
    "Rows whose entity has no features in the online store (served with imputed defaults).",
    ["model"],
)
BATCH_ROWS = Histogram(
    "shipyard_batch_rows",
    "Rows per scored batch (requests merged by the adaptive batcher: one feature lookup, one predict).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_REQUESTS = Histogram(
    "shipyard_batch_requests",
    "Prediction requests merged into one scored batch.",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
BATCH_WAIT_SECONDS = Histogram(
    "shipyard_batch_wait_seconds",
    "Time a prediction request waited in the batcher's queue for a predict thread or for its batch.",
    buckets=LATENCY_BUCKETS,
)
# Set by serving.workers' supervisor for its workers (and mirrored into PROMETHEUS_MULTIPROC_DIR by
# serving.workers.prepare_metrics_env before prometheus_client is imported).
METRICS_DIR = os.environ.get("SHIPYARD_METRICS_DIR") or None
MULTIPROCESS = METRICS_DIR is not None
INFO_LABELS = ("version", "content_hash", "project", "feature_service", "online_store", "trained_at")
MODEL_INFO: Any = (
    Gauge(
        "shipyard_model_info",
        "The model version this server loaded (value 1).",
        ["model", *INFO_LABELS],
        multiprocess_mode="livemax",
    )
    if MULTIPROCESS
    else Info("shipyard_model", "The model version this server loaded.", ["model"])
)
MODEL_READY = Gauge(
    "shipyard_model_ready",
    "1 when the model version is loaded and verified (in every worker).",
    ["model"],
    multiprocess_mode="livemin",
)
MODEL_AGE = Gauge(
    "shipyard_model_age_seconds",
    "Seconds since the served model version was trained.",
    ["model", "version"],
    multiprocess_mode="livemax",
)
_age_of: dict[tuple[str, str], float] = {}  # (model, version) -> trained at (unix time)


def set_model_info(model: str, info: dict[str, str]) -> None:
    if MULTIPROCESS:
        MODEL_INFO.labels(model, *(info.get(k, "") for k in INFO_LABELS)).set(1)
    else:
        MODEL_INFO.labels(model).info(info)


def set_model_age(model: str, version: str, trained_at: float) -> None:
    """The age gauge counts from `trained_at` (computed at scrape time, in every mode)."""
    if MULTIPROCESS:
        _age_of[(model, version)] = trained_at
        MODEL_AGE.labels(model, version).set(time.time() - trained_at)
    else:
        MODEL_AGE.labels(model, version).set_function(lambda: time.time() - trained_at)


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The scrape body and its content type (OpenMetrics or the text format, as the client asks)."""
    encoder, content_type = _exposition.choose_encoder(accept or "")
    if not MULTIPROCESS:
        return encoder(REGISTRY), content_type
    from prometheus_client import multiprocess

    for (model, version), trained_at in _age_of.items():
        MODEL_AGE.labels(model, version).set(time.time() - trained_at)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=METRICS_DIR)  # type: ignore[no-untyped-call]
    return encoder(registry), content_type


REQUEST_LOG = Counter(
    "shipyard_request_log_records_total",
    "Request log records by outcome: written to the sink, or dropped because the buffer was full.",
    ["outcome"],
)


REQUEST_LOG_UPLOADS = Counter(
    "shipyard_request_log_uploads_total",
    "Closed request log files copied to object storage (uploaded), or left in the spool for the next "
    "round because the copy failed (failed).",
    ["outcome"],
)


_ENVELOPE_FIELDS = frozenset({"instances", "inputs", "outputs", "body", "content-type", "name"})
_known_fields: frozenset[str] = _ENVELOPE_FIELDS


def set_contract_fields(names: tuple[str, ...]) -> None:
    """The served version's request fields become the allowed label values of the violations counter."""
    global _known_fields
    _known_fields = _ENVELOPE_FIELDS | frozenset(names)


def contract_field(field: str | None) -> str:
    """`instances[3].amount` -> `amount`: bounded label values for the violations counter."""
    if not field:
        return "body"
    last = field.split(".")[-1].split("[")[0]
    return last if last in _known_fields else "other"
