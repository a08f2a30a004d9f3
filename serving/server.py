"""Start the model server: `kserve.ModelServer` with Shipyard's model, edge middleware and errors.

Locally `shipyard serve` (== `make serve`) runs this on the champion from `make run`; in a cluster
the same entry point runs in the KServe predictor container with a Redis-backed Feast config. The
model is registered with the server even when it failed to load, so readiness probes answer 503
(and the pod is kept out of the Service) instead of the process crash-looping.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane

from serving import http
from serving.errors import MalformedRequest, ModelNotReady, UnknownModel, echo, install_handlers
from serving.features import FeastOnlineFeatures, FeatureSource, RequestOnlyFeatures
from serving.model import TicketRouter
from serving.requestlog import JsonLinesSink, RequestLog

log = logging.getLogger("shipyard.serving")

DEFAULT_MODEL_NAME = "ticket-router"
DEFAULT_PORT = 8080
MAX_BODY_BYTES = 1_048_576


@dataclass(frozen=True)
class ServeConfig:
    registry: str
    feature_repo: Path
    feature_store_yaml: str = "feature_store.yaml"
    version: str | None = None  # None: the registry's champion
    model_name: str = DEFAULT_MODEL_NAME
    port: int = DEFAULT_PORT
    threads: int = 1
    switch_interval_ms: float = 1.0
    feature_lookup: bool = True
    request_log_dir: Path | None = Path(".shipyard/request_log")
    request_log_batch: int = 256
    request_log_flush_seconds: float = 1.0
    max_body_bytes: int = MAX_BODY_BYTES
    access_log: bool = False


class ShipyardDataPlane(DataPlane):  # type: ignore[misc]
    """KServe's data plane with readiness that means "the model can answer", and our error types.

    KServe's server readiness is always true and its handlers for its own exception types are
    installed after ours; raising Shipyard's errors at the source keeps every status in
    `serving.errors`.
    """

    def _model(self, name: str) -> Any:
        model = self.model_registry.get_model(name)
        if model is None:
            raise UnknownModel(f"no model named {echo(name)!r} is served here", "model_name", "exists")
        return model

    def get_model_from_registry(self, name: str) -> Any:
        return self._model(name)

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        model = self._model(model_name)
        if not await model.healthy():
            reason = getattr(model, "not_ready_reason", "loading")
            raise ModelNotReady(f"model {model.name} is not ready: {reason}", "model", "ready")
        return True

    async def ready(self) -> bool:
        models = list(self.model_registry.get_models().values())
        for model in models:
            if not await model.healthy():
                reason = getattr(model, "not_ready_reason", "loading")
                raise ModelNotReady(f"model {model.name} is not ready: {reason}", "model", "ready")
        if not models:
            raise ModelNotReady("no model is registered", "model", "ready")
        return True

    def decode(self, body: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().decode(body, headers, *args, **kwargs)
        except InvalidInput as exc:
            reason = "not valid JSON" if "format" in str(exc) else "not decodable"
            raise MalformedRequest(f"body: {reason}", "body", "json") from exc


def feature_source_factory(config: ServeConfig) -> Any:
    def make(feature_service: str) -> FeatureSource:
        if not config.feature_lookup:
            return RequestOnlyFeatures()
        return FeastOnlineFeatures(config.feature_repo, config.feature_store_yaml, feature_service)

    return make


def build(config: ServeConfig) -> tuple[Any, TicketRouter]:
    """A configured, not yet started `kserve.ModelServer` and its (loaded or not-ready) model."""
    import kserve
    from kserve.model_server import app

    request_log = (
        RequestLog(
            JsonLinesSink(config.request_log_dir),
            batch_size=config.request_log_batch,
            flush_seconds=config.request_log_flush_seconds,
        )
        if config.request_log_dir is not None
        else None
    )
    model = TicketRouter(
        config.model_name,
        config.registry,
        config.version,
        feature_source_factory(config),
        request_log=request_log,
        threads=config.threads,
    )
    model.load()
    server = kserve.ModelServer(
        http_port=config.port,
        enable_grpc=False,
        workers=1,
        enable_latency_logging=False,
        grace_period=10,
    )
    server.dataplane = ShipyardDataPlane(model_registry=server.registered_models)
    app.add_middleware(http.ServingMiddleware, request_log=request_log, max_body_bytes=config.max_body_bytes)
    install_handlers(app, _note_error)
    server.register_model(model)
    return server, model


def _note_error(body: dict[str, Any]) -> str | None:
    ctx = http.current()
    if ctx is None:
        return None
    ctx.error = body
    return ctx.request_id


def run(config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT; the request log is flushed before this returns."""
    # The predict threads hold the GIL for most of a scikit-learn call; a shorter switch interval
    # lets the event loop (probes, parsing) take it back sooner. Measured in benchmarks/serving.py.
    sys.setswitchinterval(config.switch_interval_ms / 1000)
    server, model = build(config)
    if not config.access_log:
        # One line per request from uvicorn and from KServe's timing middleware: the request log
        # and the metrics carry the same facts without a synchronous write on the hot path.
        logging.getLogger("uvicorn.access").disabled = True
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    try:
        # The model is already registered (ready or not): start() with no further models.
        server.start([])
    finally:
        model.stop()


def parse_args(argv: Sequence[str] | None = None) -> ServeConfig:
    """`python -m serving ...`: the container entry point (the CLI's `shipyard serve` reads settings)."""
    p = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    p.add_argument("--registry", required=True, help="Model registry URI (local path or file://).")
    p.add_argument("--feature-repo", required=True, type=Path)
    p.add_argument("--feature-store-yaml", default="feature_store.yaml")
    p.add_argument("--model-version", dest="version", default=None, help="Default: the champion.")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--threads", type=int, default=1, help="Predict threads (see docs/serving.md).")
    p.add_argument("--switch-interval-ms", type=float, default=1.0, help="Python's GIL switch interval.")
    p.add_argument("--no-feature-lookup", dest="feature_lookup", action="store_false")
    p.add_argument("--request-log-dir", type=Path, default=Path(".shipyard/request_log"))
    p.add_argument("--no-request-log", action="store_true")
    p.add_argument("--request-log-batch", type=int, default=256)
    p.add_argument("--request-log-flush-seconds", type=float, default=1.0)
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    p.add_argument("--access-log", action="store_true")
    a, _ = p.parse_known_args(argv)
    return ServeConfig(
        registry=a.registry,
        feature_repo=a.feature_repo,
        feature_store_yaml=a.feature_store_yaml,
        version=a.version,
        model_name=a.model_name,
        port=a.port,
        threads=a.threads,
        switch_interval_ms=a.switch_interval_ms,
        feature_lookup=a.feature_lookup,
        request_log_dir=None if a.no_request_log else a.request_log_dir,
        request_log_batch=a.request_log_batch,
        request_log_flush_seconds=a.request_log_flush_seconds,
        max_body_bytes=a.max_body_bytes,
        access_log=a.access_log,
    )


def main(argv: Sequence[str] | None = None) -> None:
    run(parse_args(argv if argv is not None else sys.argv[1:]))


def config_from_settings(settings: Any, **overrides: Any) -> ServeConfig:
    """The server configuration for an environment's settings (`shipyard serve`)."""
    from shipyard.errors import ShipyardError
    from shipyard.registry import ModelRegistry

    version = overrides.get("version")
    if version is None and ModelRegistry(settings.model_registry).champion() is None:
        raise ShipyardError(f"no champion model in {settings.model_registry}: run `make run` first")
    base = ServeConfig(
        registry=settings.model_registry,
        feature_repo=Path(settings.feature_repo),
        feature_store_yaml=settings.feature_store_yaml,
        request_log_dir=Path(settings.model_registry).parent / "request_log"
        if "://" not in settings.model_registry
        else None,
    )
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
