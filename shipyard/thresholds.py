"""Evaluation gates as code: the numbers a candidate must meet before it can become champion.

Kept apart from the evaluation logic so an environment's settings (or a pipeline run's parameters)
can tighten them without touching code, and so a model card can quote exactly what was applied.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_accuracy: float = Field(0.70, ge=0, le=1, description="Accuracy on the test holdout.")
    min_macro_f1: float = Field(0.60, ge=0, le=1, description="Macro-F1 on the test holdout.")
    min_baseline_lift: float = Field(
        0.08, ge=0, le=1, description="Accuracy points above the best baseline (majority, keywords)."
    )
    max_champion_regression: float = Field(
        0.01, ge=0, le=1, description="Macro-F1 points a candidate may lose against the current champion."
    )
    max_final_loss_change: float = Field(
        0.03, gt=0, le=1, description="Convergence: relative validation-loss change over the last epochs."
    )
