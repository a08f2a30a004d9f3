"""Gates on real training data: a real model converges and passes, a broken one is rejected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard import steps
from shipyard.evaluation import convergence_gate
from shipyard.params import Gates, TrainParams
from shipyard.registry import ModelRegistry
from shipyard.splitting import split
from shipyard.training import train
from ticket_routing import PROJECT

LABEL = PROJECT.label


def _split(frame: pd.DataFrame) -> Any:
    return split(frame, LABEL, PROJECT.classes, seed=3)


def test_loss_converges_on_real_features(training_frame: pd.DataFrame) -> None:
    parts = _split(training_frame)
    _, record = train(parts.train, parts.val, PROJECT, TrainParams())
    assert record.val_loss[-1] < 0.9 * record.val_loss[0]
    assert record.train_loss[-1] < record.train_loss[0]
    gate = convergence_gate(record.val_loss, window=3, max_change=Gates().max_final_loss_change)
    assert gate.passed, gate.detail
    # A looser tolerance stops as soon as the curve flattens: early stopping really reads the curve.
    _, loose = train(parts.train, parts.val, PROJECT, TrainParams(tol=0.05))
    assert loose.epochs < record.epochs


def test_convergence_gate_rejects_rising_or_unsettled_curves() -> None:
    assert not convergence_gate([1.0, 0.8, 0.9, 1.2, 1.5], 3, 0.03).passed  # diverging
    assert not convergence_gate([1.0, 0.7, 0.5, 0.3], 3, 0.03).passed  # still falling fast
    assert not convergence_gate([1.0, 0.9], 3, 0.03).passed  # too short to tell
    assert convergence_gate([1.0, 0.6, 0.5, 0.50, 0.495, 0.494], 3, 0.03).passed


def _train_and_register(frame: pd.DataFrame, root: Path, registry: str, shuffle: bool, tag: str) -> Any:
    parts = _split(frame)
    train_frame = parts.train.copy()
    if shuffle:
        train_frame[LABEL] = np.random.default_rng(0).permutation(train_frame[LABEL].to_numpy())
    paths = {name: root / f"{tag}-{name}.parquet" for name in ("train", "val", "test")}
    train_frame.to_parquet(paths["train"])
    parts.val.to_parquet(paths["val"])
    parts.test.to_parquet(paths["test"])
    model_dir, eval_dir = root / f"{tag}-model", root / f"{tag}-eval"
    project = "ticket_routing"
    steps.train_step(
        project, str(paths["train"]), str(paths["val"]), str(model_dir), f"data-{tag}", TrainParams()
    )
    reg = ModelRegistry(registry)
    champion = reg.champion()
    steps.evaluate_step(
        project,
        str(model_dir),
        str(paths["test"]),
        str(paths["train"]),
        reg.uri(champion.version) if champion else "",
        champion.version if champion else "",
        Gates(),
        str(eval_dir),
    )
    return steps.register_step(
        project,
        str(model_dir),
        str(eval_dir),
        registry,
        "ticket_routing_v1",
        f"data-{tag}",
        True,
        champion.version if champion else "",
    )


def test_shuffled_labels_model_is_rejected_and_never_champion(
    training_frame: pd.DataFrame, tmp_path: Path
) -> None:
    registry = str(tmp_path / "models")
    good = _train_and_register(training_frame, tmp_path, registry, shuffle=False, tag="good")
    assert good.status == "champion"
    bad = _train_and_register(training_frame, tmp_path, registry, shuffle=True, tag="bad")
    assert bad.status == "rejected" and bad.created is True
    reg = ModelRegistry(registry)
    champion = reg.champion()
    assert champion is not None and champion.version == good.version
    ev = json.loads((reg.fetch(bad.version) / "evaluation.json").read_text())
    failed = {g["name"] for g in ev["gates"] if not g["passed"]}
    assert {"min_accuracy", "beats_baseline", "not_worse_than_champion"} <= failed
    assert ev["champion"]["version"] == good.version
