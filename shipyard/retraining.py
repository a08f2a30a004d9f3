"""Continuous training: the training window a `retrain` decision asks for, and how its candidate compares.

A monitoring run that decides `retrain` launches the training pipeline on the newer window: the events
up to the end of the monitored window (all of them, or the last `monitoring.retrain_window_days`) whose
label had arrived by the monitoring run's labels cut-off. The end is the time of the latest event the
window served when the log's event ids name it, else the window's end: in production the two
coincide, and when requests are sent after their events happened (a backlog, a replay) the training
window follows the events, not the clock.

The candidate passes the same gates as any training run (thresholds, baselines, the current
champion) and is registered as a candidate: never promoted, never deployed. The release flow decides,
starting with `Retraining.next_command`. Two comparisons say whether it is better on the new data:

* holdout: the candidate's own evaluation, its test split of the new window (never trained on), on
  which the champion was scored too; these are the gates' numbers;
* backtest: the monitored window's labelled rows with the very features the server used (from the
  request log), answered by the candidate, against what the served version answered. Rows the
  candidate trained or validated on are in the all-rows numbers; `unseen_*` leaves them out.

Plain data and pure functions; the local runner (`pipelines/local_monitor.py`) runs the pipeline.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.settings import Settings

__all__ = [
    "Backtest",
    "HoldoutComparison",
    "Retraining",
    "TrainingWindow",
    "backtest",
    "outcome",
    "release_command",
    "retraining_arguments",
    "submitted",
    "training_window",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingWindow(_Model):
    """The training pipeline's `start`, `end` and `labels_as_of` parameters (ISO 8601, UTC)."""

    start: str | None  # None: every event up to `end`
    end: str
    labels_as_of: str
    end_from: Literal["events", "window"]  # the latest served event's time, or the window's end


class HoldoutComparison(_Model):
    """The candidate's evaluation: its test split of the new window, the champion scored on it too."""

    rows: int
    accuracy: float
    macro_f1: float
    champion_version: str | None
    champion_accuracy: float | None
    champion_macro_f1: float | None


class Backtest(_Model):
    """The monitored window's labelled rows (features as served): the candidate vs the served version."""

    served_version: str
    rows: int
    served_accuracy: float
    candidate_accuracy: float
    served_macro_f1: float
    candidate_macro_f1: float
    unseen_rows: int | None  # rows the candidate neither trained nor validated on (None: unknown)
    served_unseen_accuracy: float | None
    candidate_unseen_accuracy: float | None


class Retraining(_Model):
    """What `shipyard monitor run --retrain` did after the decision (part of the monitoring summary)."""

    triggered: bool
    message: str
    window: TrainingWindow | None = None
    version: str | None = None
    # candidate | rejected | (an unchanged version's own status) | submitted (a run on the cluster's KFP)
    status: str | None = None
    created: bool = False
    reason: str = ""
    failed_gates: list[str] = []
    card: str | None = None
    holdout: HoldoutComparison | None = None
    backtest: Backtest | None = None
    notes: list[str] = []
    next_command: str | None = None
    # Submitted to the environment's Kubeflow Pipelines (`kfp.host`): the run that trains, gates, registers.
    run_id: str | None = None
    run_url: str | None = None
    experiment: str | None = None


def release_command(environment: str, version: str) -> str:
    """The one way a retrained candidate goes further: a release proposal, reviewed like any other.
    The local environment has no release record (nothing deploys it): there a person promotes the
    candidate in the registry after reading the report."""
    if environment == "local":
        return f"shipyard models promote {version}"
    return f"shipyard --env {environment} release propose --model {version} --image <repo@sha256:...>"


def _utc(value: str, field: str) -> datetime:
    from shipyard.monitoring import parse_time

    return parse_time(value, field)


def training_window(
    window_end: str,
    events_to: str | None,
    labels_as_of: str,
    days: float | None,
) -> TrainingWindow:
    """The newer window for a retrain decision (see the module docstring)."""
    end = _utc(events_to, "window.events_to") if events_to else _utc(window_end, "window.end")
    start = (end - timedelta(days=days)).isoformat() if days else None
    return TrainingWindow(
        start=start,
        end=end.isoformat(),
        labels_as_of=_utc(labels_as_of, "window.labels_as_of").isoformat(),
        end_from="events" if events_to else "window",
    )


def retraining_arguments(
    settings: Settings, window: TrainingWindow, champion: Mapping[str, str] | None
) -> dict[str, Any]:
    """The training pipeline's parameters for a retraining run, wherever it runs: the environment's,
    the newer window, the current champion for the gate, and `promote` off whatever the environment
    says (the candidate goes on only through the release flow)."""
    from shipyard.settings import pipeline_arguments

    return pipeline_arguments(
        settings,
        **{
            **(champion or {}),
            "start": window.start or "",
            "end": window.end,
            "labels_as_of": window.labels_as_of,
            "promote": False,
        },
    )


def holdout_comparison(evaluation: Mapping[str, Any]) -> HoldoutComparison:
    """From a version's `evaluation.json`."""
    champion = evaluation.get("champion") or {}
    scores = champion.get("scores") or {}
    return HoldoutComparison(
        rows=int(evaluation["test_rows"]),
        accuracy=float(evaluation["candidate"]["accuracy"]),
        macro_f1=float(evaluation["candidate"]["macro_f1"]),
        champion_version=champion.get("version"),
        champion_accuracy=float(scores["accuracy"]) if "accuracy" in scores else None,
        champion_macro_f1=float(scores["macro_f1"]) if "macro_f1" in scores else None,
    )


def backtest(
    frame: pd.DataFrame,
    served_version: str,
    candidate_dir: Path,
    labels: list[str],
    event_id: str | None,
    seen: Collection[str] | None,
) -> tuple[Backtest | None, str]:
    """Score the candidate on the window's labelled rows as they were served; (result, why not).

    `frame` is the monitoring window as collected (request fields, the features the server looked
    up, its prediction, the label that arrived). `seen`: event ids the candidate trained or
    validated on, None when unknown.
    """
    import numpy as np

    from shipyard import training
    from shipyard.artifacts import TRAINING_FILE
    from shipyard.evaluation import score
    from shipyard.monitoring import HASHED_TEXT_PREFIX, LABEL, PREDICTION
    from shipyard.records import TrainingRecord, read_record

    if frame.empty or LABEL not in frame:
        return None, "no labelled rows in the window: the candidate was not backtested on it"
    labelled = frame[frame[LABEL].notna()]
    if labelled.empty:
        return None, "no labelled rows in the window: the candidate was not backtested on it"
    record = read_record(TrainingRecord, candidate_dir / TRAINING_FILE)
    inputs = training.ModelInputs.from_json(record.inputs)
    missing = [c for c in inputs.columns if c not in labelled]
    if missing:
        return None, (
            f"the window's log lacks the candidate's input(s) {', '.join(missing[:5])}: it was not "
            "backtested on the window (its holdout evaluation stands)"
        )
    for col in inputs.text:
        if labelled[col].astype(str).str.startswith(HASHED_TEXT_PREFIX).any():
            return None, f"{col} is logged as sha256: the candidate cannot be backtested on the window"
    model = training.load_model(candidate_dir)
    y_true = labelled[LABEL].astype(str).to_numpy()
    served = labelled[PREDICTION].astype(str).to_numpy()
    candidate = np.asarray(model.predict(training.prepare(labelled, inputs))).astype(str)
    served_scores, candidate_scores = score(y_true, served, labels), score(y_true, candidate, labels)
    unseen_rows = served_unseen = candidate_unseen = None
    if seen is not None and event_id is not None and event_id in labelled:
        unseen = ~labelled[event_id].astype(str).isin(set(seen)).to_numpy()
        unseen_rows = int(unseen.sum())
        if unseen_rows:
            served_unseen = float(np.mean(served[unseen] == y_true[unseen]))
            candidate_unseen = float(np.mean(candidate[unseen] == y_true[unseen]))
    return (
        Backtest(
            served_version=served_version,
            rows=len(labelled),
            served_accuracy=served_scores.accuracy,
            candidate_accuracy=candidate_scores.accuracy,
            served_macro_f1=served_scores.macro_f1,
            candidate_macro_f1=candidate_scores.macro_f1,
            unseen_rows=unseen_rows,
            served_unseen_accuracy=served_unseen,
            candidate_unseen_accuracy=candidate_unseen,
        ),
        "",
    )


def outcome(
    environment: str,
    window: TrainingWindow,
    version: str,
    status: str,
    created: bool,
    reason: str,
    card: str,
    evaluation: Mapping[str, Any],
    backtested: Backtest | None,
    notes: list[str],
) -> Retraining:
    """The result of a retraining run, with the one next step it allows."""
    failed = [str(g["name"]) for g in evaluation.get("gates", []) if not g.get("passed")]
    what = "registered as" if created else "already registered (same data, parameters and code) as"
    if status == "candidate":
        message = (
            f"{version} passed every gate and is {what} a candidate; it is not promoted or deployed: "
            "propose it through the release flow"
        )
        next_command: str | None = release_command(environment, version)
    elif status == "rejected":
        message = f"{version} failed gate(s) {', '.join(failed)} and is {what} rejected: nothing to propose"
        next_command = None
    else:
        message = f"the retrained model is {version}, {what} {status} ({reason}): nothing to propose"
        next_command = None
    return Retraining(
        triggered=True,
        message=message,
        window=window,
        version=version,
        status=status,
        created=created,
        reason=reason,
        failed_gates=failed,
        card=card,
        holdout=holdout_comparison(evaluation),
        backtest=backtested,
        notes=notes,
        next_command=next_command,
    )


def submitted(
    environment: str, window: TrainingWindow, run_id: str, run_url: str, experiment: str
) -> Retraining:
    """A retrain decision on an environment with a Kubeflow Pipelines API: the training run was
    submitted there, and nothing is known yet about its candidate. The run itself gates it and
    registers it as a candidate (`promote` off); what to run next follows it (`shipyard triage` reads
    the environment's last runs), and once it has registered, the release flow takes it further."""
    return Retraining(
        triggered=True,
        status="submitted",
        message=(
            f"training run {run_id} submitted to Kubeflow Pipelines (experiment {experiment}); it trains on "
            "the newer window, passes its model through the same gates (the current champion among them) "
            "and registers it, as a candidate when it passes, never promoted or deployed: when it has "
            "succeeded, "
            f"`shipyard --env {environment} models list` shows the version and `shipyard --env {environment} "
            "release propose --model <version> --image <repo@sha256:...>` proposes it"
        ),
        window=window,
        run_id=run_id,
        run_url=run_url,
        experiment=experiment,
        notes=[
            "the holdout comparison is in the run's evaluate step and in the registered version's card; "
            "the backtest on this window's served rows is not run for a cluster run"
        ],
        next_command=f"shipyard --env {environment} triage",
    )
