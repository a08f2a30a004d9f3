"""`shipyard features`: the environment's Feast repo."""

from __future__ import annotations

import click

from shipyard.cli.root import main, settings_of


@main.group()
def features() -> None:
    """The Feast feature repo of the environment."""


@features.command("apply")
@click.pass_context
def apply(ctx: click.Context) -> None:
    """`feast apply` (a registry copied from another checkout is set aside, never applied)."""
    from shipyard import featurestore

    settings = settings_of(ctx)
    note = featurestore.apply(settings.feature_repo, settings.feature_store_yaml)
    if note:
        click.echo(note)
    click.echo(f"applied {settings.feature_repo}")


@features.command("reset")
@click.pass_context
def reset(ctx: click.Context) -> None:
    """Recover a broken local feature store: remove its registry and SQLite online store, apply afresh.

    The online store is empty afterwards; `shipyard run` validates and materializes the data again.
    """
    from shipyard import featurestore

    settings = settings_of(ctx)
    removed = featurestore.reset_local(settings.feature_repo, settings.feature_store_yaml)
    for path in removed:
        click.echo(f"removed {path}")
    click.echo(f"applied {settings.feature_repo} afresh; run `shipyard run` to load validated features")
