"""Training: the project's scikit-learn pipeline, fitted epoch by epoch to record a real loss curve.

The project's model factory builds a `Pipeline` with a `features` step and a `classifier` step whose
classifier supports `partial_fit` with a probabilistic loss. The loop here is the platform's: it
records train and validation log-loss per epoch and stops when validation loss stops improving, so
the convergence gate and the model card read the same curve for every project.

Which columns the model reads is derived, not declared twice: every column of the training set that
is not bookkeeping (event id, entity key, timestamps, label) is an input, typed by the project's
request fields (`text`) and the column dtypes (strings are categorical, the rest numeric). The same
`ModelInputs` is stored in the version's input contract, so the server assembles identical frames.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline

from shipyard.artifacts import MODEL_FILE, TRAINING_FILE
from shipyard.errors import ProjectError
from shipyard.params import TrainParams
from shipyard.project import ProjectSpec, import_callable
from shipyard.records import TrainingRecord

TRACKED_LIBRARIES = ("scikit-learn", "numpy", "pandas", "feast", "kfp", "shipyard")
MISSING_CATEGORY = "missing"

__all__ = ["ModelInputs", "TrainingRecord", "label_array", "load_model", "prepare", "save", "train"]


@dataclass(frozen=True)
class ModelInputs:
    """The model's input columns, grouped by how a pipeline encodes them."""

    text: tuple[str, ...]
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.text, *self.categorical, *self.numeric)

    def to_json(self) -> dict[str, list[str]]:
        return {"text": list(self.text), "categorical": list(self.categorical), "numeric": list(self.numeric)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ModelInputs:
        return cls(tuple(raw["text"]), tuple(raw["categorical"]), tuple(raw["numeric"]))

    @classmethod
    def derive(cls, frame: pd.DataFrame, spec: ProjectSpec) -> ModelInputs:
        bookkeeping = {spec.event_id, spec.entity_key, spec.timestamp, spec.label}
        if spec.label_available_at:
            bookkeeping.add(spec.label_available_at)
        bookkeeping |= {f.name for f in spec.request if f.type == "timestamp"}
        text, categorical, numeric = [], [], []
        for col in frame.columns:
            if col in bookkeeping:
                continue
            if col in spec.text_fields:
                text.append(col)
            elif pd.api.types.is_bool_dtype(frame[col]) or pd.api.types.is_numeric_dtype(frame[col]):
                numeric.append(col)
            else:
                categorical.append(col)
        if not (text or categorical or numeric):
            raise ProjectError(f"project {spec.name}: the training set has no model input columns")
        return cls(tuple(text), tuple(categorical), tuple(numeric))


def prepare(frame: pd.DataFrame, inputs: ModelInputs) -> pd.DataFrame:
    """The input columns with missing values as scikit-learn expects them (NaN, a 'missing' category)."""
    out = frame.reindex(columns=list(inputs.columns)).copy()
    for col in inputs.text:
        out[col] = out[col].astype(object).where(out[col].notna(), "")
    for col in inputs.categorical:
        out[col] = out[col].astype(object).where(out[col].notna(), MISSING_CATEGORY)
    for col in inputs.numeric:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out


def label_array(labels: pd.Series) -> np.ndarray:
    """Labels as a fixed-width numpy string array rather than an array of Python `str` objects.

    scikit-learn sorts the labels (`np.unique`) in nearly every call the epoch loop makes
    (`partial_fit`, `log_loss`): on 700 000 labels that costs ~0.5 s as Python objects and ~0.1 s
    as fixed-width strings, which is most of the loop's time at a million events. The values, and
    so the model and its loss curve, are the same.
    """
    return np.asarray(labels.astype(str).to_numpy(), dtype=str)


def git_commit() -> str:
    """The code's commit: $SHIPYARD_GIT_COMMIT when set (an image has no checkout; CI bakes the SHA
    in), else the checkout's HEAD, else "unknown"."""
    baked = os.environ.get("SHIPYARD_GIT_COMMIT", "").strip()
    if baked:
        return baked
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_model(spec: ProjectSpec, inputs: ModelInputs, params: TrainParams) -> Pipeline:
    factory = import_callable(spec.model, f"project {spec.name}: model factory")
    hyper = {**spec.hyperparameters, **params.hyperparameters, "seed": params.seed}
    model = factory(inputs, hyper)
    if not isinstance(model, Pipeline) or set(model.named_steps) != {"features", "classifier"}:
        raise ProjectError(
            f"model factory {spec.model!r} must return a sklearn Pipeline with steps 'features' and "
            "'classifier'"
        )
    if not hasattr(model.named_steps["classifier"], "partial_fit"):
        raise ProjectError(f"model factory {spec.model!r}: the classifier must support partial_fit")
    return model


def train(
    train_frame: pd.DataFrame,
    val_frame: pd.DataFrame,
    spec: ProjectSpec,
    params: TrainParams,
    data_hash: str = "",
) -> tuple[Pipeline, TrainingRecord]:
    started = time.perf_counter()
    inputs = ModelInputs.derive(train_frame, spec)
    pipeline = build_model(spec, inputs, params)
    features = pipeline.named_steps["features"]
    classifier = pipeline.named_steps["classifier"]
    x_train = features.fit_transform(prepare(train_frame, inputs))
    x_val = features.transform(prepare(val_frame, inputs))
    y_train, y_val = label_array(train_frame[spec.label]), label_array(val_frame[spec.label])
    classes = np.array(spec.classes)

    rng = np.random.default_rng(params.seed)
    train_loss: list[float] = []
    val_loss: list[float] = []
    best, stale = np.inf, 0
    for _ in range(params.max_epochs):
        order = rng.permutation(x_train.shape[0])
        classifier.partial_fit(x_train[order], y_train[order], classes=classes)
        train_loss.append(
            float(log_loss(y_train, classifier.predict_proba(x_train), labels=classifier.classes_))
        )
        val_loss.append(float(log_loss(y_val, classifier.predict_proba(x_val), labels=classifier.classes_)))
        if val_loss[-1] < best * (1 - params.tol):
            best, stale = val_loss[-1], 0
        else:
            stale += 1
            if stale >= params.patience:
                break

    record = TrainingRecord(
        params=params.model_dump(exclude={"hyperparameters"}),
        hyperparameters={**spec.hyperparameters, **params.hyperparameters},
        inputs=inputs.to_json(),
        data_hash=data_hash,
        git_commit=git_commit(),
        libraries=library_versions(),
        python=platform.python_version(),
        rows={"train": len(train_frame), "val": len(val_frame)},
        training_seconds=round(time.perf_counter() - started, 3),
        epochs=len(train_loss),
        train_loss=train_loss,
        val_loss=val_loss,
    )
    return pipeline, record


def save(pipeline: Pipeline, record: TrainingRecord, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, out_dir / MODEL_FILE, compress=3)
    (out_dir / TRAINING_FILE).write_text(json.dumps(record.model_dump(), indent=2, sort_keys=True) + "\n")


def load_model(model_dir: Path) -> Pipeline:
    model: Pipeline = joblib.load(model_dir / MODEL_FILE)
    return model
