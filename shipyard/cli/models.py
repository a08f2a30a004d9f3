"""`shipyard models`: registered versions."""

from __future__ import annotations

import json

import click

from shipyard.cli.root import main, settings_of


@main.group()
def models() -> None:
    """Registered model versions."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Versions with status (candidate / champion / rejected / retired) and headline metrics."""
    from shipyard.registry import ModelRegistry

    settings = settings_of(ctx)
    reg = ModelRegistry(settings.model_registry)
    entries = reg.versions()
    if as_json:
        champion = reg.champion()
        payload = {
            "registry": settings.model_registry,
            "champion": champion.version if champion else None,
            "versions": [e.model_dump(mode="json") for e in entries],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    if not entries:
        click.echo(f"no model versions in {settings.model_registry} (run `make run`)")
        return
    click.echo(f"{'VERSION':<8} {'STATUS':<10} {'ACCURACY':>8} {'MACRO-F1':>8}  {'CREATED':<25} REASON")
    for e in entries:
        click.echo(
            f"{e.version:<8} {e.status:<10} {e.accuracy:>8.3f} {e.macro_f1:>8.3f}  "
            f"{e.created_at:<25} {e.reason}"
        )


@models.command("show")
@click.argument("version")
@click.pass_context
def show_model(ctx: click.Context, version: str) -> None:
    """Print a version's model card (after checking its content hash)."""
    from shipyard.card import CARD_MD
    from shipyard.registry import ModelRegistry

    settings = settings_of(ctx)
    reg = ModelRegistry(settings.model_registry)
    entry = reg.get(version)
    vdir = reg.fetch(version, settings.state_dir / "cache" / "models")
    click.secho(f"{entry.version}: {entry.status} ({entry.reason})", bold=True)
    click.echo(f"uri: {reg.uri(version)}\ncontent hash: {entry.content_hash}\n")
    click.echo((vdir / CARD_MD).read_text())


@models.command("gc")
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Minutes: younger leftovers may be a registration in progress.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.pass_context
def gc(ctx: click.Context, older_than: float, dry_run: bool) -> None:
    """Report or remove what crashed registrations left behind (never visible versions)."""
    from datetime import timedelta

    from shipyard.registry import ModelRegistry

    reg = ModelRegistry(settings_of(ctx).model_registry)
    if dry_run:
        found = reg.orphans()
        click.echo("\n".join(found) if found else "no orphans")
        return
    removed = reg.clean_orphans(timedelta(minutes=older_than))
    click.echo("\n".join(f"removed {uri}" for uri in removed) if removed else "nothing to remove")
