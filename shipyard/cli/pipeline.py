"""`shipyard compile` (the committed pipeline YAML) and `shipyard pipelines compile --env E`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from shipyard.cli.root import main, settings_of


@main.command()
@click.option("--check", is_flag=True, help="Fail if the committed YAML differs from a fresh compile.")
def compile(check: bool) -> None:
    """Compile the pipelines to their committed YAML."""
    from pipelines.training import COMPILED, compile_pipeline, same_pipeline

    if not check:
        click.echo(f"compiled {compile_pipeline()}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(Path(tmp) / COMPILED.name).read_text()
    if not COMPILED.exists() or not same_pipeline(COMPILED.read_text(), fresh):
        raise click.ClickException(f"{COMPILED} is stale: run `make compile` and commit it")
    click.echo(f"{COMPILED} is up to date")


@main.group()
def pipelines() -> None:
    """Pipeline packages for a cluster."""


@pipelines.command("compile")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the package (default: shipyard-training-<env>.yaml).",
)
@click.pass_context
def compile_for_env(ctx: click.Context, out: Path | None) -> None:
    """The training pipeline package for the environment (`--env E`): its settings as defaults, its
    Secrets injected into every task; upload it in the Kubeflow UI."""
    from pipelines.training import compile_pipeline

    settings = settings_of(ctx)
    target = out or Path(f"shipyard-training-{settings.environment}.yaml")
    click.echo(f"compiled {compile_pipeline(target, settings)} for {settings.environment}")
