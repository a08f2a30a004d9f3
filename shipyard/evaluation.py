"""Evaluation: the candidate against thresholds, simple baselines and the current champion.

All models are scored on the same holdout, so "better than the champion" is a like-for-like
comparison. Each gate is reported with its value and threshold: a rejected candidate says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.pipeline import Pipeline

from shipyard.artifacts import EVALUATION_FILE
from shipyard.report import evaluation_markdown as to_markdown
from shipyard.schema import DEPARTMENTS, LABEL
from shipyard.thresholds import Thresholds
from shipyard.training import model_inputs

__all__ = ["EVALUATION_FILE", "Evaluation", "Gate", "Scores", "evaluate", "score", "to_markdown"]


@dataclass
class Scores:
    accuracy: float
    macro_f1: float
    per_label: dict[str, dict[str, float]]
    confusion: list[list[int]]


@dataclass
class Gate:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass
class Evaluation:
    candidate: Scores
    baselines: dict[str, Scores]
    champion: dict[str, Any] | None
    gates: list[Gate]
    thresholds: dict[str, float]
    test_rows: int
    labels: list[str] = field(default_factory=lambda: list(DEPARTMENTS))

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def score(y_true: np.ndarray, y_pred: np.ndarray) -> Scores:
    labels = list(DEPARTMENTS)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_label = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return Scores(
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        per_label=per_label,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    )


def majority_baseline(train_labels: pd.Series, n: int) -> np.ndarray:
    majority = str(train_labels.astype(str).mode().iloc[0])
    return np.full(n, majority, dtype=object)


def keyword_baseline(frame: pd.DataFrame, fallback: str) -> np.ndarray:
    """What a rule-based router does: the department whose keywords appear most, else the fallback."""
    counts = frame[[f"kw_{d}" for d in DEPARTMENTS]].to_numpy(dtype=float)
    best = np.asarray(DEPARTMENTS, dtype=object)[counts.argmax(axis=1)]
    return np.where(counts.max(axis=1) > 0, best, fallback)


def convergence_gate(val_loss: list[float], window: int, max_change: float) -> Gate:
    """Converged = the loss fell, and its last `window` epochs vary by at most `max_change` (relative)."""
    if len(val_loss) < window + 1:
        return Gate("loss_converged", False, None, max_change, f"only {len(val_loss)} epochs recorded")
    tail = val_loss[-window:]
    change = (max(tail) - min(tail)) / max(min(tail), 1e-12)
    fell = tail[-1] < val_loss[0]
    passed = fell and change <= max_change
    detail = f"val loss {val_loss[0]:.3f} -> {val_loss[-1]:.3f}; last {window} epochs vary {change:.2%}"
    return Gate("loss_converged", passed, change, max_change, detail)


def evaluate(
    model: Pipeline,
    test: pd.DataFrame,
    train_labels: pd.Series,
    val_loss: list[float],
    thresholds: Thresholds,
    champion: tuple[str, Pipeline] | None = None,
    convergence_window: int = 3,
) -> Evaluation:
    y_true = test[LABEL].astype(str).to_numpy()
    candidate = score(y_true, model.predict(model_inputs(test)))
    majority = majority_baseline(train_labels, len(test))
    baselines = {
        "majority": score(y_true, majority),
        "keywords": score(y_true, keyword_baseline(test, str(majority[0]))),
    }
    best_name, best = max(baselines.items(), key=lambda kv: kv[1].accuracy)
    lift = candidate.accuracy - best.accuracy

    gates = [
        Gate(
            "min_accuracy",
            candidate.accuracy >= thresholds.min_accuracy,
            candidate.accuracy,
            thresholds.min_accuracy,
            f"accuracy {candidate.accuracy:.3f}",
        ),
        Gate(
            "min_macro_f1",
            candidate.macro_f1 >= thresholds.min_macro_f1,
            candidate.macro_f1,
            thresholds.min_macro_f1,
            f"macro-F1 {candidate.macro_f1:.3f}",
        ),
        Gate(
            "beats_baseline",
            lift >= thresholds.min_baseline_lift,
            lift,
            thresholds.min_baseline_lift,
            f"accuracy {candidate.accuracy:.3f} vs {best_name} baseline {best.accuracy:.3f}",
        ),
        convergence_gate(val_loss, convergence_window, thresholds.max_final_loss_change),
    ]
    champion_info: dict[str, Any] | None = None
    if champion is not None:
        version, champion_model = champion
        champ = score(y_true, champion_model.predict(model_inputs(test)))
        delta = candidate.macro_f1 - champ.macro_f1
        champion_info = {"version": version, "scores": asdict(champ), "macro_f1_delta": delta}
        gates.append(
            Gate(
                "not_worse_than_champion",
                delta >= -thresholds.max_champion_regression,
                delta,
                -thresholds.max_champion_regression,
                f"macro-F1 {candidate.macro_f1:.3f} vs champion {version} {champ.macro_f1:.3f}",
            )
        )
    return Evaluation(
        candidate=candidate,
        baselines=baselines,
        champion=champion_info,
        gates=gates,
        thresholds=thresholds.model_dump(),
        test_rows=len(test),
    )
