"""Train / validation / test split: stratified by label and seeded, so every run of the same
data yields the same holdout and metrics are comparable between a candidate and the champion.

Plain numpy rather than scikit-learn's splitter: the split step runs as its own KFP process, and
importing scikit-learn there would cost more than the split itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shipyard.errors import SourceDataError

MIN_PER_CLASS = 10


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def split(
    frame: pd.DataFrame,
    label: str,
    classes: tuple[str, ...],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 7,
) -> Split:
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 0.9:
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and leave at least 10 % for training"
        )
    labels = frame[label].astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    too_small = [c for c in classes if counts.get(c, 0) < MIN_PER_CLASS]
    if too_small:
        raise SourceDataError(
            f"column {label!r}: fewer than {MIN_PER_CLASS} labelled rows for {', '.join(too_small)}; "
            "a stratified split needs every class"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for value in sorted(set(labels)):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_test = max(1, round(len(rows) * test_fraction))
        n_val = max(1, round(len(rows) * val_fraction))
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    # Sorted positions keep the frame's (time) order inside each part.
    take = {name: np.sort(np.concatenate(idx)) for name, idx in parts.items()}
    return Split(*(frame.iloc[take[name]].reset_index(drop=True) for name in ("train", "val", "test")))
