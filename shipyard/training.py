"""Training: one scikit-learn pipeline over the ticket text and the customer features.

The classifier is a logistic model fitted by SGD epoch by epoch, so the run records a real loss
curve (train and validation log-loss per epoch) and stops when validation loss stops improving;
the curve is what the convergence gate and the model card read.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.artifacts import MODEL_FILE, TRAINING_FILE
from shipyard.features import TEXT_FEATURES
from shipyard.params import TrainParams
from shipyard.schema import CATEGORICAL_FEATURES, DEPARTMENTS, LABEL, NUMERIC_BATCH_FEATURES, TEXT

NUMERIC_FEATURES = (*NUMERIC_BATCH_FEATURES, *TEXT_FEATURES)
MODEL_INPUTS = (TEXT, *CATEGORICAL_FEATURES, *NUMERIC_FEATURES)
TRACKED_LIBRARIES = ("scikit-learn", "numpy", "pandas", "feast", "kfp", "shipyard")

__all__ = [
    "MODEL_INPUTS",
    "TrainParams",
    "TrainingRecord",
    "build_pipeline",
    "load_model",
    "model_inputs",
    "save",
    "train",
]


@dataclass
class TrainingRecord:
    params: dict[str, Any]
    data_hash: str
    git_commit: str
    libraries: dict[str, str]
    python: str
    rows: dict[str, int]
    training_seconds: float
    epochs: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build_pipeline(params: TrainParams) -> Pipeline:
    numeric = Pipeline(
        [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]
    )
    features = ColumnTransformer(
        [
            (
                "text",
                TfidfVectorizer(ngram_range=(1, params.ngram_max), min_df=params.min_df, sublinear_tf=True),
                TEXT,
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
            ("numeric", numeric, list(NUMERIC_FEATURES)),
        ]
    )
    # Averaged SGD: the averaged weights give a smooth loss curve, so convergence is measurable.
    classifier = SGDClassifier(loss="log_loss", alpha=params.alpha, average=True, random_state=params.seed)
    return Pipeline([("features", features), ("classifier", classifier)])


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the pipeline reads, with missing values as NaN (not pd.NA) for scikit-learn."""
    out = frame[list(MODEL_INPUTS)].copy()
    out[TEXT] = out[TEXT].astype(object).fillna("")
    for col in CATEGORICAL_FEATURES:
        out[col] = out[col].astype(object).where(out[col].notna(), "missing")
    for col in NUMERIC_FEATURES:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out


def git_commit() -> str:
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


def train(
    train_frame: pd.DataFrame, val_frame: pd.DataFrame, params: TrainParams, data_hash: str = ""
) -> tuple[Pipeline, TrainingRecord]:
    started = time.perf_counter()
    pipeline = build_pipeline(params)
    features = pipeline.named_steps["features"]
    classifier: SGDClassifier = pipeline.named_steps["classifier"]
    x_train = features.fit_transform(model_inputs(train_frame))
    x_val = features.transform(model_inputs(val_frame))
    y_train = train_frame[LABEL].astype(str).to_numpy()
    y_val = val_frame[LABEL].astype(str).to_numpy()
    classes = np.array(DEPARTMENTS)

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
        params=asdict(params),
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
    (out_dir / TRAINING_FILE).write_text(json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n")


def load_model(model_dir: Path) -> Pipeline:
    model: Pipeline = joblib.load(model_dir / MODEL_FILE)
    return model
