"""The KServe model: one fixed model version directory, its input contract, and its online features.

The server is given a version directory (`--model_dir`, what KServe's storage initializer fills
from the version's storageUri) and the content hash it must have. `load()` sets `ready` only after
every file matched that hash and the model, contract and feature source all opened; any failure
leaves the model not ready (503), never serving an unverified artifact. Nothing is resolved at
start-up: "champion" is a word for the CLI and release records, never for a pod.

`preprocess` validates against the version's own contract; `predict` hands the request to the
adaptive batcher (serving.batching), which runs the feature lookup and the compiled scorer
(serving.scoring) for the requests waiting together on a bounded thread pool (both are blocking,
and health probes share the event loop) and gives each request its own rows back; `postprocess`
answers in the protocol the request came in with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from serving import http
from serving.batching import AdaptiveBatcher
from serving.contract import V2_OUTPUT_TYPES, RequestContract, Row
from serving.errors import FeatureStoreUnavailable, InvalidRequest, ModelNotReady, UnsupportedMediaType, echo
from serving.features import FeatureSource
from serving.metrics import (
    ENTITY_NOT_FOUND,
    FEATURE_LOOKUP_SECONDS,
    FEATURE_MISSING,
    FEATURE_OUT_OF_RANGE,
    FEATURE_STORE_ERRORS,
    MODEL_READY,
    PREDICTIONS,
    PROBABILITY,
    set_contract_fields,
    set_model_age,
    set_model_info,
)
from serving.requestlog import RequestLog
from serving.scoring import Scorer, compile_scorer
from shipyard.errors import RegistryError
from shipyard.registry import verify_version_dir
from shipyard.training import load_model

log = logging.getLogger("shipyard.serving")

PROBABILITIES, ENTITY_FOUND = "probabilities", "entity_found"
# feature service name + the version's contract -> source
FeatureSourceFactory = Callable[[str, RequestContract], FeatureSource]


@dataclass(frozen=True)
class Batch:
    """A validated request on its way from preprocess to postprocess."""

    protocol: str  # "v1" | "v2"
    rows: list[Row]
    v2_id: str | None = None
    v2_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scored:
    batch: Batch
    predicted: list[str]
    probabilities: list[dict[str, float]]
    entity_found: list[bool]
    features: dict[str, list[Any]]
    invalid: list[dict[str, str]]  # per row: looked-up features replaced by a missing value, and why


class ShipyardModel(kserve.Model):  # type: ignore[misc]
    """Serves one verified version directory of any project. See the module docstring."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        content_hash: str,
        features: FeatureSourceFactory,
        request_log: RequestLog | None = None,
        threads: int = 4,
        version_label: str | None = None,
        batch_max_rows: int = 64,
        batch_max_wait: float = 0.002,
    ) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.content_hash = content_hash
        self.version_label = version_label
        self.version: str | None = None
        self.not_ready_reason = "not loaded yet"
        self._features_factory = features
        self.features: FeatureSource | None = None
        self.request_log = request_log
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="predict")
        self.batcher: AdaptiveBatcher[Batch, Scored] = AdaptiveBatcher(
            self._score_many,
            self._pool,
            threads,
            max_rows=batch_max_rows,
            max_wait=batch_max_wait,
            expected=http.predictions_on_their_way,
            gone_error=http.client_gone,
        )
        self._scorer: Scorer | None = None
        self.contract: RequestContract | None = None
        self.trained_at: datetime | None = None
        MODEL_READY.labels(name).set(0)

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def outputs(self) -> tuple[str, ...]:
        label = self.contract.label if self.contract else "label"
        return (label, PROBABILITIES, ENTITY_FOUND)

    def load(self) -> bool:
        self.ready = False
        MODEL_READY.labels(self.name).set(0)
        log.info("loading model version %s from %s", self.content_hash[:12], self.model_dir)
        try:
            meta = verify_version_dir(self.model_dir, self.content_hash)
        except RegistryError as exc:
            self.not_ready_reason = "the model directory failed its content hash check"
            log.error("model %s not ready: %s", self.name, exc)
            return False
        except Exception as exc:
            self.not_ready_reason = "the model directory is not a readable model version"
            log.error("model %s not ready: %s", self.name, exc)
            return False
        try:
            pipeline = load_model(self.model_dir)
            contract = RequestContract.load(self.model_dir)
            scorer = compile_scorer(pipeline, contract.inputs, contract.features)
            features = self._features_factory(str(meta["feature_service"]), contract)
        except Exception as exc:
            # Anything from a missing file to a tampered pickle: the details go to the log, the
            # caller gets a 503 that says the version is not servable.
            self.not_ready_reason = f"model version {self.content_hash[:12]} failed to load"
            log.error("model %s not ready: %s", self.name, exc)
            return False
        self._scorer, self.contract, self.features = scorer, contract, features
        self.version = self.version_label or self.content_hash[:12]
        created = str(meta.get("created_at", ""))
        self.trained_at = datetime.fromisoformat(created) if created else datetime.now(UTC)
        set_contract_fields(contract.field_names)
        if self.request_log is not None:
            self.request_log.text_fields = frozenset(f.name for f in contract.fields if f.type == "text")
        set_model_info(
            self.name,
            {
                "version": self.version,
                "content_hash": self.content_hash,
                "project": str(meta.get("project", "")),
                "feature_service": str(meta["feature_service"]),
                "online_store": features.store_kind,
                "trained_at": created,
            },
        )
        set_model_age(self.name, self.version, self.trained_at.timestamp())
        self.ready = True
        MODEL_READY.labels(self.name).set(1)
        log.info(
            "model %s ready: %s (%s online store)", self.name, self.content_hash[:12], features.store_kind
        )
        return True

    def start(self) -> None:
        """KServe's default marks the model ready here; readiness is decided by `load()` alone."""

    def unload(self) -> None:
        """The model repository API's unload (opt-in, see serving.server): not ready, and not counted
        as ready, until `load()` has verified the directory again. The request log stays open."""
        self.ready = False
        self.not_ready_reason = "unloaded through the model repository API"
        MODEL_READY.labels(self.name).set(0)
        log.warning("model %s unloaded through the model repository API", self.name)

    def draining(self) -> None:
        """SIGTERM: requests in flight still finish (so `ready` stays), but the gauge says not ready."""
        MODEL_READY.labels(self.name).set(0)

    def stop(self) -> None:
        """On shutdown, after the drain: finish in-flight work, then flush the request log."""
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
        return Batch("v1", self.contract.v1(payload), v2_outputs=self.outputs)

    def _v2_batch(self, request: InferRequest) -> Batch:
        assert self.contract is not None
        inputs = []
        for infer_input in request.inputs:
            data = infer_input.data
            if not isinstance(data, list):
                data = np.asarray(infer_input.as_numpy()).reshape(-1).tolist()
            inputs.append((infer_input.name, infer_input.datatype, list(infer_input.shape), data))
        rows = self.contract.v2(inputs)
        outputs = self.outputs
        if request.request_outputs:
            names = tuple(o.name for o in request.request_outputs)
            for i, name in enumerate(names):
                if name not in self.outputs:
                    raise InvalidRequest(
                        f"outputs[{i}].name: unknown output {echo(name)!r} "
                        f"(available: {', '.join(self.outputs)})",
                        f"outputs[{i}].name",
                        "unknown_output",
                    )
            outputs = names
        return Batch("v2", rows, request.id, outputs)

    # -- predict -----------------------------------------------------------------------------------
    async def predict(self, payload: Batch, headers: dict[str, str] | None = None) -> Scored:
        """Queue the request for the adaptive batcher (serving.batching), which scores it on the
        predict thread together with the requests waiting at the same time."""
        self.require_ready()
        ctx = http.current()
        if ctx is not None and ctx.disconnected:
            raise http.client_gone()
        gone = (lambda: ctx.disconnected) if ctx is not None else (lambda: False)
        http.reached_model(ctx)
        return await self.batcher.submit(payload, len(payload.rows), gone)

    def _score_many(self, batches: list[Batch]) -> list[Scored | BaseException]:
        """Score merged requests on the predict thread: one feature lookup, one predict, split back.

        A feature store outage fails every request of the batch (each gets its 503); any other
        failure of a merged batch is retried request by request, so one request cannot fail another.
        """
        if len(batches) == 1:
            try:
                return [self._score(batches[0])]
            except Exception as exc:
                return [exc]
        rows = [row for batch in batches for row in batch.rows]
        try:
            merged = self._score(Batch("merged", rows))
        except FeatureStoreUnavailable as exc:
            return [exc] * len(batches)
        except Exception:
            log.warning("a merged batch of %d requests failed; scoring them one by one", len(batches))
            return [answer for batch in batches for answer in self._score_many([batch])]
        out: list[Scored | BaseException] = []
        start = 0
        for batch in batches:
            end = start + len(batch.rows)
            out.append(
                Scored(
                    batch,
                    merged.predicted[start:end],
                    merged.probabilities[start:end],
                    merged.entity_found[start:end],
                    {name: values[start:end] for name, values in merged.features.items()},
                    merged.invalid[start:end],
                )
            )
            start = end
        return out

    def _score(self, batch: Batch) -> Scored:
        """Feature lookup + predict for one batch of rows; runs on the predict thread."""
        assert self.features is not None and self.contract is not None and self._scorer is not None
        try:
            found = self.features.assemble(batch.rows)
        except FeatureStoreUnavailable:
            FEATURE_STORE_ERRORS.labels(self.features.store_kind).inc()
            raise
        FEATURE_LOOKUP_SECONDS.labels(self.features.store_kind).observe(found.lookup_seconds)
        proba = self._scorer.predict_proba(found.arrays)
        classes = self._scorer.classes
        labels = list(self.contract.labels)
        order = [classes.index(label) for label in labels]
        predicted = [labels[int(i)] for i in np.argmax(proba[:, order], axis=1)]
        probabilities = [
            {label: float(row[j]) for label, j in zip(labels, order, strict=True)} for row in proba
        ]
        invalid = found.invalid or [{} for _ in batch.rows]
        self._observe(found.raw, found.entity_found, predicted, probabilities, invalid)
        return Scored(batch, predicted, probabilities, found.entity_found, found.raw, invalid)

    def _observe(
        self,
        raw: dict[str, list[Any]],
        entity_found: list[bool],
        predicted: list[str],
        probabilities: list[dict[str, float]],
        invalid: list[dict[str, str]],
    ) -> None:
        assert self.contract is not None
        unknown = entity_found.count(False)
        if unknown:
            ENTITY_NOT_FOUND.labels(self.name).inc(unknown)
        # A value replaced by a missing one is out of the contract (and counted as missing below).
        for replaced in invalid:
            for name in replaced:
                FEATURE_OUT_OF_RANGE.labels(name).inc()
        for name, spec in self.contract.features.items():
            values = raw.get(name)
            if values is None:
                continue
            missing = outside = 0
            for v in values:
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    missing += 1
                elif "categories" in spec:
                    outside += v not in spec["categories"]
                elif spec.get("min") is not None and isinstance(v, int | float):
                    outside += not (spec["min"] <= v <= spec["max"])
            if missing:
                FEATURE_MISSING.labels(name).inc(missing)
            if outside:
                FEATURE_OUT_OF_RANGE.labels(name).inc(outside)
        for label in predicted:
            PREDICTIONS.labels(self.name, self.version, label).inc()
        for row in probabilities:
            for label, p in row.items():
                PROBABILITY.labels(self.name, label).observe(p)

    # -- postprocess -------------------------------------------------------------------------------
    async def postprocess(
        self, result: Scored, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> dict[str, Any] | InferResponse:
        assert self.contract is not None
        self._note_for_log(result)
        label = self.contract.label
        if result.batch.protocol == "v1":
            return {
                "model_name": self.name,
                "model_version": self.version,
                "predictions": [
                    {label: d, PROBABILITIES: p, ENTITY_FOUND: f}
                    for d, p, f in zip(
                        result.predicted, result.probabilities, result.entity_found, strict=True
                    )
                ],
            }
        n = len(result.predicted)
        labels = list(self.contract.labels)
        all_outputs = {
            label: InferOutput(label, [n], "BYTES", result.predicted),
            PROBABILITIES: InferOutput(
                PROBABILITIES,
                [n, len(labels)],
                "FP64",
                [row[c] for row in result.probabilities for c in labels],
                parameters={"labels": ",".join(labels)},
            ),
            ENTITY_FOUND: InferOutput(ENTITY_FOUND, [n], "BOOL", result.entity_found),
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
        if ctx is None or self.contract is None:
            return
        ctx.model, ctx.model_version = self.name, self.version
        request = set(self.contract.field_names)
        names = [n for n in self.contract.inputs.columns if n in result.features and n not in request]
        ctx.rows = [
            {
                **row,
                ENTITY_FOUND: result.entity_found[i],
                "features": {n: _jsonable(result.features[n][i]) for n in names},
                **({"invalid_features": result.invalid[i]} if result.invalid[i] else {}),
                "prediction": result.predicted[i],
                PROBABILITIES: result.probabilities[i],
            }
            for i, row in enumerate(result.batch.rows)
        ]

    # -- V2 metadata -------------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        if self.contract is None:
            return []
        return [
            {"name": f.name, "datatype": V2_OUTPUT_TYPES.get(f.type, "BYTES"), "shape": [-1]}
            for f in self.contract.fields
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        n_labels = len(self.contract.labels) if self.contract else -1
        label = self.contract.label if self.contract else "label"
        return [
            {"name": label, "datatype": "BYTES", "shape": [-1]},
            {"name": PROBABILITIES, "datatype": "FP64", "shape": [-1, n_labels]},
            {"name": ENTITY_FOUND, "datatype": "BOOL", "shape": [-1]},
        ]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # the request log is strict JSON: no NaN / Infinity tokens
    return value
