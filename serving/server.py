"""Start the model server: `kserve.ModelServer` with Shipyard's model, edge middleware and errors.

The server serves exactly one version directory it is given (`--model_dir`, which KServe's storage
initializer fills from the version's storageUri) with the content hash it must have; its flags are
KServe's own (`--model_name`, `--http_port`, ...) plus Shipyard's, and an unknown flag is an error.
Locally `shipyard serve` (== `make serve`) resolves a version on the registry and starts this same
entry point. The model is registered with the server even when it failed to load, so readiness
probes answer 503 (and the pod is kept out of the Service) instead of the process crash-looping.
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
from serving.model import ShipyardModel
from serving.requestlog import JsonLinesSink, RequestLog

log = logging.getLogger("shipyard.serving")

DEFAULT_PORT = 8080
MAX_BODY_BYTES = 1_048_576


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path
    content_hash: str
    model_name: str
    feature_repo: Path
    feature_store_yaml: str = "feature_store.yaml"
    version_label: str | None = None  # shown as model_version; default: the hash's first 12 digits
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
    def make(feature_service: str, contract: Any) -> FeatureSource:
        if not config.feature_lookup:
            return RequestOnlyFeatures(contract)
        return FeastOnlineFeatures(config.feature_repo, config.feature_store_yaml, feature_service, contract)

    return make


def build(config: ServeConfig) -> tuple[Any, ShipyardModel]:
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
    model = ShipyardModel(
        config.model_name,
        config.model_dir,
        config.content_hash,
        feature_source_factory(config),
        request_log=request_log,
        threads=config.threads,
        version_label=config.version_label,
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


def parser() -> argparse.ArgumentParser:
    """KServe's model-server flags (so a ServingRuntime can start this unchanged) plus Shipyard's."""
    from kserve import model_server

    p = argparse.ArgumentParser(
        prog="python -m serving", description=__doc__, parents=[model_server.parser], allow_abbrev=False
    )
    p.add_argument("--model_dir", required=True, type=Path, help="The version directory to serve.")
    p.add_argument(
        "--content_hash", required=True, help="The content hash the directory must have (from the release)."
    )
    p.add_argument("--model_version", default=None, help="Version label in answers (e.g. v3).")
    p.add_argument("--feature_repo", required=True, type=Path)
    p.add_argument("--feature_store_yaml", default="feature_store.yaml")
    p.add_argument("--threads", type=int, default=1, help="Predict threads (see docs/serving.md).")
    p.add_argument("--switch_interval_ms", type=float, default=1.0, help="Python's GIL switch interval.")
    p.add_argument("--no_feature_lookup", dest="feature_lookup", action="store_false")
    p.add_argument("--request_log_dir", type=Path, default=None, help="Default: no request log.")
    p.add_argument("--request_log_batch", type=int, default=256)
    p.add_argument("--request_log_flush_seconds", type=float, default=1.0)
    p.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES)
    p.add_argument("--access_log", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None = None) -> ServeConfig:
    """`python -m serving ...`: the container entry point. Unknown flags are errors (exit 2)."""
    p = parser()
    a = p.parse_args(argv)
    if not a.model_name:
        p.error("--model_name is required")
    # A KServe flag this server accepts (a ServingRuntime may pass it) but cannot honour is refused
    # rather than silently ignored. (--enable_grpc defaults to true in KServe's parser, so it cannot
    # be told apart from "not given"; the server speaks REST V1 + V2 only, see docs/serving.md.)
    if a.workers != 1:
        p.error(f"--workers: one worker per process (scale with replicas); got {a.workers}")
    return ServeConfig(
        model_dir=a.model_dir,
        content_hash=a.content_hash,
        model_name=a.model_name,
        version_label=a.model_version,
        feature_repo=a.feature_repo,
        feature_store_yaml=a.feature_store_yaml,
        port=a.http_port,
        threads=a.threads,
        switch_interval_ms=a.switch_interval_ms,
        feature_lookup=a.feature_lookup,
        request_log_dir=a.request_log_dir,
        request_log_batch=a.request_log_batch,
        request_log_flush_seconds=a.request_log_flush_seconds,
        max_body_bytes=a.max_body_bytes,
        access_log=a.access_log,
    )


def main(argv: Sequence[str] | None = None) -> None:
    run(parse_args(argv if argv is not None else sys.argv[1:]))


def server_args(config: ServeConfig) -> list[str]:
    """The command-line flags that make `python -m serving` run `config` (for child processes)."""
    args = [
        "--model_name", config.model_name,
        "--model_dir", str(config.model_dir),
        "--content_hash", config.content_hash,
        "--feature_repo", str(config.feature_repo),
        "--feature_store_yaml", config.feature_store_yaml,
        "--http_port", str(config.port),
        "--threads", str(config.threads),
        "--switch_interval_ms", str(config.switch_interval_ms),
        "--request_log_batch", str(config.request_log_batch),
        "--request_log_flush_seconds", str(config.request_log_flush_seconds),
        "--max_body_bytes", str(config.max_body_bytes),
    ]  # fmt: skip
    if config.version_label:
        args += ["--model_version", config.version_label]
    if not config.feature_lookup:
        args.append("--no_feature_lookup")
    if config.request_log_dir is not None:
        args += ["--request_log_dir", str(config.request_log_dir)]
    if config.access_log:
        args.append("--access_log")
    return args


def config_from_settings(settings: Any, version: str | None = None, **overrides: Any) -> ServeConfig:
    """`shipyard serve`: resolve a version (the champion by default) on the environment's registry,
    fetch and verify it locally, and configure the server for that fixed directory."""
    from shipyard.errors import ShipyardError
    from shipyard.registry import ModelRegistry

    reg = ModelRegistry(settings.model_registry)
    entry = reg.get(version) if version else reg.champion()
    if entry is None:
        raise ShipyardError(f"no champion model in {settings.model_registry}: run `make run` first")
    model_dir = reg.fetch(entry.version, Path(settings.state_dir) / "cache" / "models")
    log_dir = settings.serving.request_log.directory
    base = ServeConfig(
        model_dir=model_dir,
        content_hash=entry.content_hash,
        model_name=settings.spec.name,
        version_label=entry.version,
        feature_repo=Path(settings.feature_repo),
        feature_store_yaml=settings.feature_store_yaml,
        port=settings.serving.port,
        threads=settings.serving.threads,
        feature_lookup=settings.serving.feature_lookup,
        max_body_bytes=settings.serving.max_body_bytes,
        request_log_dir=Path(settings.state_dir) / log_dir if log_dir else None,
        request_log_batch=settings.serving.request_log.batch,
        request_log_flush_seconds=settings.serving.request_log.flush_seconds,
    )
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
