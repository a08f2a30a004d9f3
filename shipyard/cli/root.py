"""The `shipyard` group: settings selection and one-line errors for every command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from shipyard.errors import ShipyardError
from shipyard.settings import Settings, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """The environment's settings, anchored at the checkout; the object-storage endpoint they name
    becomes this process's environment (explicit variables win), exactly as the chart sets it for
    pods, so every S3 client here and in the pipeline steps it starts reads the same place."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "settings" not in obj:
        path = obj.get("settings_path")
        settings = load_settings(obj.get("env"), Path(path) if path else None).resolve(Path.cwd())
        for key, value in settings.storage_env().items():
            os.environ.setdefault(key, value)
        obj["settings"] = settings
    loaded: Settings = obj["settings"]
    return loaded


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShipyardError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("--env", envvar="SHIPYARD_ENV", default=None, help="local (default), dev, staging or prod.")
@click.option(
    "--settings", "settings_path", envvar="SHIPYARD_SETTINGS", default=None, help="A settings file."
)
@click.pass_context
def main(ctx: click.Context, env: str | None, settings_path: str | None) -> None:
    """Shipyard: continuous training on KFP, Feast and KServe."""
    ctx.ensure_object(dict).update(env=env, settings_path=settings_path)
