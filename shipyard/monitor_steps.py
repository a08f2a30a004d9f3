"""The monitoring pipeline's steps as plain functions over paths and values (like `shipyard.steps`).

`collect_step` reads a window of the request log and joins the labels that have arrived; it is I/O and
never cached. `monitor_step` assesses the window against the served version's own files and writes
the HTML report and the machine-readable summary; it is a pure function of its inputs. Each KFP
component in `components/collect` and `components/monitor` is a thin wrapper over one of them.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import SourceDataError
from shipyard.project import load_project
from shipyard.records import emit
from shipyard.settings import MonitoringSettings
from shipyard.steps import open_version_dir, step

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.monitoring import MonitoringSummary, WindowSummary

__all__ = ["collect_step", "metrics_of", "monitor_step", "resolve_window", "write_frame"]

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
) -> WindowSummary:
    """The window's served rows of the version (by its label or hash prefix) with arrived labels."""
    import pandas as pd

    from shipyard.monitoring import collect_window

    spec = load_project(project)
    start, end, as_of = resolve_window(window_start, window_end, labels_as_of, monitoring.window_hours)
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
    return window


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
    Path(report_out).write_text(render_html(summary), encoding="utf-8")
    Path(summary_out).write_text(summary.model_dump_json(indent=2) + "\n")
    worst = [r.message for r in summary.reasons if r.severity != "info"][:3]
    emit(
        "monitor",
        f"{summary.decision.upper()}" + (": " + "; ".join(worst) if worst else ""),
        decision=summary.decision,
    )
    return summary


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
