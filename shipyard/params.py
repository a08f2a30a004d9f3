"""Training-loop parameters and evaluation gates as code: typed, strict, one place each.

A module of its own, free of scikit-learn, because the pipeline definition and the settings read
these for defaults: compiling or launching a pipeline should not import the ML stack. Both travel
through a pipeline as one dict parameter each, validated by these models on the way in, so adding a
gate is one field here, not five edits across pipeline, component, settings and CLI.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import SettingsError

__all__ = ["Gates", "TrainParams", "parse"]

M = TypeVar("M", bound=BaseModel)


class TrainParams(BaseModel):
    """The platform's epoch loop; model hyperparameters belong to the project's model factory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(50, ge=1, le=10_000)
    patience: int = Field(3, ge=1, description="Epochs without improvement before stopping.")
    tol: float = Field(0.005, ge=0, lt=1, description="Relative val-loss improvement that still counts.")
    seed: int = 7
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    hyperparameters: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Overrides of the project's model hyperparameters."
    )


class Gates(BaseModel):
    """What a candidate must meet before it can become champion (quoted verbatim on its card)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_accuracy: float = Field(0.70, ge=0, le=1, description="Accuracy on the test holdout.")
    min_macro_f1: float = Field(0.60, ge=0, le=1, description="Macro-F1 on the test holdout.")
    min_baseline_lift: float = Field(0.08, ge=0, le=1, description="Accuracy points above the best baseline.")
    max_champion_regression: float = Field(
        0.01, ge=0, le=1, description="Macro-F1 points a candidate may lose against the current champion."
    )
    max_final_loss_change: float = Field(
        0.03, gt=0, le=1, description="Convergence: relative validation-loss change over the last epochs."
    )
    convergence_window: int = Field(3, ge=1, description="Epochs the convergence gate looks at.")
    max_violation_rate: float = Field(
        0.001, ge=0, le=1, description="Share of rows a value-level data rule may fail."
    )
    max_dropped_rate: float = Field(
        0.01, ge=0, le=1, description="Share of events the point-in-time join may drop (features past TTL)."
    )


def parse(model: type[M], value: dict[str, Any] | M, what: str) -> M:
    """A pipeline parameter dict -> its model, with an error that names the bad key."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"{what}: {problems}") from exc
