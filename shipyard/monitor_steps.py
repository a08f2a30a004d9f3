"""The monitoring pipeline's steps as plain functions over paths and values (like `shipyard.steps`).

`collect_step` reads a window of the request log and joins the labels that have arrived; it is I/O and
never cached. `monitor_step` assesses the window against the served version's own files and writes
the HTML report and the machine-readable summary, a function of its inputs; with `monitoring.reports`
set it also publishes both there (`publish_report`), where triage and people find a scheduled run's.
`retrain_step` runs only on a `retrain` decision in an environment with a Kubeflow Pipelines API: it
submits the training pipeline there (`shipyard.pipeline_runs.submit_retraining`). Each KFP component in
`components/collect`, `components/monitor` and `components/retrain` is a thin wrapper over one of them.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import SourceDataError
from shipyard.project import load_project
from shipyard.records import emit
from shipyard.registry import ModelRegistry
from shipyard.settings import MonitoringSettings, Settings
from shipyard.steps import open_version_dir, step

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.monitoring import MonitoringSummary, WindowSummary
    from shipyard.registry import VersionEntry
    from shipyard.retraining import Retraining

__all__ = [
    "collect_step",
    "metrics_of",
    "monitor_step",
    "publish_report",
    "report_key",
    "resolve_window",
    "retrain_step",
    "served_version",
    "write_frame",
]

DECISION_CODES = {"healthy": 0, "warn": 1, "retrain": 2}


def resolve_window(
    start: str, end: str, labels_as_of: str, hours: float, now: datetime | None = None
) -> tuple[datetime, datetime, datetime]:
    """[start, end) and the labels cut-off: empty end = now, empty start = end - hours, empty
    labels cut-off = now (every label that has arrived by the time monitoring runs)."""
    from shipyard.monitoring import parse_time

    now = now or datetime.now(UTC)
    t_end = parse_time(end, "window_end") if end else now
    t_start = parse_time(start, "window_start") if start else t_end - timedelta(hours=hours)
    if t_start >= t_end:
        raise SourceDataError(f"window: start {t_start.isoformat()} is not before end {t_end.isoformat()}")
    as_of = parse_time(labels_as_of, "labels_as_of") if labels_as_of else now
    return t_start, t_end, as_of


def write_frame(frame: pd.DataFrame, path: str | Path) -> None:
    """Parquet, with a column of mixed Python types (a misbehaving client) kept as text."""
    import pyarrow as pa

    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            try:
                pa.array(out[col], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                out[col] = out[col].map(lambda v: None if v is None else str(v))
    out.to_parquet(path, index=False)


def served_version(
    model_registry: str, log_uri: str, start: datetime, end: datetime, version: str | None = None
) -> VersionEntry:
    """The version to monitor: the one asked for, else the registered version that served most rows
    in the window (the log names it by label or hash prefix), else the champion. A scheduled run
    names no version: the one serving changes with every promotion, and the log says which it is."""
    from collections import Counter

    from shipyard.errors import RegistryError
    from shipyard.monitoring import read_request_log
    from shipyard.registry import ModelRegistry

    reg = ModelRegistry(model_registry)
    if version:
        return reg.get(version)
    entries = reg.versions()
    served: Counter[str] = Counter()
    for record in read_request_log(log_uri, start, end).records:
        if 200 <= int(record.get("status") or 0) < 300:
            served[str(record.get("model_version"))] += len(record.get("rows") or [])
    for name, _rows in served.most_common():
        for entry in entries:
            if name in (entry.version, entry.content_hash[:12]):
                return entry
    champion = reg.champion()
    if champion is None:
        raise RegistryError(
            f"nothing to monitor: no version in {model_registry} served rows in the window, and "
            "there is no champion (run `make run`, or pass --model-version)"
        )
    return champion


@step("collect")
def collect_step(
    project: str,
    request_log: str,
    source_dir: str,
    model_uri: str,
    model_version: str,
    window_start: str,
    window_end: str,
    labels_as_of: str,
    monitoring: MonitoringSettings,
    rows_out: str,
    window_out: str,
    model_registry: str = "",
) -> tuple[WindowSummary, str, str]:
    """The window's served rows of the version (by its label or hash prefix) with arrived labels;
    with the version's content-addressed URI and label. An empty `model_uri` (a scheduled run) is
    resolved on `model_registry` by `served_version`."""
    import pandas as pd

    from shipyard.monitoring import collect_window

    spec = load_project(project)
    start, end, as_of = resolve_window(window_start, window_end, labels_as_of, monitoring.window_hours)
    if not model_uri:
        if not model_registry:
            raise SourceDataError("collect: model_uri is empty and no model_registry to resolve it on")
        entry = served_version(model_registry, request_log, start, end, model_version or None)
        model_uri, model_version = ModelRegistry(model_registry).uri(entry.version), entry.version
        emit("collect", f"monitoring {model_version}: the version that served the window (else the champion)")
    content_hash = model_uri.rstrip("/").rsplit("/", 1)[-1]
    versions = {v for v in (model_version, content_hash[:12]) if v}
    request_fields = {f.name for f in spec.request}
    event_id = spec.event_id if spec.event_id in request_fields else None
    events = None
    table = Path(source_dir) / spec.events.file
    if event_id is not None:
        if table.exists():
            columns = [spec.event_id, spec.label, spec.timestamp]
            if spec.label_available_at:
                columns.append(spec.label_available_at)
            events = pd.read_parquet(table, columns=columns)
        else:
            emit("collect", f"no labels: {table} does not exist; accuracy will not be judged")
    frame, window = collect_window(
        request_log,
        start,
        end,
        versions,
        events,
        event_id,
        spec.label,
        spec.label_available_at,
        as_of,
        spec.timestamp,
    )
    write_frame(frame, rows_out)
    Path(window_out).write_text(window.model_dump_json(indent=2) + "\n")
    emit(
        "collect",
        f"{window.requests} requests in {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} from {window.files} "
        f"log file(s); {window.rows} rows served by {model_version or content_hash[:12]}, "
        f"{window.labelled} with labels, {window.rejected_requests} rejected",
    )
    return window, model_uri, model_version


def report_key(summary: MonitoringSummary) -> str:
    """One folder per monitored window of a version: `<version>-<window end>`."""
    from shipyard.monitoring import parse_time

    return f"{summary.model.version}-{parse_time(summary.window.end):%Y%m%dT%H%M%SZ}"


def publish_report(location: str, summary: MonitoringSummary, page: str) -> str:
    """Write the report and the summary to `<location>/<report_key>/` and as `latest.*`; return the
    summary's URI. Each object is written whole (the stores' `put`), the summary last in its folder,
    so a reader that finds a summary finds its report; the same window again replaces both."""
    from shipyard.errors import ReportError
    from shipyard.storage import store_for

    key = report_key(summary)
    document = (summary.model_dump_json(indent=2) + "\n").encode()
    try:
        store = store_for(location)
        store.put(f"{key}/report.html", page.encode())
        store.put(f"{key}/summary.json", document)
        store.put("latest.html", page.encode())
        store.put("latest.json", document)
        return store.uri(f"{key}/summary.json")
    except Exception as exc:  # s3fs and botocore raise their own kinds besides OSError
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ReportError(
            f"cannot publish the monitoring report to {location} (monitoring.reports): {detail}"
        ) from exc


@step("monitor")
def monitor_step(
    project: str,
    rows: str,
    window: str,
    model_uri: str,
    model_version: str,
    monitoring: MonitoringSettings,
    report_out: str,
    summary_out: str,
) -> MonitoringSummary:
    """Assess the window against the version's reference and evaluation; write report and summary."""
    import pandas as pd

    from shipyard.monitor_report import render_html
    from shipyard.monitoring import VersionFacts, WindowSummary, assess

    frame = pd.read_parquet(rows)
    summary_window = WindowSummary.model_validate_json(Path(window).read_text())
    with tempfile.TemporaryDirectory(prefix="shipyard-monitor-") as tmp:
        vdir = open_version_dir(model_uri, Path(tmp))
        facts = VersionFacts.load(vdir, model_version or vdir.name[:12])
    if facts.meta.get("project") != project:
        raise SourceDataError(
            f"model {model_version or model_uri} belongs to project {facts.meta.get('project')!r}, "
            f"not {project!r}"
        )
    summary = assess(frame, summary_window, facts, monitoring)
    page = render_html(summary)
    Path(report_out).write_text(page, encoding="utf-8")
    Path(summary_out).write_text(summary.model_dump_json(indent=2) + "\n")
    if monitoring.reports:  # a scheduled run's findings, where triage and people read them
        emit("monitor", f"published {publish_report(monitoring.reports, summary, page)}")
    worst = [r.message for r in summary.reasons if r.severity != "info"][:3]
    emit(
        "monitor",
        f"{summary.decision.upper()}" + (": " + "; ".join(worst) if worst else ""),
        decision=summary.decision,
    )
    return summary


@step("retrain")
def retrain_step(summary_path: str, settings: Settings, retraining_path: str) -> Retraining:
    """Submit the training pipeline to the environment's Kubeflow Pipelines for the monitoring summary
    at `summary_path`; write what was submitted (a `Retraining`) to `retraining_path`.

    The package is `settings.kfp.training_package` under $SHIPYARD_HOME (the image's /opt/shipyard,
    which carries the committed package), else the working directory. The champion's integrity check
    fetches it into a scratch directory: the image's own directories are not writable.
    """
    import os
    import sys

    from shipyard.monitoring import MonitoringSummary
    from shipyard.pipeline_runs import submit_retraining

    summary = MonitoringSummary.model_validate_json(Path(summary_path).read_text())
    root = Path(os.environ.get("SHIPYARD_HOME") or Path.cwd())
    with tempfile.TemporaryDirectory(prefix="shipyard-champion-") as cache:
        retraining = submit_retraining(settings, summary, root, Path(cache), sys.stdout)
    Path(retraining_path).parent.mkdir(parents=True, exist_ok=True)
    Path(retraining_path).write_text(retraining.model_dump_json(indent=2))
    return retraining


def metrics_of(summary: MonitoringSummary) -> dict[str, float]:
    """Headline numbers for the KFP Metrics artifact (missing values are left out)."""
    values: dict[str, Any] = {
        "decision_code": DECISION_CODES[summary.decision],
        "served_rows": summary.window.rows,
        "labelled_rows": summary.performance.labelled,
        "accuracy": summary.performance.accuracy,
        "macro_f1": summary.performance.macro_f1,
        "accuracy_drop": summary.performance.accuracy_drop,
        "drifted_inputs": len(summary.drifted),
        "max_psi": max((d.psi for d in summary.drift if d.psi is not None), default=None),
        "prediction_psi": summary.prediction.psi,
        "violation_rate": summary.data_quality.violation_rate,
        "entity_not_found_rate": summary.data_quality.entity_not_found_rate,
        "model_age_days": summary.model.age_days,
    }
    return {k: float(v) for k, v in values.items() if v is not None}
