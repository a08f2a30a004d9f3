"""`shipyard monitor run [--retrain]`: the monitoring pipeline on this machine, with KFP's own local
runner, and continuous training when it decides `retrain`.

Resolves what a cluster run would be given (the window, the served version's content-addressed
directory), runs `pipelines/monitoring.py` with `kfp.local.SubprocessRunner` (each component its own
process, artifacts in the pipeline root), and writes the report and the summary to
`<state_dir>/<monitoring.report_dir>/<version>-<window end>/` plus `latest.html` / `latest.json`
beside them, where a person opens them. Steps report through structured events ($SHIPYARD_EVENTS),
which is what this runner reads; their terminal output goes to `<pipeline_root>/last-monitoring.log`.

With `retrain`, a `retrain` decision launches the training pipeline (`pipelines/training.py`, the
same local runner) on the newer window with `promote` off: its candidate passes the same gates and
is registered as a candidate, never champion, never deployed (see `shipyard.retraining`). The
outcome, with the release command to run next, goes into the summary and the report. An environment
with a Kubeflow Pipelines API (`kfp.host`) trains there instead: the committed training package is
submitted as a run with the same parameters (`shipyard.pipeline_runs.submit_training`), nothing trains
on this machine, and the outcome names the run to follow.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pipelines.local_run import champion_arguments, run_locally
from shipyard.monitor_steps import publish_report, report_key, resolve_window, served_version
from shipyard.monitoring import MonitoringSummary
from shipyard.registry import ModelRegistry
from shipyard.retraining import Retraining
from shipyard.settings import Settings

__all__ = ["MonitorRun", "continuous_training", "package_root", "run_monitoring"]

CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class MonitorRun:
    summary: MonitoringSummary
    report: Path
    summary_file: Path
    rows: Path  # the window's served rows as collected (parquet, in the pipeline root)


def run_monitoring(
    settings: Settings,
    window_start: str = "",
    window_end: str = "",
    labels_as_of: str = "",
    model_version: str | None = None,
    verbose: bool = False,
    say: TextIO = sys.stdout,
    retrain: bool = False,
) -> MonitorRun:
    """Run the monitoring pipeline with kfp.local for the served version; return its summary.

    `retrain`: on a `retrain` decision, run continuous training too (`continuous_training`); the
    summary's `retrain` section says what it did, or why nothing ran.
    """
    from pipelines.monitoring import make_monitoring_pipeline, monitoring_arguments, request_log_uri
    from shipyard.monitor_report import render_html

    start, end, as_of = resolve_window(
        window_start, window_end, labels_as_of, settings.monitoring.window_hours
    )
    log_uri = request_log_uri(settings)
    entry = served_version(settings.model_registry, log_uri, start, end, model_version)
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
        # Continuous training, if asked for, follows the decision here (`continuous_training`): the
        # pipeline's own retrain step stays off, so a run submits at most once.
        retrain=False,
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
    rows_path = summary_path.parent.parent / "collect" / "rows"
    summary = MonitoringSummary.model_validate_json(summary_path.read_text())
    if retrain:
        outcome = continuous_training(settings, summary, rows_path, say=say, verbose=verbose)
        summary = summary.model_copy(update={"retrain": outcome})
        # The same renderer the monitor step used, now with the outcome: page and summary agree.
        page = render_html(summary)
    else:
        page = report_path.read_text(encoding="utf-8")
    out_dir = Path(settings.state_dir) / settings.monitoring.report_dir
    publish_report(str(out_dir), summary, page)
    if settings.monitoring.reports:  # the step published there already; this adds the outcome
        publish_report(settings.monitoring.reports, summary, page)
    run_dir = out_dir / report_key(summary)
    return MonitorRun(
        summary=summary, report=run_dir / "report.html", summary_file=run_dir / "summary.json", rows=rows_path
    )


def _trained_on(run_dir: Path, event_id: str) -> set[str] | None:
    """Event ids of the training run's train and validation splits (kfp.local keeps each output
    under <run>/<task>/<output name>); None when they cannot be read."""
    import pandas as pd

    seen: set[str] = set()
    for part in ("train", "validation"):
        path = run_dir / "split" / part
        if not path.exists():
            return None
        frame = pd.read_parquet(path)
        if event_id not in frame:
            return None
        seen |= set(frame[event_id].astype(str))
    return seen


def continuous_training(
    settings: Settings,
    summary: MonitoringSummary,
    rows: Path,
    say: TextIO = sys.stdout,
    verbose: bool = False,
) -> Retraining:
    """On a `retrain` decision: the training pipeline on the newer window, registered, never promoted.

    Anything but `retrain` launches nothing. The window comes from the monitored one
    (`shipyard.retraining.training_window`); the pipeline gets it through its own `start`, `end`
    and `labels_as_of` parameters, the current champion as usual (its gate compares against it), and
    `promote` off whatever the environment says: the candidate goes on only through the release flow.
    """
    import pandas as pd

    from pipelines.training import make_pipeline
    from shipyard.artifacts import EVALUATION_FILE, read_json
    from shipyard.records import RegisterRecord, read_record
    from shipyard.retraining import backtest, outcome, retraining_arguments, training_window

    if settings.kfp.host:
        # On the environment's Kubeflow Pipelines: one run submitted, nothing trained here.
        from shipyard.pipeline_runs import submit_retraining

        cache = Path(settings.state_dir) / "cache" / "models"
        return submit_retraining(settings, summary, package_root(), cache, say)
    if summary.decision != "retrain":
        return Retraining(triggered=False, message=f"decision {summary.decision}: nothing to retrain")
    spec = settings.spec
    window = training_window(
        summary.window.end,
        summary.window.events_to,
        summary.window.labels_as_of,
        settings.monitoring.retrain_window_days,
    )
    say.write(
        f"retraining: {spec.name} on events {window.start or 'from the first'} .. {window.end} with labels "
        f"as of {window.labels_as_of}; the candidate is registered, not promoted\n"
    )
    arguments = retraining_arguments(settings, window, champion_arguments(settings, say))
    task = run_locally(
        make_pipeline(settings), arguments, Path(settings.pipeline_root), "retraining", say, verbose
    )
    registered = read_record(RegisterRecord, task.output.path)
    reg = ModelRegistry(settings.model_registry)
    candidate_dir = reg.fetch(registered.version, Path(settings.state_dir) / "cache" / "models")
    evaluation = read_json(candidate_dir, EVALUATION_FILE)
    notes: list[str] = []
    seen = _trained_on(Path(task.output.path).parent.parent, spec.event_id)
    if seen is None:
        notes.append("the training run's splits were not readable: rows it trained on are not told apart")
    frame = pd.read_parquet(rows) if rows.exists() else pd.DataFrame()
    backtested, why_not = backtest(
        frame, summary.model.version, candidate_dir, list(spec.classes), summary.window.event_id, seen
    )
    if why_not:
        notes.append(why_not)
    return outcome(
        settings.environment,
        window,
        registered.version,
        registered.status,
        registered.created,
        registered.reason,
        registered.card,
        evaluation,
        backtested,
        notes,
    )


def package_root() -> Path:
    """What `kfp.training_package` is relative to: $SHIPYARD_HOME (the image's /opt/shipyard), else the
    checkout this code runs from."""
    home = os.environ.get("SHIPYARD_HOME")
    return Path(home) if home else CHECKOUT
