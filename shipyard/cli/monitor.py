"""`shipyard monitor`: the monitoring pipeline for the served model version."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard.cli.root import main, settings_of
from shipyard.retraining import Retraining

COLOURS = {"healthy": "green", "warn": "yellow", "retrain": "red"}


@main.group()
def monitor() -> None:
    """Drift, data quality, fresh-label accuracy and age of the served model version."""


@monitor.command("run")
@click.option("--window-start", default="", help="ISO 8601; default: window end - monitoring.window_hours.")
@click.option("--window-end", default="", help="ISO 8601 (exclusive); default: now.")
@click.option("--labels-as-of", default="", help="Labels that arrived by then count; default: now.")
@click.option(
    "--model-version",
    default=None,
    help="Default: the registered version that served most rows in the window, else the champion.",
)
@click.option(
    "--retrain",
    is_flag=True,
    help="On a retrain decision, run the training pipeline on the newer window and register its candidate "
    "(never promoted: the release flow decides).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable summary.")
@click.option("--verbose", is_flag=True, help="Show KFP's full task output, not just progress lines.")
@click.pass_context
def run_monitor(
    ctx: click.Context,
    window_start: str,
    window_end: str,
    labels_as_of: str,
    model_version: str | None,
    retrain: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Run the monitoring pipeline (kfp.local) on a window of the request log; print the decision.

    With --retrain, a retrain decision launches continuous training and ends with the release
    command that proposes the new candidate.
    """
    import sys

    from pipelines.local_monitor import run_monitoring

    settings = settings_of(ctx)
    result = run_monitoring(
        settings,
        window_start=window_start,
        window_end=window_end,
        labels_as_of=labels_as_of,
        model_version=model_version,
        verbose=verbose,
        say=sys.stderr if as_json else sys.stdout,
        retrain=retrain,
    )
    s = result.summary
    if as_json:
        click.echo(s.model_dump_json(indent=2))
        return
    click.echo("")
    click.secho(f"{s.model.name} {s.model.version}: {s.decision.upper()}", fg=COLOURS[s.decision], bold=True)
    for reason in s.reasons:
        click.echo(f"  {reason.severity:<7} [{reason.signal}] {reason.message}")
    perf = s.performance
    accuracy = f"{perf.accuracy:.3f}" if perf.accuracy is not None else "n/a"
    click.echo(
        f"served rows {s.window.rows}, labelled {perf.labelled}, accuracy {accuracy} "
        f"(evaluation {perf.reference_accuracy:.3f}); drifted inputs {len(s.drifted)}/{len(s.drift)}"
    )
    click.echo(f"report: {result.report}\nsummary: {result.summary_file}")
    if s.retrain is not None:
        echo_retraining(s.retrain)


def _seconds(iso: str) -> str:
    return iso.split(".")[0].replace("T", " ").removesuffix("+00:00") + (" UTC" if "+00:00" in iso else "")


def echo_retraining(r: Retraining, command_prefix: str = "") -> None:
    """The continuous-training outcome, ending with the one command that takes it further
    (`command_prefix`: what points it at another state, e.g. SHIPYARD_SETTINGS=...)."""
    click.echo("")
    colour = {"candidate": "green", "rejected": "red", "submitted": "cyan"}.get(r.status or "", "white")
    click.secho(f"continuous training: {r.message}", fg=colour if r.triggered else None, bold=r.triggered)
    if r.run_id is not None:
        click.echo(f"  Kubeflow Pipelines run {r.run_id} (experiment {r.experiment}): {r.run_url}")
    if r.window is not None:
        start = _seconds(r.window.start) if r.window.start else "the first"
        verb = "trains" if r.status == "submitted" else "trained"
        click.echo(
            f"  {verb} on the events from {start} to {_seconds(r.window.end)} "
            f"(labels as of {_seconds(r.window.labels_as_of)})"
        )
    if r.holdout is not None:
        h = r.holdout
        champion = (
            f"; champion {h.champion_version} {h.champion_accuracy:.3f} / {h.champion_macro_f1:.3f}"
            if h.champion_version and h.champion_accuracy is not None and h.champion_macro_f1 is not None
            else ""
        )
        click.echo(
            f"  holdout of the new window ({h.rows} rows, accuracy / macro-F1): candidate "
            f"{h.accuracy:.3f} / {h.macro_f1:.3f}{champion}"
        )
    if r.backtest is not None:
        b = r.backtest
        line = (
            f"  this window's {b.rows} labelled rows (features as served), accuracy: candidate "
            f"{b.candidate_accuracy:.3f} vs served {b.served_version} {b.served_accuracy:.3f}"
        )
        if b.unseen_rows and b.candidate_unseen_accuracy is not None and b.served_unseen_accuracy is not None:
            line += (
                f"; on the {b.unseen_rows} it never trained on: {b.candidate_unseen_accuracy:.3f} vs "
                f"{b.served_unseen_accuracy:.3f}"
            )
        click.echo(line)
    for note in r.notes:
        click.echo(f"  note: {note}")
    if r.card:
        click.echo(f"  model card: {r.card}")
    if r.next_command:
        click.secho(f"next: {command_prefix}{r.next_command}", bold=True)


@monitor.command("compile")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the package (default: shipyard-monitoring-<env>.yaml).",
)
@click.pass_context
def compile_monitor(ctx: click.Context, out: Path | None) -> None:
    """The monitoring pipeline package for the environment (`--env E`), for a scheduled KFP run."""
    from pipelines.monitoring import compile_monitoring_pipeline

    settings = settings_of(ctx)
    target = out or Path(f"shipyard-monitoring-{settings.environment}.yaml")
    click.echo(f"compiled {compile_monitoring_pipeline(target, settings)} for {settings.environment}")


@monitor.command("schedule")
@click.option("--replace", is_flag=True, help="Replace the environment's monitoring schedule if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print what was scheduled as JSON.")
@click.pass_context
def schedule_monitor(ctx: click.Context, replace: bool, as_json: bool) -> None:
    """Schedule the monitoring pipeline on the environment's Kubeflow Pipelines (`--env E`, `kfp.host`):
    a recurring run of the package `compile` writes, at `kfp.monitoring_schedule`. On a retrain
    decision its retrain step submits the training pipeline."""
    import tempfile

    from pipelines.monitoring import compile_monitoring_pipeline
    from shipyard.pipeline_runs import schedule_monitoring

    settings = settings_of(ctx)
    with tempfile.TemporaryDirectory(prefix="shipyard-schedule-") as scratch:
        package = compile_monitoring_pipeline(
            Path(scratch) / f"shipyard-monitoring-{settings.environment}.yaml", settings
        )
        scheduled = schedule_monitoring(settings, package, replace=replace)
    if as_json:
        click.echo(scheduled.model_dump_json(indent=2))
        return
    click.echo(
        f"scheduled {scheduled.name} ({scheduled.cron}) in experiment {scheduled.experiment}: "
        f"recurring run {scheduled.recurring_run_id}"
    )
    if scheduled.replaced:
        click.echo(f"  replaced: {', '.join(scheduled.replaced)}")
    click.echo(f"  {scheduled.url}")
