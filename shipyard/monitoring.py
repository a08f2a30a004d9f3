"""Monitoring a served model version: data quality, drift, fresh-label accuracy and age -> a decision.

Inputs, all data: a window of the model server's request log (JSON lines, one record per prediction
request; `read_request_log`), the labels that have arrived since (the project's events table, joined
by its event id, which requests carry as an optional pass-through field), and the served version's
own files (`input_contract.json`, `reference_stats.json`, `evaluation.json`, `card.json`,
`version.json`). Nothing here knows a use case: features, labels and text fields come from the
version's contract.

Signals (each thresholded by `shipyard.settings.MonitoringSettings`):

* data quality: requests the input contract rejected (4xx, by field and rule), missing values per
  feature (among rows whose entity was found) against the training rate, entities not found;
* drift per model input against the training reference: the population stability index (PSI) on the
  stored decile bins, plus a test: Kolmogorov-Smirnov for numbers (against the reference distribution
  rebuilt from 201 stored quantiles; versions stored before quantiles get PSI only, and say so),
  chi-square for categories; for text fields the length distribution and the out-of-vocabulary rate;
  the served class shares against the shares the version predicted on its own holdout;
* accuracy, macro-F1 and per-label metrics on requests whose label has arrived, against the
  version's evaluation; model age against a policy; training accuracy and time from the card.

The decision is the most severe reason: `retrain` (a feature drifted past `psi_retrain`, accuracy fell
past `accuracy_drop_retrain`, the model is older than `max_age_days`), `warn` (smaller drift, data
quality problems, prediction shift, text signals, smaller accuracy, macro-F1 or per-label F1 drops,
no traffic) or `healthy`. Drift and drops count only when their test rejects at `alpha` (drift: split
over the features tested; per-label F1: over the labels), so a small or noisy window does not raise
alarms on chance alone; and a large window does not alarm on a negligible shift, because the effect
size (PSI, points of accuracy or F1) must pass its threshold too. Too few rows (`min_rows`) or labels
(`min_labelled`) are said, not judged.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from shipyard.artifacts import CARD_JSON, CONTRACT_FILE, EVALUATION_FILE, REFERENCE_FILE, read_json
from shipyard.errors import SourceDataError
from shipyard.retraining import Retraining
from shipyard.settings import MonitoringSettings
from shipyard.storage import store_for

__all__ = [
    "Decision",
    "FeatureDrift",
    "MonitoringSummary",
    "Reason",
    "VersionFacts",
    "WindowSummary",
    "assess",
    "collect_window",
    "psi",
    "read_request_log",
]

Decision = Literal["healthy", "warn", "retrain"]
Severity = Literal["info", "warn", "retrain"]
SEVERITY_ORDER: Mapping[str, int] = {"info": 0, "healthy": 0, "warn": 1, "retrain": 2}

# Columns of the window frame that are not the project's (request fields and features keep their names).
REQUEST_ID = "_request_id"
RECEIVED_AT = "_received_at"
MODEL_VERSION = "_model_version"
ENTITY_FOUND = "_entity_found"
PREDICTION = "_prediction"
TRUNCATED = "_truncated"
LABEL = "_label"
PROBABILITY_PREFIX = "_p:"
HASHED_TEXT_PREFIX = "sha256:"
_MISSING_TOKENS = frozenset({"nan", "None", "<NA>", "NaT", ""})
_LOG_DAY = re.compile(r"requests-(\d{8})-")
_PSI_FLOOR = 1e-4
MIN_LABEL_SUPPORT = 20  # fewer fresh labels of a class than this: its own F1 is not judged


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- reading the request log ------------------------------------------------------------------------
def parse_time(value: str | datetime, field: str = "time") -> datetime:
    """An aware UTC datetime from an ISO 8601 string (a naive one is taken as UTC)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise SourceDataError(f"{field}: {value!r} is not an ISO 8601 date or date-time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class LogRead:
    records: list[dict[str, Any]]
    files: int
    skipped_lines: int


def _log_lines(uri: str, start: datetime, end: datetime) -> Iterator[tuple[str, bytes]]:
    """(file key, contents) of the log files that can hold records received in [start, end).

    Through `shipyard.storage`, so a directory, file:// and s3:// read alike. Files are named by the
    UTC day they were written (`requests-<YYYYMMDD>-<pid>...jsonl`); a record is written up to a flush
    interval after it was received, so the day after `end` is read too. Other `.jsonl` names are read
    whole and filtered by time.
    """
    store = store_for(uri)
    first, last = start.date(), (end + timedelta(days=1)).date()
    for key in store.list(""):
        if not key.endswith(".jsonl"):
            continue
        match = _LOG_DAY.search(key.rsplit("/", 1)[-1])
        if match:
            day = datetime.strptime(match.group(1), "%Y%m%d").date()
            if day < first or day > last:
                continue
        data = store.read_bytes(key)
        if data is not None:
            yield key, data


def read_request_log(uri: str, start: datetime, end: datetime) -> LogRead:
    """Records received in [start, end), oldest first; torn or foreign lines are counted, not fatal."""
    records: list[tuple[datetime, dict[str, Any]]] = []
    files = skipped = 0
    for _key, data in _log_lines(uri, start, end):
        files += 1
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                received = parse_time(str(record["received_at"]))
            except (ValueError, KeyError, TypeError, SourceDataError):
                skipped += 1  # a server killed mid-write leaves at most one torn line per file
                continue
            if start <= received < end:
                records.append((received, record))
    records.sort(key=lambda r: r[0])
    return LogRead([r for _, r in records], files, skipped)


# -- the window: served rows of one version, with the labels that arrived --------------------------
class Rejection(_Model):
    """Requests rejected with one status, code, field (position stripped) and rule."""

    status: int
    code: str
    field: str
    rule: str
    count: int


class WindowSummary(_Model):
    """What `collect_window` found; travels with the window's rows to the assessment."""

    start: str
    end: str
    labels_as_of: str
    log: str
    files: int
    skipped_lines: int
    requests: int  # prediction requests received in the window (any version, any status)
    rows: int  # served rows of the monitored version
    rows_other_versions: dict[str, int]
    rejected: list[Rejection]
    server_errors: int  # 5xx: not the caller's fault, but not served either
    event_id: str | None  # the request field that carries the event id, when the project logs one
    labelled: int
    label_pending: int  # rows with an event id whose label has not arrived (or is unknown)
    without_event_id: int
    # When the served rows' events happened (the events table's timestamp, joined by event id):
    # None when the log carries no event ids or the table has no timestamp.
    events_from: str | None = None
    events_to: str | None = None

    @property
    def rejected_requests(self) -> int:
        return sum(r.count for r in self.rejected)


# Outcomes that say nothing about the inputs or the model: a client that went away (499), one too
# slow to send its request (408), and requests turned away while the server drained on shutdown.
NOT_JUDGED = frozenset({"client_disconnected", "request_timeout", "shutting_down"})


def _field_name(field: object) -> str:
    """`instances[3].amount` -> `amount`; the position in a batch says nothing about the data."""
    if not field:
        return "body"
    return str(field).split(".")[-1].split("[")[0] or "body"


def window_frame(
    records: Sequence[Mapping[str, Any]], versions: Iterable[str]
) -> tuple[pd.DataFrame, dict[str, int], list[Rejection], int]:
    """One row per served row of `versions` (request fields, features, prediction, probabilities);
    served rows of other versions by version; rejected requests by (status, code, field, rule); 5xx."""
    wanted = set(versions)
    rows: list[dict[str, Any]] = []
    others: Counter[str] = Counter()
    rejected: Counter[tuple[int, str, str, str]] = Counter()
    server_errors = 0
    for record in records:
        status = int(record.get("status") or 0)
        error = record.get("error") or {}
        if str(error.get("code", "")) in NOT_JUDGED:
            continue  # the client left, timed out, or the server was draining: nobody's input was bad
        if status >= 500:
            server_errors += 1
            continue
        if status >= 400:
            key = (
                status,
                str(error.get("code", "")),
                _field_name(error.get("field")),
                str(error.get("rule", "")),
            )
            rejected[key] += 1
            continue
        version = str(record.get("model_version"))
        served = record.get("rows") or []
        if version not in wanted:
            others[version] += len(served)
            continue
        for row in served:
            flat: dict[str, Any] = {
                REQUEST_ID: record.get("request_id"),
                RECEIVED_AT: record.get("received_at"),
                MODEL_VERSION: version,
                TRUNCATED: bool(record.get("truncated", False)),
            }
            for key, value in row.items():
                if key == "features":
                    flat.update(value or {})
                elif key == "probabilities":
                    flat.update({f"{PROBABILITY_PREFIX}{k}": v for k, v in (value or {}).items()})
                elif key == "prediction":
                    flat[PREDICTION] = value
                elif key == "entity_found":
                    flat[ENTITY_FOUND] = bool(value)
                else:
                    flat[key] = value
            rows.append(flat)
    listed = [Rejection(status=s, code=c, field=f, rule=r, count=n) for (s, c, f, r), n in rejected.items()]
    listed.sort(key=lambda r: (-r.count, r.field, r.rule))
    return pd.DataFrame(rows), dict(others), listed, server_errors


def join_labels(
    frame: pd.DataFrame,
    events: pd.DataFrame,
    event_id: str,
    label: str,
    available_at: str | None,
    as_of: datetime,
) -> pd.DataFrame:
    """`frame` with `_label`: the event's label where it had arrived by `as_of`, else missing.

    Joined on the event id's text, so an id logged as a JSON number matches an int64 column.
    """
    out = frame.copy()
    if frame.empty or event_id not in frame:
        out[LABEL] = pd.Series([None] * len(frame), dtype=object)
        return out
    known = events[[event_id, label] + ([available_at] if available_at else [])].dropna(subset=[label])
    if available_at:
        arrived = pd.to_datetime(known[available_at], utc=True) <= pd.Timestamp(as_of)
        known = known[arrived.to_numpy()]
    labels = dict(zip(known[event_id].astype(str), known[label].astype(str), strict=True))
    ids = frame[event_id]
    out[LABEL] = [labels.get(str(v)) if v is not None and not _is_nan(v) else None for v in ids]
    return out


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def event_span(
    frame: pd.DataFrame, events: pd.DataFrame, event_id: str, timestamp: str
) -> tuple[str | None, str | None]:
    """The first and last event time of the served rows found in `events` (ISO 8601, UTC)."""
    if frame.empty or event_id not in frame or timestamp not in events:
        return None, None
    served = set(frame[event_id].dropna().astype(str))
    times = pd.to_datetime(events.loc[events[event_id].astype(str).isin(served), timestamp], utc=True)
    times = times.dropna()
    if times.empty:
        return None, None
    return times.min().isoformat(), times.max().isoformat()


def collect_window(
    log_uri: str,
    start: datetime,
    end: datetime,
    versions: Iterable[str],
    events: pd.DataFrame | None,
    event_id: str | None,
    label: str,
    available_at: str | None,
    labels_as_of: datetime,
    timestamp: str | None = None,
) -> tuple[pd.DataFrame, WindowSummary]:
    """Read the window, keep the monitored version's rows, join the labels that have arrived, and
    note when the served rows' events happened (`timestamp`, the events table's time column)."""
    read = read_request_log(log_uri, start, end)
    frame, others, rejected, server_errors = window_frame(read.records, versions)
    logged_id = event_id if event_id is not None and (frame.empty or event_id in frame) else None
    events_from = events_to = None
    if events is not None and logged_id is not None:
        if timestamp is not None:
            events_from, events_to = event_span(frame, events, logged_id, timestamp)
        frame = join_labels(frame, events, logged_id, label, available_at, labels_as_of)
    else:
        frame[LABEL] = pd.Series([None] * len(frame), dtype=object)
    has_id = (
        frame[logged_id].notna() if logged_id and not frame.empty else pd.Series(False, index=frame.index)
    )
    labelled = int(frame[LABEL].notna().sum()) if not frame.empty else 0
    summary = WindowSummary(
        start=start.isoformat(),
        end=end.isoformat(),
        labels_as_of=labels_as_of.isoformat(),
        log=log_uri,
        files=read.files,
        skipped_lines=read.skipped_lines,
        requests=len(read.records),
        rows=len(frame),
        rows_other_versions=others,
        rejected=rejected,
        server_errors=server_errors,
        event_id=logged_id,
        labelled=labelled,
        label_pending=int(has_id.sum()) - labelled,
        without_event_id=int((~has_id).sum()),
        events_from=events_from,
        events_to=events_to,
    )
    return frame, summary


# -- the served version ---------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionFacts:
    """What monitoring needs from a (verified) version directory."""

    version: str
    meta: dict[str, Any]
    contract: dict[str, Any]
    reference: dict[str, Any]
    evaluation: dict[str, Any]
    card: dict[str, Any]

    @classmethod
    def load(cls, directory: Path, version: str) -> VersionFacts:
        return cls(
            version=version,
            meta=read_json(directory, "version.json"),
            contract=read_json(directory, CONTRACT_FILE),
            reference=read_json(directory, REFERENCE_FILE),
            evaluation=read_json(directory, EVALUATION_FILE),
            card=read_json(directory, CARD_JSON),
        )

    @property
    def content_hash(self) -> str:
        return str(self.meta.get("content_hash", ""))

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.contract["labels"]]

    @property
    def served_names(self) -> set[str]:
        """How the server labels this version in its answers and log: the label, or the hash prefix."""
        return {self.version, self.content_hash[:12]} - {""}


# -- statistics -----------------------------------------------------------------------------------
def psi(expected: Sequence[float], actual: Sequence[float], floor: float = _PSI_FLOOR) -> float:
    """Population stability index of two share vectors over the same bins (empty bins floored)."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def binned_shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Shares of `values` in the reference's bins; values outside the training range land in the
    first or last bin (as training's extremes did). One edge: a constant feature, [same, other]."""
    if values.size == 0:
        return [0.0] * max(len(edges) - 1, 1)
    if len(edges) < 2:
        same = float(np.mean(values == edges[0])) if edges else 0.0
        return [same, 1.0 - same]
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=np.asarray(edges))
    return [float(c) / values.size for c in counts]


def ks_against_quantiles(
    values: np.ndarray, quantiles: Sequence[float] | np.ndarray, reference_rows: int
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value of `values` against the reference
    distribution rebuilt from its quantiles (equally weighted points, ties handled exactly).

    The rebuilt CDF is within 1/len(quantiles) of the training one, so that much is taken off the
    statistic before the p-value (conservative); the reference's own size enters the effective n.
    """
    x = np.sort(values)
    q = np.sort(np.asarray(quantiles, dtype=float))
    points = np.union1d(x, q)
    served = np.searchsorted(x, points, side="right") / x.size
    ref = np.searchsorted(q, points, side="right") / q.size
    statistic = float(np.max(np.abs(served - ref)))
    adjusted = max(0.0, statistic - 1.0 / q.size)
    n, m = x.size, max(reference_rows, q.size)
    effective = max(1, round(n * m / (n + m)))
    return statistic, float(sps.kstwo.sf(adjusted, effective)) if adjusted > 0 else 1.0


def _chi_square(observed: Mapping[str, float], reference: Mapping[str, float]) -> tuple[float, float] | None:
    """Chi-square test of homogeneity: served counts vs reference counts over the same categories;
    categories rare in both (< 5) are pooled. None when fewer than two categories remain."""
    keys = sorted(set(observed) | set(reference))
    pooled_obs, pooled_ref = 0.0, 0.0
    obs, ref = [], []
    for key in keys:
        o, r = float(observed.get(key, 0.0)), float(reference.get(key, 0.0))
        if o < 5 and r < 5:
            pooled_obs, pooled_ref = pooled_obs + o, pooled_ref + r
        else:
            obs.append(o)
            ref.append(r)
    if pooled_obs + pooled_ref > 0:
        obs.append(pooled_obs)
        ref.append(pooled_ref)
    table = np.array([obs, ref])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or min(table.sum(axis=1)) == 0:
        return None
    result = sps.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


# -- the summary ----------------------------------------------------------------------------------
class Reason(_Model):
    severity: Severity
    signal: str  # traffic | data_quality | drift | text | prediction | accuracy | age
    message: str


class FeatureDrift(_Model):
    feature: str
    kind: str  # numeric | categorical | text_length
    rows: int
    psi: float | None
    test: str | None  # ks | chi2 | None (old reference: PSI only)
    statistic: float | None
    p_value: float | None
    drifted: bool
    severity: Severity
    reference: dict[str, Any]  # bins/shares to plot
    served: dict[str, Any]
    note: str = ""


class TextSignal(_Model):
    field: str
    rows: int
    length_mean: float | None
    reference_length_mean: float | None
    oov_rate: float | None
    reference_oov_rate: float | None
    note: str = ""


class MissingRate(_Model):
    feature: str
    served: float
    reference: float


class DataQuality(_Model):
    violation_rate: float
    rejected: list[Rejection]
    server_errors: int
    entity_not_found_rate: float | None
    missing: list[MissingRate]


class PredictionShift(_Model):
    served: dict[str, float]
    reference: dict[str, float]  # shares the version predicted on its own holdout
    training_labels: dict[str, float]
    psi: float | None
    p_value: float | None


class Performance(_Model):
    labelled: int
    accuracy: float | None
    macro_f1: float | None
    per_label: dict[str, dict[str, float]]
    reference_accuracy: float
    reference_macro_f1: float
    reference_per_label: dict[str, dict[str, float]]
    reference_rows: int
    accuracy_drop: float | None
    macro_f1_drop: float | None
    p_value: float | None  # one-sided: served accuracy below the evaluation's
    macro_f1_p_value: float | None = None  # one-sided, from a bootstrap standard error
    per_label_p_values: dict[str, float] = {}  # one-sided F1 drop per label, likewise


class ModelFacts(_Model):
    version: str
    content_hash: str
    project: str
    name: str
    created_at: str
    age_days: float | None
    training_accuracy: float
    training_macro_f1: float
    training_seconds: float | None
    training_rows: dict[str, int]
    reference_version: int


class MonitoringSummary(_Model):
    """The machine-readable result of one monitoring run (the report renders this)."""

    decision: Decision
    reasons: list[Reason]
    model: ModelFacts
    window: WindowSummary
    data_quality: DataQuality
    drift: list[FeatureDrift]
    text: list[TextSignal]
    prediction: PredictionShift
    performance: Performance
    thresholds: dict[str, Any]
    generated_at: str
    # Set by `shipyard monitor run --retrain` after the decision (the pipeline's step leaves it out).
    retrain: Retraining | None = None

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [d for d in self.drift if d.drifted]


# -- the assessment ---------------------------------------------------------------------------------
def _values(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame[column]


def _numeric_drift(
    name: str, kind: str, values: np.ndarray, ref: Mapping[str, Any], prefix: str, reference_rows: int
) -> FeatureDrift:
    edges = list(ref.get(f"{prefix}bin_edges") or [])
    ref_shares = list(ref.get(f"{prefix}bin_shares") or [])
    quantiles = list(ref.get(f"{prefix}quantiles") or [])
    served = binned_shares(values, edges)
    if len(edges) < 2:
        ref_shares = [1.0, 0.0]
    value = psi(ref_shares, served) if values.size and ref_shares else None
    note = ""
    test = statistic = p_value = None
    if quantiles and values.size:
        test = "ks"
        statistic, p_value = ks_against_quantiles(values, quantiles, reference_rows)
    elif values.size:
        note = "reference stored without quantiles (older version): PSI only, no KS test"
    return FeatureDrift(
        feature=name,
        kind=kind,
        rows=int(values.size),
        psi=value,
        test=test,
        statistic=statistic,
        p_value=p_value,
        drifted=False,
        severity="info",
        reference={"bin_edges": edges, "shares": ref_shares},
        served={"shares": served, "mean": float(values.mean()) if values.size else None},
        note=note,
    )


def _categorical_drift(
    name: str, values: pd.Series, ref: Mapping[str, Any], reference_rows: int
) -> FeatureDrift:
    shares = {k: float(v) for k, v in (ref.get("shares") or {}).items() if k not in _MISSING_TOKENS}
    total = sum(shares.values()) or 1.0
    shares = {k: v / total for k, v in shares.items()}
    present = [str(v) for v in values if v is not None and not _is_nan(v)]
    counts = Counter(present)
    n = len(present)
    keys = sorted(set(shares) | set(counts))
    served = {k: counts.get(k, 0) / n for k in keys} if n else {}
    value = psi([shares.get(k, 0.0) for k in keys], [served[k] for k in keys]) if n else None
    tested = _chi_square(counts, {k: v * reference_rows for k, v in shares.items()}) if n else None
    new = sorted(set(counts) - set(shares))
    return FeatureDrift(
        feature=name,
        kind="categorical",
        rows=n,
        psi=value,
        test="chi2" if tested else None,
        statistic=tested[0] if tested else None,
        p_value=tested[1] if tested else None,
        drifted=False,
        severity="info",
        reference={"shares": shares},
        served={"shares": served},
        note=f"categories unseen in training: {', '.join(new[:5])}" if new else "",
    )


def _text_values(frame: pd.DataFrame, column: str) -> tuple[list[str], str]:
    """Texts usable for length and vocabulary: not hashed in the log, not truncated by it."""
    raw = _values(frame, column)
    truncated = frame[TRUNCATED] if TRUNCATED in frame else pd.Series(False, index=frame.index)
    texts, hashed, cut = [], 0, 0
    for value, was_cut in zip(raw, truncated, strict=True):
        if value is None or _is_nan(value):
            continue
        text = str(value)
        if text.startswith(HASHED_TEXT_PREFIX):
            hashed += 1
        elif was_cut:
            cut += 1
        else:
            texts.append(text)
    notes = []
    if hashed:
        notes.append(f"{hashed} texts logged as sha256 (length and vocabulary not measurable)")
    if cut:
        notes.append(f"{cut} texts in truncated log records left out")
    return texts, "; ".join(notes)


def _text_signal(
    name: str, texts: list[str], ref: Mapping[str, Any], reference_rows: int, note: str
) -> tuple[TextSignal, FeatureDrift | None]:
    lengths = np.array([len(t) for t in texts], dtype=float)
    drift = None
    if lengths.size and ref.get("length_bin_edges"):
        drift = _numeric_drift(f"{name} (length)", "text_length", lengths, ref, "length_", reference_rows)
    elif lengths.size:
        note = "; ".join(x for x in (note, "reference has no length bins (older version): mean only") if x)
    from shipyard.contract import tokens  # imports the ML stack; only text fields need it

    vocabulary = ref.get("vocabulary")
    oov = None
    if vocabulary is not None and texts:
        vocab = set(vocabulary)
        words = [w for t in texts for w in tokens(t)]
        oov = sum(w not in vocab for w in words) / len(words) if words else 0.0
    elif texts:
        note = "; ".join(x for x in (note, "reference has no vocabulary (older version): no OOV rate") if x)
    signal = TextSignal(
        field=name,
        rows=len(texts),
        length_mean=float(lengths.mean()) if lengths.size else None,
        reference_length_mean=ref.get("length_mean"),
        oov_rate=oov,
        reference_oov_rate=ref.get("oov_rate"),
        note=note,
    )
    return signal, drift


def _judge_drift(drift: list[FeatureDrift], cfg: MonitoringSettings) -> None:
    """Mark drifted features: PSI past its threshold and (where a test ran) the test rejecting at
    alpha split over the features tested (Bonferroni)."""
    tested = sum(d.p_value is not None for d in drift)
    level = cfg.alpha / max(tested, 1)
    for d in drift:
        if d.psi is None:
            continue
        significant = d.p_value is None or d.p_value < level
        if significant and d.psi >= cfg.psi_warn:
            d.drifted = True
            d.severity = "retrain" if d.psi >= cfg.psi_retrain else "warn"
        elif d.psi >= cfg.psi_warn and d.test:
            shown = f"{d.test.upper()} p={_fmt_p(d.p_value)}"
            note = f"PSI past {cfg.psi_warn:g}, but {shown} is not significant at {cfg.alpha:g}/{tested}"
            d.note = "; ".join(x for x in (d.note, note) if x)


def _prediction_shift(frame: pd.DataFrame, facts: VersionFacts, cfg: MonitoringSettings) -> PredictionShift:
    labels = facts.labels
    candidate = facts.evaluation["candidate"]
    confusion = np.asarray(candidate.get("confusion") or [], dtype=float)
    if confusion.size:
        predicted = confusion.sum(axis=0)
        reference = {label: float(predicted[i] / max(predicted.sum(), 1)) for i, label in enumerate(labels)}
        ref_rows = int(predicted.sum())
    else:  # no confusion matrix: fall back to the training label shares
        reference = {label: float(facts.reference.get("labels", {}).get(label, 0.0)) for label in labels}
        ref_rows = int(facts.evaluation.get("test_rows", 0))
    counts = Counter(str(p) for p in _values(frame, PREDICTION) if p is not None)
    n = sum(counts.values())
    served = {label: counts.get(label, 0) / n for label in labels} if n else {}
    value = psi([reference[k] for k in labels], [served[k] for k in labels]) if n else None
    tested = _chi_square(counts, {k: v * ref_rows for k, v in reference.items()}) if n and ref_rows else None
    return PredictionShift(
        served=served,
        reference=reference,
        training_labels={k: float(v) for k, v in facts.reference.get("labels", {}).items()},
        psi=value,
        p_value=tested[1] if tested else None,
    )


def _performance(frame: pd.DataFrame, facts: VersionFacts) -> Performance:
    from shipyard.evaluation import score  # scikit-learn: imported only when labels are judged

    labels = facts.labels
    candidate = facts.evaluation["candidate"]
    ref_rows = int(facts.evaluation.get("test_rows", 0))
    ref_acc, ref_f1 = float(candidate["accuracy"]), float(candidate["macro_f1"])
    ref_per_label = {
        k: {m: float(v) for m, v in d.items()} for k, d in candidate.get("per_label", {}).items()
    }
    labelled = frame[frame[LABEL].notna()] if LABEL in frame and not frame.empty else frame.iloc[0:0]
    n = len(labelled)
    if n == 0:
        return Performance(
            labelled=0,
            accuracy=None,
            macro_f1=None,
            per_label={},
            reference_accuracy=ref_acc,
            reference_macro_f1=ref_f1,
            reference_per_label=ref_per_label,
            reference_rows=ref_rows,
            accuracy_drop=None,
            macro_f1_drop=None,
            p_value=None,
        )
    y_true = labelled[LABEL].astype(str).to_numpy()
    y_pred = labelled[PREDICTION].astype(str).to_numpy()
    # The very scores evaluation computed on the holdout, so the two are comparable by construction.
    scores = score(y_true, y_pred, list(labels))
    accuracy, macro_f1 = scores.accuracy, scores.macro_f1
    per_label = {label: {k: float(v) for k, v in m.items()} for label, m in scores.per_label.items()}
    # One-sided two-proportion z-test: is served accuracy below the holdout's (both are samples)?
    p_value = None
    if ref_rows:
        pooled = (accuracy * n + ref_acc * ref_rows) / (n + ref_rows)
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n + 1 / ref_rows))
        p_value = float(sps.norm.sf((ref_acc - accuracy) / se))
    # Macro-F1 and per-label F1 drops, one-sided, with bootstrap standard errors of the served
    # values widened for the evaluation's own sampling error (both are samples).
    f1_p = None
    label_p: dict[str, float] = {}
    if ref_rows:
        macro_se, label_se = _f1_bootstrap_se(y_true, y_pred, labels)
        f1_p = float(sps.norm.sf((ref_f1 - macro_f1) / max(macro_se * math.sqrt(1 + n / ref_rows), 1e-9)))
        for i, label in enumerate(labels):
            ref = ref_per_label.get(label)
            served_support = per_label[label]["support"]
            if ref is None or not ref.get("support") or not served_support:
                continue
            se = label_se[i] * math.sqrt(1 + served_support / ref["support"])
            label_p[label] = float(sps.norm.sf((ref["f1"] - per_label[label]["f1"]) / max(se, 1e-9)))
    return Performance(
        labelled=n,
        accuracy=accuracy,
        macro_f1=macro_f1,
        per_label=per_label,
        reference_accuracy=ref_acc,
        reference_macro_f1=ref_f1,
        reference_per_label=ref_per_label,
        reference_rows=ref_rows,
        accuracy_drop=ref_acc - accuracy,
        macro_f1_drop=ref_f1 - macro_f1,
        p_value=p_value,
        macro_f1_p_value=f1_p,
        per_label_p_values=label_p,
    )


def _f1_bootstrap_se(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], rounds: int = 200
) -> tuple[float, np.ndarray]:
    """Bootstrap standard errors of macro-F1 and of each label's F1 (seeded: a window always gets the
    same answer)."""
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    t = np.array([index.get(v, k) for v in y_true])
    p = np.array([index.get(v, k) for v in y_pred])
    rng = np.random.default_rng(0)
    values = np.empty((rounds, k))
    for r in range(rounds):
        pick = rng.integers(0, t.size, t.size)
        confusion = np.bincount(t[pick] * (k + 1) + p[pick], minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
        tp = np.diag(confusion)[:k].astype(float)
        denominator = confusion[:k, :].sum(axis=1) + confusion[:, :k].sum(axis=0)
        values[r] = np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)
    return float(np.std(values.mean(axis=1))), values.std(axis=0)


def _model_facts(facts: VersionFacts, as_of: datetime) -> ModelFacts:
    created = str(facts.meta.get("created_at", ""))
    age = (as_of - parse_time(created)).total_seconds() / 86_400 if created else None
    card = facts.card
    candidate = card.get("evaluation", {}).get("candidate", facts.evaluation["candidate"])
    seconds = card.get("training", {}).get("seconds")
    return ModelFacts(
        version=facts.version,
        content_hash=facts.content_hash,
        project=str(facts.meta.get("project", "")),
        name=str(facts.meta.get("name", facts.contract.get("model_name", ""))),
        created_at=created,
        age_days=age,
        training_accuracy=float(candidate["accuracy"]),
        training_macro_f1=float(candidate["macro_f1"]),
        training_seconds=float(seconds) if seconds is not None else None,
        training_rows={k: int(v) for k, v in card.get("data", {}).get("rows", {}).items()},
        reference_version=int(facts.reference.get("version", 1)),
    )


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.1e}" if p < 0.001 else f"{p:.3f}")


def assess(
    frame: pd.DataFrame,
    window: WindowSummary,
    facts: VersionFacts,
    cfg: MonitoringSettings,
    as_of: datetime | None = None,
) -> MonitoringSummary:
    """Every signal for the window, and the decision with its reasons (see the module docstring)."""
    as_of = as_of or parse_time(window.end)
    reasons: list[Reason] = []
    inputs = facts.contract["inputs"]
    ref_features: Mapping[str, Any] = facts.reference.get("features", {})
    ref_rows = int(facts.reference.get("rows", 0))
    n = len(frame)

    # Traffic.
    if n == 0:
        reasons.append(
            Reason(
                severity="warn",
                signal="traffic",
                message=f"no rows served by {facts.version} in the window ({window.requests} requests "
                "logged in all): is the model receiving traffic, and is its request log written?",
            )
        )
    elif n < cfg.min_rows:
        reasons.append(
            Reason(
                severity="info",
                signal="traffic",
                message=f"only {n} rows served (< min_rows {cfg.min_rows}): drift is not judged",
            )
        )

    # Data quality.
    rejected = window.rejected_requests
    violation_rate = rejected / window.requests if window.requests else 0.0
    if window.requests and violation_rate >= cfg.max_violation_rate and rejected:
        top = window.rejected[0]
        reasons.append(
            Reason(
                severity="warn",
                signal="data_quality",
                message=f"{rejected} of {window.requests} requests ({violation_rate:.1%}) broke the input "
                f"contract (max {cfg.max_violation_rate:.1%}); most often {top.field}: {top.rule} "
                f"({top.count}x)",
            )
        )
    found = (
        frame[ENTITY_FOUND].fillna(True).astype(bool)
        if ENTITY_FOUND in frame
        else pd.Series(True, index=frame.index, dtype=bool)
    )
    not_found_rate = float(1 - found.mean()) if n else None
    if not_found_rate is not None and not_found_rate >= cfg.max_entity_not_found_rate:
        reasons.append(
            Reason(
                severity="warn",
                signal="data_quality",
                message=f"{not_found_rate:.1%} of rows had no online features for their entity "
                f"(max {cfg.max_entity_not_found_rate:.1%}); they were answered with imputed values",
            )
        )
    missing: list[MissingRate] = []
    found_rows = frame[found.to_numpy()] if n else frame
    for col in [*inputs["text"], *inputs["categorical"], *inputs["numeric"]]:
        if not len(found_rows):
            break
        values = _values(found_rows, col)
        served_missing = float(values.map(lambda v: v is None or _is_nan(v)).mean())
        reference_missing = float(ref_features.get(col, {}).get("missing_rate", 0.0))
        missing.append(MissingRate(feature=col, served=served_missing, reference=reference_missing))
        if served_missing - reference_missing >= cfg.max_missing_increase:
            reasons.append(
                Reason(
                    severity="warn",
                    signal="data_quality",
                    message=f"{col}: {served_missing:.1%} missing among found entities vs "
                    f"{reference_missing:.1%} in training (max increase {cfg.max_missing_increase:.0%})",
                )
            )

    # Drift.
    drift: list[FeatureDrift] = []
    text: list[TextSignal] = []
    for col in inputs["numeric"]:
        ref = ref_features.get(col)
        if ref is None:
            continue
        numbers = pd.to_numeric(_values(frame, col), errors="coerce").astype("float64").dropna().to_numpy()
        drift.append(_numeric_drift(col, "numeric", numbers, ref, "", ref_rows))
    for col in inputs["categorical"]:
        ref = ref_features.get(col)
        if ref is not None:
            drift.append(_categorical_drift(col, _values(frame, col), ref, ref_rows))
    for col in inputs["text"]:
        ref = ref_features.get(col)
        if ref is None:
            continue
        texts, note = _text_values(frame, col)
        signal, length_drift = _text_signal(col, texts, ref, ref_rows, note)
        text.append(signal)
        if length_drift is not None:
            drift.append(length_drift)
    judged = n >= cfg.min_rows
    if judged:
        _judge_drift(drift, cfg)
        for d in sorted((d for d in drift if d.drifted), key=lambda d: -(d.psi or 0)):
            test = f"{d.test.upper()} p={_fmt_p(d.p_value)}" if d.test else "no test (old reference)"
            threshold = cfg.psi_retrain if d.severity == "retrain" else cfg.psi_warn
            reasons.append(
                Reason(
                    severity=d.severity,
                    signal="drift",
                    message=f"{d.feature} drifted: PSI {d.psi:.3f} (>= {threshold}), {test}",
                )
            )
        for t in text:
            if t.oov_rate is not None and t.reference_oov_rate is not None:
                increase = t.oov_rate - t.reference_oov_rate
                if increase >= cfg.max_oov_increase:
                    reasons.append(
                        Reason(
                            severity="warn",
                            signal="text",
                            message=f"{t.field}: {t.oov_rate:.1%} of words are outside the training "
                            f"vocabulary vs {t.reference_oov_rate:.1%} in training",
                        )
                    )
        old = [d.feature for d in drift if d.test is None and d.psi is not None and d.kind != "categorical"]
        if old:
            reasons.append(
                Reason(
                    severity="info",
                    signal="drift",
                    message=f"PSI only (reference statistics of this version have no quantiles): "
                    f"{', '.join(old[:8])}{' ...' if len(old) > 8 else ''}",
                )
            )
    prediction = _prediction_shift(frame, facts, cfg)
    shifted = prediction.psi is not None and prediction.psi >= cfg.prediction_psi_warn
    if judged and shifted and (prediction.p_value is None or prediction.p_value < cfg.alpha):
        reasons.append(
            Reason(
                severity="warn",
                signal="prediction",
                message=f"served class shares moved from the holdout's: PSI {prediction.psi:.3f} "
                f"(>= {cfg.prediction_psi_warn}), chi-square p={_fmt_p(prediction.p_value)}",
            )
        )

    # Accuracy on labels that have arrived.
    performance = _performance(frame, facts)
    if performance.labelled >= cfg.min_labelled and performance.accuracy_drop is not None:
        drop, p = performance.accuracy_drop, performance.p_value
        significant = p is None or p < cfg.alpha
        line = (
            f"accuracy {performance.accuracy:.3f} on {performance.labelled} freshly labelled rows vs "
            f"{performance.reference_accuracy:.3f} at evaluation (-{drop:.3f}, p={_fmt_p(p)})"
        )
        if significant and drop >= cfg.accuracy_drop_retrain:
            reasons.append(Reason(severity="retrain", signal="accuracy", message=line))
        elif significant and drop >= cfg.accuracy_drop_warn:
            reasons.append(Reason(severity="warn", signal="accuracy", message=line))
        f1_drop, f1_p = performance.macro_f1_drop, performance.macro_f1_p_value
        if f1_drop is not None and f1_drop >= cfg.macro_f1_drop_warn and (f1_p is None or f1_p < cfg.alpha):
            reasons.append(
                Reason(
                    severity="warn",
                    signal="accuracy",
                    message=f"macro-F1 {performance.macro_f1:.3f} vs {performance.reference_macro_f1:.3f} "
                    f"at evaluation (-{f1_drop:.3f}, max {cfg.macro_f1_drop_warn}, p={_fmt_p(f1_p)})",
                )
            )
        for label, p_label in performance.per_label_p_values.items():
            served, ref = performance.per_label[label], performance.reference_per_label[label]
            label_drop = ref["f1"] - served["f1"]
            if (
                served["support"] >= MIN_LABEL_SUPPORT
                and label_drop >= cfg.label_f1_drop_warn
                and p_label < cfg.alpha / max(len(performance.per_label_p_values), 1)
            ):
                reasons.append(
                    Reason(
                        severity="warn",
                        signal="accuracy",
                        message=f"{label}: F1 {served['f1']:.3f} vs {ref['f1']:.3f} at evaluation "
                        f"(-{label_drop:.3f}; precision {served['precision']:.3f} vs {ref['precision']:.3f}, "
                        f"recall {served['recall']:.3f} vs {ref['recall']:.3f}; p={_fmt_p(p_label)})",
                    )
                )
    elif n:
        why = (
            "requests carry no event id"
            if window.event_id is None
            else f"{window.label_pending} rows still wait for their label"
        )
        reasons.append(
            Reason(
                severity="info",
                signal="accuracy",
                message=f"{performance.labelled} labelled rows (< min_labelled {cfg.min_labelled}): "
                f"accuracy is not judged ({why})",
            )
        )

    # Age.
    model = _model_facts(facts, as_of)
    if model.age_days is not None:
        if model.age_days >= cfg.max_age_days:
            severity: Severity | None = "retrain"
        elif model.age_days >= cfg.warn_age_days:
            severity = "warn"
        else:
            severity = None
        if severity:
            reasons.append(
                Reason(
                    severity=severity,
                    signal="age",
                    message=f"model is {model.age_days:.0f} days old (warn at {cfg.warn_age_days:g}, "
                    f"retrain at {cfg.max_age_days:g})",
                )
            )

    worst = max((SEVERITY_ORDER[r.severity] for r in reasons), default=0)
    decision: Decision = ("healthy", "warn", "retrain")[worst]
    reasons.sort(key=lambda r: -SEVERITY_ORDER[r.severity])
    return MonitoringSummary(
        decision=decision,
        reasons=reasons,
        model=model,
        window=window,
        data_quality=DataQuality(
            violation_rate=violation_rate,
            rejected=window.rejected,
            server_errors=window.server_errors,
            entity_not_found_rate=not_found_rate,
            missing=missing,
        ),
        drift=drift,
        text=text,
        prediction=prediction,
        performance=performance,
        thresholds=cfg.model_dump(),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
