"""Evaluation: the candidate against gates, the project's baselines and the current champion.

All models are scored on the same holdout, so "better than the champion" is a like-for-like
comparison. Each gate is reported with its value and threshold: a rejected candidate says why.
Labels and their order come from the project spec; the champion is an input (a verified version
directory), so an evaluation is a pure function of what it was given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.pipeline import Pipeline

from shipyard.artifacts import EVALUATION_FILE
from shipyard.params import Gates
from shipyard.project import ProjectSpec, import_callable
from shipyard.report import evaluation_markdown as to_markdown
from shipyard.training import ModelInputs, prepare

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
    labels: list[str]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def score(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> Scores:
    # Fixed-width strings, not Python objects: each metric sorts the labels, ~5x faster so (the
    # same values, so the same scores).
    y_true, y_pred = np.asarray(y_true, dtype=str), np.asarray(y_pred, dtype=str)
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


def _predict(model: Pipeline, frame: pd.DataFrame, inputs: ModelInputs) -> np.ndarray:
    return np.asarray(model.predict(prepare(frame, inputs)))


def evaluate(
    model: Pipeline,
    inputs: ModelInputs,
    test: pd.DataFrame,
    train: pd.DataFrame,
    val_loss: list[float],
    spec: ProjectSpec,
    gates: Gates,
    champion: tuple[str, Pipeline, ModelInputs] | None = None,
) -> Evaluation:
    labels = list(spec.classes)
    y_true = test[spec.label].astype(str).to_numpy()
    candidate = score(y_true, _predict(model, test, inputs), labels)
    baselines = {
        name: score(
            y_true,
            np.asarray(import_callable(path, f"baseline {name}")(train, test, spec)),
            labels,
        )
        for name, path in spec.baselines.items()
    }
    gate_list: list[Gate] = [
        Gate(
            "min_accuracy",
            candidate.accuracy >= gates.min_accuracy,
            candidate.accuracy,
            gates.min_accuracy,
            f"accuracy {candidate.accuracy:.3f}",
        ),
        Gate(
            "min_macro_f1",
            candidate.macro_f1 >= gates.min_macro_f1,
            candidate.macro_f1,
            gates.min_macro_f1,
            f"macro-F1 {candidate.macro_f1:.3f}",
        ),
    ]
    if baselines:
        best_name, best = max(baselines.items(), key=lambda kv: kv[1].accuracy)
        lift = candidate.accuracy - best.accuracy
        gate_list.append(
            Gate(
                "beats_baseline",
                lift >= gates.min_baseline_lift,
                lift,
                gates.min_baseline_lift,
                f"accuracy {candidate.accuracy:.3f} vs {best_name} baseline {best.accuracy:.3f}",
            )
        )
    gate_list.append(convergence_gate(val_loss, gates.convergence_window, gates.max_final_loss_change))
    champion_info: dict[str, Any] | None = None
    if champion is not None:
        version, champion_model, champion_inputs = champion
        champ = score(y_true, _predict(champion_model, test, champion_inputs), labels)
        delta = candidate.macro_f1 - champ.macro_f1
        champion_info = {"version": version, "scores": asdict(champ), "macro_f1_delta": delta}
        gate_list.append(
            Gate(
                "not_worse_than_champion",
                delta >= -gates.max_champion_regression,
                delta,
                -gates.max_champion_regression,
                f"macro-F1 {candidate.macro_f1:.3f} vs champion {version} {champ.macro_f1:.3f}",
            )
        )
    return Evaluation(
        candidate=candidate,
        baselines=baselines,
        champion=champion_info,
        gates=gate_list,
        thresholds=gates.model_dump(),
        test_rows=len(test),
        labels=labels,
    )
