"""`shipyard data`: the project's source data."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard.cli.root import main, settings_of


@main.group()
def data() -> None:
    """The project's source data."""


def _options(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


@data.command("generate")
@click.option(
    "--set",
    "options",
    multiple=True,
    callback=_options,
    help="A generator option as KEY=VALUE (repeatable), e.g. --set rows=1000000.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Directory (default: settings' data_dir)."
)
@click.pass_context
def generate(ctx: click.Context, options: dict[str, str], out: Path | None) -> None:
    """Generate the project's deterministic synthetic data as parquet (its generator's options)."""
    from shipyard.project import import_callable

    settings = settings_of(ctx)
    spec = settings.spec
    if spec.generator is None:
        raise click.ClickException(f"project {spec.name} has no data generator")
    generate_data = import_callable(spec.generator, f"project {spec.name}: data generator")
    click.echo(generate_data(out or settings.data_dir, {**settings.data, **options}))
