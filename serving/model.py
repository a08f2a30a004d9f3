"""The KServe model: one registered model version, its input contract, and its online features.

`load()` sets `ready` only after every file of the version matched the registry's content hash and
the model, contract and feature source all opened; any failure leaves the model not ready (503),
never serving an unverified artifact. `preprocess` validates against the version's own contract,
`predict` runs the feature lookup and the scikit-learn pipeline on a bounded thread pool (both are
blocking, and health probes share the event loop), `postprocess` answers in the protocol the
request came in with.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kserve
import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from serving import http
from serving.contract import RequestContract, Ticket
from serving.errors import FeatureStoreUnavailable, InvalidRequest, ModelNotReady, UnsupportedMediaType, echo
from serving.features import CUSTOMER_FEATURES, FeatureSource
from serving.metrics import (
    FEATURE_LOOKUP_SECONDS,
    FEATURE_MISSING,
    FEATURE_OUT_OF_RANGE,
    FEATURE_STORE_ERRORS,
    MODEL_AGE,
    MODEL_INFO,
    MODEL_READY,
    PREDICTIONS,
    PROBABILITY,
    UNKNOWN_CUSTOMERS,
)
from serving.requestlog import RequestLog
from shipyard.errors import RegistryError
from shipyard.features import TEXT_FEATURES
from shipyard.registry import ModelRegistry
from shipyard.training import load_model

log = logging.getLogger("shipyard.serving")

OUTPUTS = ("department", "probabilities", "customer_found")
FeatureSourceFactory = Callable[[str], FeatureSource]  # feature service name -> source


@dataclass(frozen=True)
class Batch:
    """A validated request on its way from preprocess to postprocess."""

    protocol: str  # "v1" | "v2"
    tickets: list[Ticket]
    v2_id: str | None = None
    v2_outputs: tuple[str, ...] = OUTPUTS


@dataclass(frozen=True)
class Scored:
    batch: Batch
    departments: list[str]
    probabilities: list[dict[str, float]]
    customer_found: list[bool]
    features: dict[str, list[Any]]


class TicketRouter(kserve.Model):  # type: ignore[misc]
    """Routes a support ticket to a department. See the module docstring."""

    def __init__(
        self,
        name: str,
        registry: str,
        version: str | None,
        features: FeatureSourceFactory,
        request_log: RequestLog | None = None,
        threads: int = 4,
    ) -> None:
        super().__init__(name)
        self.registry_uri = registry
        self.requested_version = version
        self.version: str | None = None
        self.not_ready_reason = "not loaded yet"
        self._features_factory = features
        self.features: FeatureSource | None = None
        self.request_log = request_log
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
        self._pipeline: Any = None
        self.contract: RequestContract | None = None
        self.trained_at: datetime | None = None
        MODEL_READY.labels(name).set(0)

    # -- lifecycle -------------------------------------------------------------------------------
    def load(self) -> bool:
        self.ready = False
        MODEL_READY.labels(self.name).set(0)
        registry = ModelRegistry(self.registry_uri)
        try:
            entry = registry.get(self.requested_version) if self.requested_version else registry.champion()
            if entry is None:
                self.not_ready_reason = "the registry has no champion version"
                log.error("model %s not ready: %s (%s)", self.name, self.not_ready_reason, self.registry_uri)
                return False
            self.version = entry.version
            try:
                model_dir = registry.verify(entry.version)  # every file against the registered hash
            except RegistryError as exc:
                self.not_ready_reason = f"model version {entry.version} failed its content hash check"
                log.error("model %s not ready: %s", self.name, exc)
                return False
            pipeline = load_model(model_dir)
            contract = RequestContract.load(model_dir)
            features = self._features_factory(entry.feature_service)
        except Exception as exc:
            # Anything from a missing file to a tampered pickle: the details go to the log, the
            # caller gets a 503 that says the version is not servable.
            self.not_ready_reason = f"model version {self.version or self.requested_version} failed to load"
            log.error("model %s not ready: %s", self.name, exc)
            return False
        self._pipeline, self.contract, self.features = pipeline, contract, features
        self.trained_at = datetime.fromisoformat(entry.created_at)
        MODEL_INFO.labels(self.name).info(
            {
                "version": entry.version,
                "content_hash": entry.content_hash,
                "feature_service": entry.feature_service,
                "online_store": features.store_kind,
                "trained_at": entry.created_at,
            }
        )
        trained = self.trained_at
        MODEL_AGE.labels(self.name, entry.version).set_function(
            lambda: (datetime.now(UTC) - trained).total_seconds()
        )
        self.ready = True
        MODEL_READY.labels(self.name).set(1)
        log.info(
            "model %s ready: version %s (%s online store)", self.name, entry.version, features.store_kind
        )
        return True

    def start(self) -> None:
        """KServe's default marks the model ready here; readiness is decided by `load()` alone."""

    def stop(self) -> None:
        """Called by KServe on shutdown: finish in-flight work, then flush the request log."""
        self.ready = False
        self._pool.shutdown(wait=True)
        if self.request_log is not None:
            self.request_log.close()

    def require_ready(self) -> None:
        if not self.ready:
            raise ModelNotReady(f"model {self.name} is not ready: {self.not_ready_reason}", "model", "ready")

    def validate(self, payload: Any) -> Any:
        """KServe's envelope checks are replaced by the contract checks in `preprocess`."""
        return payload

    # -- preprocess --------------------------------------------------------------------------------
    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Batch:
        self.require_ready()
        assert self.contract is not None
        if isinstance(payload, InferRequest):
            return self._v2_batch(payload)
        if isinstance(payload, bytes):
            raise UnsupportedMediaType(
                "content-type: send the request as application/json", "content-type", "media_type"
            )
        return Batch("v1", self.contract.v1(payload))

    def _v2_batch(self, request: InferRequest) -> Batch:
        assert self.contract is not None
        inputs = []
        for infer_input in request.inputs:
            data = infer_input.data
            if not isinstance(data, list):
                data = np.asarray(infer_input.as_numpy()).reshape(-1).tolist()
            inputs.append((infer_input.name, infer_input.datatype, list(infer_input.shape), data))
        tickets = self.contract.v2(inputs)
        outputs = OUTPUTS
        if request.request_outputs:
            names = tuple(o.name for o in request.request_outputs)
            for i, name in enumerate(names):
                if name not in OUTPUTS:
                    raise InvalidRequest(
                        f"outputs[{i}].name: unknown output {echo(name)!r} (available: {', '.join(OUTPUTS)})",
                        f"outputs[{i}].name",
                        "unknown_output",
                    )
            outputs = names
        return Batch("v2", tickets, request.id, outputs)

    # -- predict -----------------------------------------------------------------------------------
    async def predict(self, payload: Batch, headers: dict[str, str] | None = None) -> Scored:
        self.require_ready()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._score, payload)

    def _score(self, batch: Batch) -> Scored:
        """Feature lookup + predict; runs on the thread pool."""
        assert self.features is not None and self.contract is not None
        try:
            found = self.features.assemble(batch.tickets)
        except FeatureStoreUnavailable:
            FEATURE_STORE_ERRORS.labels(self.features.store_kind).inc()
            raise
        FEATURE_LOOKUP_SECONDS.labels(self.features.store_kind).observe(found.lookup_seconds)
        proba = self._pipeline.predict_proba(found.frame)
        classes = [str(c) for c in self._pipeline.classes_]
        labels = list(self.contract.labels)
        order = [classes.index(label) for label in labels]
        departments = [labels[int(i)] for i in np.argmax(proba[:, order], axis=1)]
        probabilities = [
            {label: float(row[j]) for label, j in zip(labels, order, strict=True)} for row in proba
        ]
        self._observe(found.raw, found.customer_found, departments, probabilities)
        return Scored(batch, departments, probabilities, found.customer_found, found.raw)

    def _observe(
        self,
        raw: dict[str, list[Any]],
        customer_found: list[bool],
        departments: list[str],
        probabilities: list[dict[str, float]],
    ) -> None:
        assert self.contract is not None
        unknown = customer_found.count(False)
        if unknown:
            UNKNOWN_CUSTOMERS.labels(self.name).inc(unknown)
        for name in (*CUSTOMER_FEATURES, *TEXT_FEATURES):
            values = raw.get(name)
            if values is None:
                continue
            spec = self.contract.features.get(name, {})
            missing = outside = 0
            for v in values:
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    missing += 1
                elif "categories" in spec:
                    outside += v not in spec["categories"]
                elif "min" in spec and isinstance(v, int | float):
                    outside += not (spec["min"] <= v <= spec["max"])
            if missing:
                FEATURE_MISSING.labels(name).inc(missing)
            if outside:
                FEATURE_OUT_OF_RANGE.labels(name).inc(outside)
        for department in departments:
            PREDICTIONS.labels(self.name, self.version, department).inc()
        for row in probabilities:
            for label, p in row.items():
                PROBABILITY.labels(self.name, label).observe(p)

    # -- postprocess -------------------------------------------------------------------------------
    async def postprocess(
        self, result: Scored, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> dict[str, Any] | InferResponse:
        self._note_for_log(result)
        if result.batch.protocol == "v1":
            return {
                "model_name": self.name,
                "model_version": self.version,
                "predictions": [
                    {"department": d, "probabilities": p, "customer_found": f}
                    for d, p, f in zip(
                        result.departments, result.probabilities, result.customer_found, strict=True
                    )
                ],
            }
        n = len(result.departments)
        labels = list(self.contract.labels) if self.contract else []
        all_outputs = {
            "department": InferOutput("department", [n], "BYTES", result.departments),
            "probabilities": InferOutput(
                "probabilities",
                [n, len(labels)],
                "FP64",
                [row[label] for row in result.probabilities for label in labels],
                parameters={"labels": ",".join(labels)},
            ),
            "customer_found": InferOutput("customer_found", [n], "BOOL", result.customer_found),
        }
        ctx = http.current()
        return InferResponse(
            response_id=result.batch.v2_id or (ctx.request_id if ctx else ""),
            model_name=self.name,
            model_version=self.version,
            infer_outputs=[all_outputs[name] for name in result.batch.v2_outputs],
        )

    def _note_for_log(self, result: Scored) -> None:
        """Attach inputs, features and answers to the request's log record (see serving.http)."""
        ctx = http.current()
        if ctx is None:
            return
        ctx.model, ctx.model_version = self.name, self.version
        names = [n for n in (*CUSTOMER_FEATURES, *TEXT_FEATURES) if n in result.features]
        ctx.rows = [
            {
                "customer_id": t.customer_id,
                "ticket_text": t.ticket_text,
                "timestamp": t.timestamp,
                "customer_found": result.customer_found[i],
                "features": {n: _jsonable(result.features[n][i]) for n in names},
                "department": result.departments[i],
                "probabilities": result.probabilities[i],
            }
            for i, t in enumerate(result.batch.tickets)
        ]

    # -- V2 metadata -------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": "customer_id", "datatype": "INT64", "shape": [-1]},
            {"name": "ticket_text", "datatype": "BYTES", "shape": [-1]},
            {"name": "timestamp", "datatype": "BYTES", "shape": [-1]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        n_labels = len(self.contract.labels) if self.contract else -1
        return [
            {"name": "department", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, n_labels]},
            {"name": "customer_found", "datatype": "BOOL", "shape": [-1]},
        ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value
