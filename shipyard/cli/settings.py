"""`shipyard settings`: an environment's effective settings and their schema."""

from __future__ import annotations

import json

import click

from shipyard.cli.root import main, settings_of


@main.group()
def settings() -> None:
    """Environment settings."""


@settings.command("show")
@click.pass_context
def show_settings(ctx: click.Context) -> None:
    """The environment's effective settings as JSON (after defaults)."""
    click.echo(settings_of(ctx).model_dump_json(indent=2))


@settings.command("schema")
def settings_schema_cmd() -> None:
    """The JSON schema every settings file is validated against."""
    from shipyard.settings import settings_schema

    click.echo(json.dumps(settings_schema(), indent=2, sort_keys=True))
