"""Train / validation / test split: stratified by department and seeded, so every run of the same
data yields the same holdout and metrics are comparable between a candidate and the champion."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.model_selection import train_test_split

from shipyard.errors import SourceDataError
from shipyard.schema import DEPARTMENTS, LABEL


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def split(
    frame: pd.DataFrame, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 7
) -> Split:
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 0.9:
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and leave at least 10 % for training"
        )
    counts = frame[LABEL].value_counts()
    too_small = [str(label) for label in DEPARTMENTS if counts.get(label, 0) < 10]
    if too_small:
        raise SourceDataError(
            f"column {LABEL!r}: fewer than 10 labelled tickets for {', '.join(too_small)}; "
            "a stratified split needs every department"
        )
    rest, test = train_test_split(frame, test_size=test_fraction, stratify=frame[LABEL], random_state=seed)
    val_share = val_fraction / (1 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=rest[LABEL], random_state=seed + 1)
    return Split(*(part.reset_index(drop=True) for part in (train, val, test)))
