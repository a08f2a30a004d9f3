"""Start the model server: `kserve.ModelServer` with Shipyard's model, edge middleware and errors.

The server serves exactly one version directory it is given (`--model_dir`, which KServe's storage
initializer fills from the version's storageUri) with the content hash it must have; its flags are
KServe's own (`--model_name`, `--http_port`, ...) plus Shipyard's, and an unknown flag is an error.
Locally `shipyard serve` (== `make serve`) resolves a version on the registry and starts this same
entry point. The model is registered with the server even when it failed to load, so readiness
probes answer 503 (and the pod is kept out of the Service) instead of the process crash-looping.

Secure by default (docs/serving.md, "Security defaults"): the server listens on 127.0.0.1 unless
given `--host` (a pod passes 0.0.0.0); KServe's model repository endpoints (load/unload: anyone who
reached the port could unload the model) and the OpenAPI document and docs UI are not served unless
switched on. KServe builds its app and its uvicorn server inside `ModelServer.start()`, with the
listen address hard-coded; `ShipyardModelServer` adjusts both after KServe created them and before
they serve (the one place that knows KServe's internals), and the drain on SIGTERM replaces
KServe's signal handling (`serving.lifecycle`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from serving import http, tensors
from serving.connections import GuardedHttpProtocol
from serving.errors import (
    MalformedRequest,
    ModelNotReady,
    ShuttingDown,
    UnknownModel,
    echo,
    install_handlers,
)
from serving.features import FeastOnlineFeatures, FeatureSource, RequestOnlyFeatures
from serving.lifecycle import DrainingServer, Lifecycle, StartupInterrupted
from serving.model import ShipyardModel
from serving.requestlog import (
    TEXT_STORAGE,
    JsonLinesSink,
    LogShipper,
    RequestLog,
    RequestLogSink,
    ShippingSink,
)
from serving.workers import Supervisor, worker_socket

log = logging.getLogger("shipyard.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_BODY_BYTES = 1_048_576
GRACE_PERIOD = 20.0
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
MAX_RECORD_BYTES = 65_536
BATCH_MAX_ROWS = 64
BATCH_MAX_WAIT_MS = 2.0


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path
    content_hash: str
    model_name: str
    feature_repo: Path
    feature_store_yaml: str = "feature_store.yaml"
    version_label: str | None = None  # shown as model_version; default: the hash's first 12 digits
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int = 1
    workers: int = 1  # server processes on one port (serving.workers); 1: this process serves
    switch_interval_ms: float = 1.0
    batch_max_rows: int = BATCH_MAX_ROWS
    batch_max_wait_ms: float = BATCH_MAX_WAIT_MS
    feature_lookup: bool = True
    request_log_dir: Path | None = Path(".shipyard/request_log")
    request_log_batch: int = 256
    request_log_flush_seconds: float = 1.0
    request_log_max_record_bytes: int = MAX_RECORD_BYTES
    request_log_text: str = "raw"
    request_log_retention_days: float | None = None
    request_log_retention_bytes: int | None = None
    request_log_upload: str | None = None  # s3:// or file://: the directory is a spool (see requestlog)
    request_log_rollover_seconds: float = 300.0
    max_body_bytes: int = MAX_BODY_BYTES
    access_log: bool = False
    grace_period: float = GRACE_PERIOD
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    enable_model_repository: bool = False
    enable_docs: bool = False


class ShipyardDataPlane(DataPlane):  # type: ignore[misc]
    """KServe's data plane with readiness that means "the model can answer", and our error types.

    KServe's server readiness is always true and its handlers for its own exception types are
    installed after ours; raising Shipyard's errors at the source keeps every status in
    `serving.errors`. While the server drains, readiness is 503 `shutting_down`. Binary V2 bodies
    are decoded by `serving.tensors`, which checks every length the caller claims.
    """

    lifecycle: Lifecycle | None = None
    repository_enabled = False

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = super().metadata()
        meta["extensions"] = ["model_repository_extension"] if self.repository_enabled else []
        return meta

    def _not_draining(self) -> None:
        if self.lifecycle is not None and self.lifecycle.draining:
            raise ShuttingDown("the server is shutting down", "server", "shutting_down")

    def _model(self, name: str) -> Any:
        model = self.model_registry.get_model(name)
        if model is None:
            raise UnknownModel(f"no model named {echo(name)!r} is served here", "model_name", "exists")
        return model

    def get_model_from_registry(self, name: str) -> Any:
        return self._model(name)

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        model = self._model(model_name)
        if not disable_predictor_health_check:  # a probe, not the readiness check inside a prediction
            self._not_draining()
        if not await model.healthy():
            reason = getattr(model, "not_ready_reason", "loading")
            raise ModelNotReady(f"model {model.name} is not ready: {reason}", "model", "ready")
        return True

    async def ready(self) -> bool:
        self._not_draining()
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
            # KServe's messages may quote the caller's data: only its JSON failure is named.
            reason = "not valid JSON" if "Unrecognized request format" in str(exc) else "not decodable"
            raise MalformedRequest(f"body: {reason}", "body", "json") from exc

    def decode_inference_request(self, body: Any, headers: Any, model_name: str) -> Any:
        if isinstance(body, bytes):
            return tensors.decode(body, (headers or {}).get(tensors.HEADER), model_name)
        return super().decode_inference_request(body, headers, model_name)


class ShipyardRepositoryExtension(ModelRepositoryExtension):  # type: ignore[misc]
    """The model repository endpoints, when switched on: unload makes the model not ready (probes,
    predictions and the gauge agree; the request log stays open), load verifies it again."""

    def _shipyard_model(self, name: str) -> ShipyardModel:
        model = self._model_registry.get_model(name)
        if not isinstance(model, ShipyardModel):
            raise UnknownModel(f"no model named {echo(name)!r} is served here", "model_name", "exists")
        return model

    async def load(self, model_name: str) -> None:
        model = self._shipyard_model(model_name)
        if not await asyncio.to_thread(model.load):
            raise ModelNotReady(
                f"model {model.name} is not ready: {model.not_ready_reason}", "model", "ready"
            )

    async def unload(self, model_name: str) -> None:
        self._shipyard_model(model_name).unload()


class ShipyardModelServer(kserve.ModelServer):  # type: ignore[misc]
    """`kserve.ModelServer` with Shipyard's listen address, limits, routes, errors and drain.

    KServe 0.21 creates its `RESTServer` (and, through it, the uvicorn config with host 0.0.0.0 and
    the uvicorn server) in `start()`, and builds the app's routes and exception handlers when that
    server starts. `_serve` runs in between: it sets the address, the HTTP protocol with the header
    deadline and the draining uvicorn server, and wraps the app's creation so that Shipyard's
    exception handlers have the last word over KServe's.
    """

    def __init__(self, config: ServeConfig, lifecycle: Lifecycle, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shipyard_config = config
        self.lifecycle = lifecycle

    def register_signal_handler(self) -> None:
        # Called by start() just before its event loop runs. KServe's handler unloads every model at
        # once; the lifecycle's (installed since `run` began) drains instead, from now on as a flag
        # the loop notices rather than an exception raised into start-up.
        self.lifecycle.install_signal_handlers()
        self.lifecycle.entering_event_loop()

    async def _serve(self) -> None:
        rest = self._rest_server
        if rest is None or not hasattr(rest, "config") or not hasattr(rest, "create_application"):
            raise RuntimeError("kserve.ModelServer.start() no longer creates a RESTServer this server knows")
        config = self.shipyard_config
        rest.config.host = config.host
        rest.config.http = GuardedHttpProtocol.configured(config.header_timeout)
        rest.config.timeout_graceful_shutdown = math.ceil(config.grace_period)
        rest._server = DrainingServer(rest.config, self.lifecycle, worker_socket(config.host, config.port))
        create_application = rest.create_application

        def create_hardened_application() -> None:
            create_application()
            from kserve.model_server import app

            harden(app, config)

        rest.create_application = create_hardened_application
        if self.lifecycle.draining:  # SIGTERM between KServe's start() and here: do not start at all
            self.lifecycle.announce()
            for server in self.servers:
                server.close()  # the coroutines start() prepared, never awaited
            return
        await super()._serve()


def switched_off(config: ServeConfig) -> Callable[[str], bool]:
    """Which request paths this server does not serve: answered 404 at the edge, before any route.

    Matching paths at the edge rather than removing KServe's routes does not depend on how FastAPI
    keeps routes internally (0.165 keeps included routers as branches), and covers KServe versions
    whose V1 API had `:load`/`:unload` too.
    """
    patterns = [r"/v1/models/[^/]+:explain"]  # no explainer here: KServe's route only ever answered 501
    if not config.enable_model_repository:
        patterns += [r"/v2/repository(/.*)?", r"/v1/models/[^/]+:(load|unload)", r"/v1/repository(/.*)?"]
    if not config.enable_docs:
        patterns += [r"/openapi\.json", r"/docs(/.*)?", r"/redoc(/.*)?"]
    off = re.compile("|".join(f"(?:{p})" for p in patterns))
    return lambda path: off.fullmatch(path.rstrip("/") or "/") is not None


def harden(app: Any, config: ServeConfig) -> None:
    """After KServe built its app: docs if switched on, and Shipyard's exception handlers last.

    Without `--access_log`, KServe's TimingMiddleware goes: it only feeds the per-request timing
    lines of the access log, and its two `getrusage` calls per request took a fifth of the event
    loop's time under load (the edge middleware measures latency for the metrics anyway).
    """
    if config.enable_docs and app.docs_url is None:  # the app was created without KServe's own flag
        app.docs_url, app.redoc_url = "/docs", "/redoc"
        app.setup()
    if not config.access_log and app.middleware_stack is None:
        from timing_asgi import TimingMiddleware  # type: ignore[import-untyped]

        app.user_middleware = [m for m in app.user_middleware if m.cls is not TimingMiddleware]
    install_handlers(app, _note_error, http.cause)


def feature_source_factory(config: ServeConfig) -> Any:
    def make(feature_service: str, contract: Any) -> FeatureSource:
        if not config.feature_lookup:
            return RequestOnlyFeatures(contract)
        return FeastOnlineFeatures(config.feature_repo, config.feature_store_yaml, feature_service, contract)

    return make


def request_log_sink(config: ServeConfig, directory: Path) -> RequestLogSink:
    """JSON lines in `directory`; with an upload URI, a spool shipped to object storage."""
    spool = config.request_log_upload is not None
    sink = JsonLinesSink(
        directory,
        retention_days=config.request_log_retention_days,
        retention_bytes=config.request_log_retention_bytes,
        rollover_seconds=config.request_log_rollover_seconds if spool else None,
    )
    if config.request_log_upload is None:
        return sink
    # Rounds a few times per rollover period: a closed file waits a fraction of it.
    interval = min(30.0, max(0.2, config.request_log_rollover_seconds / 4))
    return ShippingSink(sink, LogShipper(sink, config.request_log_upload, interval))


def build(config: ServeConfig, lifecycle: Lifecycle | None = None) -> tuple[Any, ShipyardModel]:
    """A configured, not yet started model server and its (loaded or not-ready) model."""
    from kserve.model_server import app

    lifecycle = lifecycle or Lifecycle(config.grace_period)
    request_log = (
        RequestLog(
            request_log_sink(config, config.request_log_dir),
            batch_size=config.request_log_batch,
            flush_seconds=config.request_log_flush_seconds,
            max_record_bytes=config.request_log_max_record_bytes,
            text=config.request_log_text,
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
        batch_max_rows=config.batch_max_rows,
        batch_max_wait=config.batch_max_wait_ms / 1000,
    )
    try:
        model.load()
        server = ShipyardModelServer(
            config,
            lifecycle,
            http_port=config.port,
            enable_grpc=False,
            workers=1,
            enable_latency_logging=False,
            enable_docs_url=config.enable_docs,
            grace_period=math.ceil(config.grace_period),
        )
    except BaseException:
        model.stop()
        raise
    dataplane = ShipyardDataPlane(model_registry=server.registered_models)
    dataplane.lifecycle = lifecycle
    dataplane.repository_enabled = config.enable_model_repository
    server.dataplane = dataplane
    server.model_repository_extension = ShipyardRepositoryExtension(model_registry=server.registered_models)
    app.add_middleware(
        http.ServingMiddleware,
        request_log=request_log,
        max_body_bytes=config.max_body_bytes,
        lifecycle=lifecycle,
        body_timeout=config.body_timeout,
        switched_off=switched_off(config),
    )
    install_handlers(app, _note_error, http.cause)
    server.register_model(model)
    lifecycle.on_drain(model.draining)
    return server, model


def _note_error(body: dict[str, Any]) -> str | None:
    ctx = http.current()
    if ctx is None:
        return None
    ctx.error = body
    return ctx.request_id


def configure_logging() -> None:
    """KServe's logging (its `--configure_logging`, `--log_config_file`) before the model loads, as
    KServe asks; Shipyard's server log lines go through the same handlers unless someone (the CLI)
    configured them already."""
    from kserve import logging as kserve_logging
    from kserve.model_server import args

    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    ours = logging.getLogger("shipyard")
    if not ours.handlers and kserve_logging.logger.handlers:
        for handler in kserve_logging.logger.handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False


def run(config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT, then drain; the request log is flushed before this returns.

    A SIGTERM/SIGINT while the model loads ends start-up: the process exits 0 without serving.
    With `workers` > 1 this process supervises that many server processes (serving.workers).
    """
    if config.workers > 1:
        configure_logging()
        code = Supervisor(config, config.workers).run()
        if code:
            sys.exit(code if code > 0 else 128 - code)  # killed by signal N: 128 + N, as a shell says
        return
    # The predict threads hold the GIL for most of a scikit-learn call; a shorter switch interval
    # lets the event loop (probes, parsing) take it back sooner. Measured in benchmarks/serving.py.
    sys.setswitchinterval(config.switch_interval_ms / 1000)
    configure_logging()
    lifecycle = Lifecycle(config.grace_period)
    lifecycle.install_signal_handlers()
    model: ShipyardModel | None = None
    try:
        server, model = build(config, lifecycle)
        # The loaded model, Feast's registry and the libraries are hundreds of thousands of objects
        # that live as long as the process: out of the collector's sight, a full collection under
        # load scans only what requests allocate (a stall of tens of ms otherwise shows in the p99).
        gc.collect()
        gc.freeze()
        if not config.access_log:
            # One line per request from uvicorn and from KServe's timing middleware: the request log
            # and the metrics carry the same facts without a synchronous write on the hot path.
            logging.getLogger("uvicorn.access").disabled = True
            logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        # The model is already registered (ready or not): start() with no further models.
        server.start([])
    except StartupInterrupted as stop:
        log.warning("%s during start-up: start-up interrupted, exiting without serving", stop)
    finally:
        if model is not None:
            model.stop()
        log.info("model server stopped%s", " (start-up interrupted)" if lifecycle.interrupted_start else "")


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
    p.add_argument("--host", default=DEFAULT_HOST, help="Listen address (a pod passes 0.0.0.0).")
    p.add_argument("--feature_repo", required=True, type=Path)
    p.add_argument("--feature_store_yaml", default="feature_store.yaml")
    p.add_argument("--threads", type=int, default=1, help="Predict threads (see docs/serving.md).")
    p.add_argument("--switch_interval_ms", type=float, default=1.0, help="Python's GIL switch interval.")
    p.add_argument(
        "--batch_max_rows",
        type=int,
        default=BATCH_MAX_ROWS,
        help="Adaptive batching: at most this many rows of concurrent requests scored together.",
    )
    p.add_argument(
        "--batch_max_wait_ms",
        type=float,
        default=BATCH_MAX_WAIT_MS,
        help="Adaptive batching: how long a queued request may wait for requests still being read "
        "(0: never wait; see docs/serving.md).",
    )
    p.add_argument("--no_feature_lookup", dest="feature_lookup", action="store_false")
    p.add_argument("--request_log_dir", type=Path, default=None, help="Default: no request log.")
    p.add_argument("--request_log_batch", type=int, default=256)
    p.add_argument("--request_log_flush_seconds", type=float, default=1.0)
    p.add_argument(
        "--request_log_max_record_bytes", type=int, default=MAX_RECORD_BYTES, help="Cap on one record."
    )
    p.add_argument(
        "--request_log_text", choices=TEXT_STORAGE, default="raw", help="Text fields as sent or hashed."
    )
    p.add_argument("--request_log_retention_days", type=float, default=None, help="Delete older files.")
    p.add_argument("--request_log_retention_bytes", type=int, default=None, help="Directory size budget.")
    p.add_argument(
        "--request_log_upload",
        default=None,
        help="s3:// or file:// URI: ship closed log files there (the directory becomes a spool).",
    )
    p.add_argument(
        "--request_log_rollover_seconds",
        type=float,
        default=300.0,
        help="With --request_log_upload: close and ship the file being written at least this often.",
    )
    p.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES)
    p.add_argument("--access_log", action="store_true")
    p.add_argument(
        "--grace_period", type=float, default=GRACE_PERIOD, help="Seconds in-flight requests get on SIGTERM."
    )
    p.add_argument("--header_timeout", type=float, default=HEADER_TIMEOUT, help="Seconds to send headers.")
    p.add_argument("--body_timeout", type=float, default=BODY_TIMEOUT, help="Seconds to send a body.")
    p.add_argument(
        "--enable_model_repository",
        action="store_true",
        help="Serve KServe's model repository endpoints (load/unload); off by default.",
    )
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
    if not 1 <= a.workers <= 64:
        p.error(f"--workers: between 1 and 64 server processes; got {a.workers}")
    for flag in ("grace_period", "header_timeout", "body_timeout"):
        if not getattr(a, flag) > 0:
            p.error(f"--{flag}: must be a positive number of seconds")
    if a.batch_max_rows < 1:
        p.error(f"--batch_max_rows: must be at least 1; got {a.batch_max_rows}")
    if a.request_log_upload is not None:
        if not re.match(r"^(s3|file)://.+", a.request_log_upload):
            p.error(f"--request_log_upload: an s3:// or file:// URI; got {a.request_log_upload!r}")
        if a.request_log_dir is None:
            p.error("--request_log_upload needs --request_log_dir (the spool the files are shipped from)")
    if not 0 < a.request_log_rollover_seconds <= 86_400:
        p.error(
            "--request_log_rollover_seconds: between 0 (exclusive) and 86400 seconds; "
            f"got {a.request_log_rollover_seconds:g}"
        )
    if not 0 <= a.batch_max_wait_ms <= 1000:
        p.error(f"--batch_max_wait_ms: must be between 0 and 1000 milliseconds; got {a.batch_max_wait_ms:g}")
    return ServeConfig(
        model_dir=a.model_dir,
        content_hash=a.content_hash,
        model_name=a.model_name,
        version_label=a.model_version,
        feature_repo=a.feature_repo,
        feature_store_yaml=a.feature_store_yaml,
        host=a.host,
        port=a.http_port,
        threads=a.threads,
        workers=a.workers,
        switch_interval_ms=a.switch_interval_ms,
        batch_max_rows=a.batch_max_rows,
        batch_max_wait_ms=a.batch_max_wait_ms,
        feature_lookup=a.feature_lookup,
        request_log_dir=a.request_log_dir,
        request_log_batch=a.request_log_batch,
        request_log_flush_seconds=a.request_log_flush_seconds,
        request_log_max_record_bytes=a.request_log_max_record_bytes,
        request_log_text=a.request_log_text,
        request_log_retention_days=a.request_log_retention_days,
        request_log_retention_bytes=a.request_log_retention_bytes,
        request_log_upload=a.request_log_upload,
        request_log_rollover_seconds=a.request_log_rollover_seconds,
        max_body_bytes=a.max_body_bytes,
        access_log=a.access_log,
        grace_period=a.grace_period,
        header_timeout=a.header_timeout,
        body_timeout=a.body_timeout,
        enable_model_repository=a.enable_model_repository,
        enable_docs=a.enable_docs_url,
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
        "--host", config.host,
        "--http_port", str(config.port),
        "--threads", str(config.threads),
        "--workers", str(config.workers),
        "--switch_interval_ms", str(config.switch_interval_ms),
        "--batch_max_rows", str(config.batch_max_rows),
        "--batch_max_wait_ms", str(config.batch_max_wait_ms),
        "--request_log_batch", str(config.request_log_batch),
        "--request_log_flush_seconds", str(config.request_log_flush_seconds),
        "--request_log_max_record_bytes", str(config.request_log_max_record_bytes),
        "--request_log_text", config.request_log_text,
        "--request_log_rollover_seconds", str(config.request_log_rollover_seconds),
        "--max_body_bytes", str(config.max_body_bytes),
        "--grace_period", str(config.grace_period),
        "--header_timeout", str(config.header_timeout),
        "--body_timeout", str(config.body_timeout),
    ]  # fmt: skip
    if config.version_label:
        args += ["--model_version", config.version_label]
    if not config.feature_lookup:
        args.append("--no_feature_lookup")
    if config.request_log_dir is not None:
        args += ["--request_log_dir", str(config.request_log_dir)]
    if config.request_log_retention_days is not None:
        args += ["--request_log_retention_days", str(config.request_log_retention_days)]
    if config.request_log_retention_bytes is not None:
        args += ["--request_log_retention_bytes", str(config.request_log_retention_bytes)]
    if config.request_log_upload is not None:
        args += ["--request_log_upload", config.request_log_upload]
    if config.access_log:
        args.append("--access_log")
    if config.enable_model_repository:
        args.append("--enable_model_repository")
    if config.enable_docs:
        args.append("--enable_docs_url=true")
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
    serving = settings.serving
    request_log = serving.request_log
    base = ServeConfig(
        model_dir=model_dir,
        content_hash=entry.content_hash,
        model_name=settings.spec.name,
        version_label=entry.version,
        feature_repo=Path(settings.feature_repo),
        feature_store_yaml=settings.feature_store_yaml,
        host=serving.host,
        port=serving.port,
        threads=serving.threads,
        workers=serving.workers,
        batch_max_rows=serving.batch_max_rows,
        batch_max_wait_ms=serving.batch_max_wait_ms,
        feature_lookup=serving.feature_lookup,
        max_body_bytes=serving.max_body_bytes,
        grace_period=serving.grace_period_seconds,
        header_timeout=serving.header_timeout_seconds,
        body_timeout=serving.body_timeout_seconds,
        enable_model_repository=serving.enable_model_repository,
        enable_docs=serving.enable_docs,
        request_log_dir=Path(settings.state_dir) / request_log.directory if request_log.directory else None,
        request_log_batch=request_log.batch,
        request_log_flush_seconds=request_log.flush_seconds,
        request_log_max_record_bytes=request_log.max_record_bytes,
        request_log_text=request_log.text,
        request_log_retention_days=request_log.retention_days,
        request_log_retention_bytes=request_log.retention_bytes,
        request_log_upload=request_log.upload,
        request_log_rollover_seconds=request_log.rollover_seconds,
    )
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
