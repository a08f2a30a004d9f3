"""`shipyard triage --env E`: pipeline bug, wrong model, data problem or stale model, with evidence.

Exit codes: 0 healthy (no finding is a warn or a problem), 1 a problem found, 2 a usage or
configuration error (unknown environment, missing or invalid release record, no kubectl, a cluster
that cannot be read).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shipyard.cli.root import main, settings_of

COLOURS = {"ok": "green", "note": None, "unknown": "yellow", "warn": "yellow", "problem": "red"}


@main.command("triage")
@click.option("--env", "env", default=None, help="The environment (default: the group's --env, else local).")
@click.option("--json", "as_json", is_flag=True, help="The machine-readable report.")
@click.option("--kubeconfig", default=None, envvar="KUBECONFIG", help="For environments on a cluster.")
@click.pass_context
def triage_cmd(ctx: click.Context, env: str | None, as_json: bool, kubeconfig: str | None) -> None:
    """Answer four questions with the artifact that proves each answer: pipeline bug? wrong model
    deployed? data problem? stale model? Exit 0 healthy, 1 a problem found, 2 a usage error."""
    from shipyard.deploy import Kubectl
    from shipyard.triage import triage

    obj = ctx.ensure_object(dict)
    if env is not None:
        group = ctx.parent
        given = (
            group is not None and group.get_parameter_source("env") == click.core.ParameterSource.COMMANDLINE
        )
        if given and obj.get("env") != env:
            raise click.UsageError(f"--env {env} contradicts shipyard --env {obj['env']}")
        obj["env"] = env  # over $SHIPYARD_ENV, as an option on the command line should be
    settings = settings_of(ctx)
    kubectl = Kubectl(kubeconfig) if settings.namespace else None
    report = triage(settings, Path.cwd(), kubectl)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        sys.exit(report.exit_code)
    verdict = (
        "HEALTHY"
        if report.healthy
        else "PROBLEM: "
        + ", ".join(next(a.title for a in report.answers if a.question == q) for q in report.causes)
    )
    click.secho(
        f"triage of {report.environment} at {report.generated_at}: {verdict}",
        fg="green" if report.healthy else "red",
        bold=True,
    )
    width = max(len(f.check) for a in report.answers for f in a.findings)
    for answer in report.answers:
        click.echo("")
        click.secho(f"{answer.title:<24}{answer.verdict.upper()}", fg=COLOURS[answer.verdict], bold=True)
        for f in answer.findings:
            click.echo(
                "  "
                + click.style(f"{f.verdict:<8}", fg=COLOURS[f.verdict])
                + f"{f.check:<{width}}  {f.message}"
            )
            click.echo(f"  {'':<8}{'':<{width}}  evidence: {f.evidence}")
    sys.exit(report.exit_code)
