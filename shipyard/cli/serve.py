"""`shipyard serve`: one registered version behind KServe, locally."""

from __future__ import annotations

import click

from shipyard.cli.root import main, settings_of


@main.command()
@click.option("--host", default=None, help="Listen address. Default: the settings' serving.host (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default: the settings' serving.port (8080).")
@click.option(
    "--model-version", "version", default=None, help="A registered version (default: the champion)."
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Predict threads (default 1).")
@click.option("--no-feature-lookup", is_flag=True, help="Serve without the online store (entities unknown).")
@click.option("--access-log", is_flag=True, help="Log one line per HTTP request.")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    version: str | None,
    threads: int | None,
    no_feature_lookup: bool,
    access_log: bool,
) -> None:
    """Serve one registered model version with KServe (V1 + V2 REST, /metrics) until Ctrl-C.

    The version is resolved here, fetched and verified; the server itself is given a fixed
    directory and its content hash, exactly as in a cluster.
    """
    from serving.server import config_from_settings
    from serving.server import run as serve_model

    serve_model(
        config_from_settings(
            settings_of(ctx),
            version=version,
            host=host,
            port=port,
            threads=threads,
            feature_lookup=False if no_feature_lookup else None,
            access_log=access_log or None,
        )
    )
