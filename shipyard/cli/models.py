"""`shipyard models`: registered versions."""

from __future__ import annotations

import json

import click

from shipyard.cli.root import main, settings_of


@main.group()
def models() -> None:
    """Registered model versions."""


def _integrity(ctx: click.Context, version: str) -> str:
    """ "ok", or what is wrong with the version's files (every file against its recorded hash)."""
    from shipyard.errors import RegistryError
    from shipyard.registry import ModelRegistry

    settings = settings_of(ctx)
    try:
        ModelRegistry(settings.model_registry).fetch(version, settings.state_dir / "cache" / "models")
    except RegistryError as exc:
        return f"CORRUPT: {exc}"
    return "ok"


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Versions with status, headline metrics and integrity (every file checked against its hash)."""
    from shipyard.registry import ModelRegistry

    settings = settings_of(ctx)
    reg = ModelRegistry(settings.model_registry)
    entries = reg.versions()
    integrity = {e.version: _integrity(ctx, e.version) for e in entries}
    if as_json:
        champion = reg.champion()
        payload = {
            "registry": settings.model_registry,
            "champion": champion.version if champion else None,
            "versions": [{**e.model_dump(mode="json"), "integrity": integrity[e.version]} for e in entries],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    if not entries:
        click.echo(f"no model versions in {settings.model_registry} (run `make run`)")
        return
    click.echo(
        f"{'VERSION':<8} {'STATUS':<11} {'ACCURACY':>8} {'MACRO-F1':>8} {'INTEGRITY':<9}  "
        f"{'CREATED':<25} REASON"
    )
    for e in entries:
        ok = integrity[e.version]
        click.echo(
            f"{e.version:<8} {e.status:<11} {e.accuracy:>8.3f} {e.macro_f1:>8.3f} "
            f"{'ok' if ok == 'ok' else 'CORRUPT':<9}  {e.created_at:<25} {e.reason}"
        )
    for version, problem in integrity.items():
        if problem != "ok":
            click.secho(f"{version}: {problem}", fg="red", err=True)


@models.command("quarantine")
@click.argument("version")
@click.option("--reason", required=True, help="Why, recorded in the registry with the change.")
@click.pass_context
def quarantine(ctx: click.Context, version: str, reason: str) -> None:
    """Set a version aside for good (e.g. it failed its integrity check); a champion loses the title."""
    from shipyard.registry import ModelRegistry

    entry = ModelRegistry(settings_of(ctx).model_registry).set_status(
        version, "quarantined", f"quarantined: {reason}"
    )
    click.echo(f"{entry.version}: {entry.status} ({entry.reason})")


@models.command("promote")
@click.argument("version")
@click.option("--reason", required=True, help="Why, recorded in the registry with the change.")
@click.pass_context
def promote(ctx: click.Context, version: str, reason: str) -> None:
    """Make a version that passed its gates the champion (after verifying every file)."""
    from shipyard.errors import RegistryError
    from shipyard.registry import ModelRegistry

    problem = _integrity(ctx, version)
    if problem != "ok":
        raise RegistryError(f"model version {version} cannot be promoted: {problem}")
    entry = ModelRegistry(settings_of(ctx).model_registry).set_status(
        version, "champion", f"promoted by hand: {reason}"
    )
    click.echo(f"{entry.version}: {entry.status} ({entry.reason})")


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
