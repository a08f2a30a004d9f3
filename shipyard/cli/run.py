"""`shipyard run`: the whole loop on this machine."""

from __future__ import annotations

import click

from shipyard.cli.root import main, settings_of


@main.command()
@click.option("--verbose", is_flag=True, help="Show KFP's full task output, not just progress lines.")
@click.option(
    "--serve-demo/--no-serve-demo",
    default=True,
    show_default=True,
    help="End by serving the champion briefly and sending it a few requests.",
)
@click.pass_context
def run(ctx: click.Context, verbose: bool, serve_demo: bool) -> None:
    """Data -> Feast -> training pipeline (kfp.local) -> registry, then print a summary."""
    from pipelines import local_run

    settings = settings_of(ctx)
    result = local_run.run(settings, verbose=verbose)
    s = result.summary
    click.echo("")
    click.echo(s.evaluation_markdown)
    verb = "registered" if s.created else "unchanged, kept"
    colour = {"champion": "green", "candidate": "yellow", "rejected": "red"}.get(s.status, "white")
    click.secho(f"model {s.version}: {s.status} ({verb}; {s.reason})", fg=colour, bold=True)
    click.echo(f"model card: {s.card}")
    click.echo(
        "time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
        + f"; total {sum(result.seconds.values()):.1f}s"
    )
    if serve_demo:
        from serving.demo import run_demo

        run_demo(settings)
