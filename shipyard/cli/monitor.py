"""`shipyard monitor`: the monitoring pipeline for the served model version."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard.cli.root import main, settings_of

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
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable summary.")
@click.option("--verbose", is_flag=True, help="Show KFP's full task output, not just progress lines.")
@click.pass_context
def run_monitor(
    ctx: click.Context,
    window_start: str,
    window_end: str,
    labels_as_of: str,
    model_version: str | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Run the monitoring pipeline (kfp.local) on a window of the request log; print the decision."""
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
