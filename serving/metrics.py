"""Prometheus metrics of the model server, defined once per process on the default registry.

KServe's `/metrics` endpoint exposes the default registry, so these appear next to KServe's own
(`request_predict_seconds` ...) and the process collector's resource metrics. Label values are
always from a closed set (route templates, contract field names, labels, feature names): nothing a
caller sends can create a new time series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

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
MODEL_INFO = Info("shipyard_model", "The model version this server loaded.", ["model"])
MODEL_READY = Gauge("shipyard_model_ready", "1 when the model version is loaded and verified.", ["model"])
MODEL_AGE = Gauge(
    "shipyard_model_age_seconds", "Seconds since the served model version was trained.", ["model", "version"]
)
REQUEST_LOG = Counter(
    "shipyard_request_log_records_total",
    "Request log records by outcome: written to the sink, or dropped because the buffer was full.",
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
