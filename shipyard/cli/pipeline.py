"""`shipyard compile`: the committed pipeline YAML."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from shipyard.cli.root import main


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
