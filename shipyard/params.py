"""Training hyperparameters as code.

A module of their own, free of scikit-learn, because the pipeline definition reads them for its
parameter defaults: compiling or launching the pipeline should not import the ML stack.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainParams:
    alpha: float = 1e-4
    max_epochs: int = 50
    patience: int = 3
    tol: float = 0.005  # relative improvement of validation loss that still counts
    ngram_max: int = 2
    min_df: int = 2
    seed: int = 7
