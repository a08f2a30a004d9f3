"""Baselines every project gets: a candidate that cannot beat these has learned nothing useful.

A baseline is `(train, test, spec) -> predicted labels for test`; projects add their own (e.g. the
keyword rules a team used before the model) by import path in `ProjectSpec.baselines`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shipyard.project import ProjectSpec


def majority(train: pd.DataFrame, test: pd.DataFrame, spec: ProjectSpec) -> np.ndarray:
    """Always the most frequent training label."""
    label = str(train[spec.label].astype(str).mode().iloc[0])
    return np.full(len(test), label, dtype=object)
