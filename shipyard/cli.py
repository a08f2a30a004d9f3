"""The `shipyard` command line.

Every command reads the environment's settings (`--env`, else $SHIPYARD_ENV, else local) and
reports expected failures as one line naming what is wrong, with a non-zero exit code.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import click

from shipyard.errors import ShipyardError
from shipyard.settings import Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "settings" not in obj:
        path = obj.get("settings_path")
        obj["settings"] = load_settings(obj.get("env"), Path(path) if path else None).resolve(Path.cwd())
    settings: Settings = obj["settings"]
    return settings


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
    from shipyard import local_run

    settings = _settings(ctx)
    result = local_run.run(settings, verbose=verbose)
    s = result.summary
    click.echo("")
    click.echo(s["evaluation_markdown"])
    verb = "registered" if s["created"] else "unchanged, kept"
    colour = {"champion": "green", "candidate": "yellow", "rejected": "red"}.get(s["status"], "white")
    click.secho(f"model {s['version']}: {s['status']} ({verb}; {s['reason']})", fg=colour, bold=True)
    click.echo(f"model card: {s['card']}")
    click.echo(
        "time: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
        + f"; total {sum(result.seconds.values()):.1f}s"
    )
    if serve_demo:
        from serving.demo import run_demo

        run_demo(settings)


@main.command()
@click.option("--check", is_flag=True, help="Fail if the committed YAML differs from a fresh compile.")
def compile(check: bool) -> None:
    """Compile the pipelines to their committed YAML."""
    import tempfile

    from pipelines.training import COMPILED, compile_pipeline

    if not check:
        click.echo(f"compiled {compile_pipeline()}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(Path(tmp) / COMPILED.name).read_text()
    if not COMPILED.exists() or COMPILED.read_text() != fresh:
        raise click.ClickException(f"{COMPILED} is stale: run `make compile` and commit it")
    click.echo(f"{COMPILED} is up to date")


@main.group()
def data() -> None:
    """Synthetic data for the reference use case."""


def _date(_: click.Context, __: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


@data.command("generate")
@click.option("--customers", type=click.IntRange(min=1), default=None)
@click.option("--tickets", type=click.IntRange(min=1), default=None)
@click.option("--start", callback=_date, default=None, help="First day (YYYY-MM-DD).")
@click.option("--end", callback=_date, default=None, help="Last day, inclusive (YYYY-MM-DD).")
@click.option("--seed", type=int, default=None)
@click.option(
    "--covariate-drift-from", callback=_date, default=None, help="Shift feature distributions from this day."
)
@click.option(
    "--concept-drift-from",
    callback=_date,
    default=None,
    help="Change the text->department mapping from this day.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Directory (default: settings' data_dir)."
)
@click.pass_context
def generate(ctx: click.Context, /, out: Path | None, **kwargs: Any) -> None:
    """Generate deterministic tickets and customer snapshots as parquet."""
    from shipyard import synthetic
    from shipyard.local_run import synthetic_config

    settings = _settings(ctx)
    base = asdict(synthetic_config(settings))
    base.update({k: v for k, v in kwargs.items() if v is not None})
    try:
        cfg = synthetic.SyntheticConfig(**base)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    target = out or settings.data_dir
    data_ = synthetic.generate(cfg)
    synthetic.write(data_, cfg, target)
    click.echo(
        f"wrote {len(data_.tickets)} tickets, {len(data_.customer_profile)} profile and "
        f"{len(data_.customer_activity)} activity snapshots to {target}"
    )


@main.group()
def models() -> None:
    """Registered model versions."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Versions with status (candidate / champion / rejected / retired) and headline metrics."""
    from shipyard.registry import ModelRegistry

    settings = _settings(ctx)
    reg = ModelRegistry(settings.model_registry)
    entries = reg.versions()
    if as_json:
        champion = reg.champion()
        payload = {
            "registry": settings.model_registry,
            "champion": champion.version if champion else None,
            "versions": [asdict(e) for e in entries],
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

    vdir = ModelRegistry(_settings(ctx).model_registry).verify(version)
    click.echo((vdir / CARD_MD).read_text())


@main.command()
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--model-version", "version", default=None, help="A registered version (default: the champion)."
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Predict threads (default 1).")
@click.option("--no-feature-lookup", is_flag=True, help="Serve without the online store (customers unknown).")
@click.option("--access-log", is_flag=True, help="Log one line per HTTP request.")
@click.pass_context
def serve(
    ctx: click.Context,
    port: int,
    version: str | None,
    threads: int | None,
    no_feature_lookup: bool,
    access_log: bool,
) -> None:
    """Serve a registered model version with KServe (V1 + V2 REST, /metrics) until Ctrl-C."""
    from serving.server import config_from_settings
    from serving.server import run as serve_model

    serve_model(
        config_from_settings(
            _settings(ctx),
            port=port,
            version=version,
            threads=threads,
            feature_lookup=False if no_feature_lookup else None,
            access_log=access_log or None,
        )
    )
