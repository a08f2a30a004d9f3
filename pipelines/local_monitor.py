"""`shipyard monitor run`: the monitoring pipeline on this machine, with KFP's own local runner.

Resolves what a cluster run would be given (the window, the served version's content-addressed
directory), runs `pipelines/monitoring.py` with `kfp.local.SubprocessRunner` (each component its own
process, artifacts in the pipeline root), and copies the report and the summary to
`<state_dir>/<monitoring.report_dir>/<version>-<window end>/` plus `latest.html` / `latest.json`
beside them, where a person opens them. Steps report through structured events ($SHIPYARD_EVENTS),
which is what this runner reads; their terminal output goes to `<pipeline_root>/last-monitoring.log`.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pipelines.local_run import run_locally
from shipyard.errors import RegistryError
from shipyard.monitor_steps import resolve_window
from shipyard.monitoring import MonitoringSummary, read_request_log
from shipyard.registry import ModelRegistry, VersionEntry
from shipyard.settings import Settings

__all__ = ["MonitorRun", "run_monitoring", "served_version"]


@dataclass(frozen=True)
class MonitorRun:
    summary: MonitoringSummary
    report: Path
    summary_file: Path


def served_version(
    settings: Settings, log_uri: str, start: datetime, end: datetime, version: str | None = None
) -> VersionEntry:
    """The version to monitor: the one asked for, else the registered version that served most rows
    in the window (the log names it by label or hash prefix), else the champion."""
    reg = ModelRegistry(settings.model_registry)
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
            f"nothing to monitor: no version in {settings.model_registry} served rows in the window, and "
            "there is no champion (run `make run`, or pass --model-version)"
        )
    return champion


def run_monitoring(
    settings: Settings,
    window_start: str = "",
    window_end: str = "",
    labels_as_of: str = "",
    model_version: str | None = None,
    verbose: bool = False,
    say: TextIO = sys.stdout,
) -> MonitorRun:
    """Run the monitoring pipeline with kfp.local for the served version; return its summary."""
    from pipelines.monitoring import make_monitoring_pipeline, monitoring_arguments, request_log_uri

    start, end, as_of = resolve_window(
        window_start, window_end, labels_as_of, settings.monitoring.window_hours
    )
    log_uri = request_log_uri(settings)
    entry = served_version(settings, log_uri, start, end, model_version)
    reg = ModelRegistry(settings.model_registry)
    # Verified up front: a corrupt version fails here with the registry's message, not mid-pipeline.
    reg.fetch(entry.version, Path(settings.state_dir) / "cache" / "models")
    uri = reg.uri(entry.version)
    say.write(
        f"monitoring: {settings.spec.name} {entry.version} ({entry.status}), requests "
        f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC from {log_uri}\n"
    )
    arguments: dict[str, Any] = monitoring_arguments(
        settings,
        model_uri=uri,
        model_version=entry.version,
        window_start=start.isoformat(),
        window_end=end.isoformat(),
        labels_as_of=as_of.isoformat(),
    )
    task = run_locally(
        make_monitoring_pipeline(settings),
        arguments,
        Path(settings.pipeline_root),
        "monitoring",
        say,
        verbose,
    )
    summary_path = Path(task.output.path)
    # kfp.local writes each output of a task under <run>/<task>/<output name>.
    report_path = summary_path.parent / "report"
    summary = MonitoringSummary.model_validate_json(summary_path.read_text())
    out_dir = Path(settings.state_dir) / settings.monitoring.report_dir
    run_dir = out_dir / f"{entry.version}-{end:%Y%m%dT%H%M%SZ}"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(report_path, run_dir / "report.html")
    shutil.copyfile(summary_path, run_dir / "summary.json")
    shutil.copyfile(report_path, out_dir / "latest.html")
    shutil.copyfile(summary_path, out_dir / "latest.json")
    return MonitorRun(summary=summary, report=run_dir / "report.html", summary_file=run_dir / "summary.json")
