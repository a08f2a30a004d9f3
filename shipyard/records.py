"""Typed records the pipeline steps exchange, and the progress/error events they emit.

Free of ML libraries so any step, the CLI and the local runner can read them cheaply. Each step
writes its record as JSON into its own output artifact; the next reader validates it with the
same model, so a renamed field fails at the boundary with the field's name, not three steps later.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = [
    "EVENTS_ENV",
    "RUNS_DIR",
    "EvaluationRecord",
    "IngestRecord",
    "PipelineRun",
    "RegisterRecord",
    "TrainingRecord",
    "emit",
    "ledger_dir",
    "read_events",
    "read_record",
    "read_runs",
    "write_run",
]

EVENTS_ENV = "SHIPYARD_EVENTS"
RUNS_DIR = "runs"  # the run ledger, next to the pipeline root (see ledger_dir)
R = TypeVar("R", bound=BaseModel)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestRecord(_Record):
    rows: dict[str, int]
    file_hashes: dict[str, str]
    data_hash: str
    events_in_window: int


class TrainingRecord(_Record):
    """What a training run did: the evidence the card and the fingerprint are built from."""

    params: dict[str, Any]
    hyperparameters: dict[str, Any]
    inputs: dict[str, list[str]]
    data_hash: str
    git_commit: str
    libraries: dict[str, str]
    python: str
    rows: dict[str, int]
    training_seconds: float
    epochs: int
    train_loss: list[float]
    val_loss: list[float]


class EvaluationRecord(_Record):
    candidate: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    champion: dict[str, Any] | None
    gates: list[dict[str, Any]]
    thresholds: dict[str, Any]
    test_rows: int
    labels: list[str]
    passed: bool

    @property
    def failed_gates(self) -> list[str]:
        return [g["name"] for g in self.gates if not g["passed"]]


class RegisterRecord(_Record):
    version: str
    status: str
    created: bool
    reason: str
    uri: str
    content_hash: str
    card: str
    evaluation_markdown: str


class PipelineRun(_Record):
    """One local pipeline run in the append-only run ledger (`runs/` beside the pipeline root): what ran (the
    compiled package's name and hash, as `shipyard.promotion.pipeline_ref` hashes a committed one),
    when, and how it ended; a failure names the step and its error line. `shipyard triage` reads it."""

    pipeline: str  # the runner's name for it: training | monitoring | retraining
    pipeline_name: str | None  # pipelineInfo.name of the compiled package
    pipeline_sha256: str | None  # None: the package could not be compiled for hashing
    started_at: str
    ended_at: str
    status: Literal["succeeded", "failed"]
    failed_step: str | None = None
    error: str | None = None
    log: str  # KFP's full output of the run (overwritten by the next run of the same pipeline)


def ledger_dir(pipeline_root: Path) -> Path:
    """Where local runs are recorded: `runs/` beside the pipeline root, not inside it, because
    kfp.local owns the pipeline root (one directory per run) and readers list it as runs."""
    return Path(pipeline_root).parent / RUNS_DIR


def write_run(directory: Path, run: PipelineRun) -> Path:
    """Add `run` to the ledger as a new file (never rewritten): <started>-<pipeline>.json."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = run.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = directory / f"{stamp}-{run.pipeline}.json"
    n = 1
    while path.exists():  # two runs started within the same microsecond
        n += 1
        path = directory / f"{stamp}-{run.pipeline}-{n}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(run.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def read_runs(directory: Path) -> tuple[list[tuple[Path, PipelineRun]], list[str]]:
    """The ledger's runs, oldest first, and one problem line per file that is not a run record."""
    runs: list[tuple[Path, PipelineRun]] = []
    problems: list[str] = []
    if not directory.is_dir():
        return runs, problems
    for path in sorted(directory.glob("*.json")):
        try:
            runs.append((path, PipelineRun.model_validate_json(path.read_text())))
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: not a run record ({str(exc).splitlines()[0]})")
    runs.sort(key=lambda item: (item[1].started_at, item[0].name))
    return runs, problems


def read_record(model: type[R], path: Path | str) -> R:
    return model.model_validate_json(Path(path).read_text())


def write_record(record: BaseModel, path: Path | str) -> None:
    Path(path).write_text(record.model_dump_json(indent=2) + "\n")


def emit(step: str, message: str, kind: str = "progress", **data: Any) -> None:
    """One progress line for people, and one JSON event for the runner when it asked for events.

    kfp.local runs each step as a subprocess of `shipyard run`, which sets $SHIPYARD_EVENTS to a
    file; appending one line per event is atomic for lines this short, so concurrent steps are safe.
    """
    print(f"[shipyard:{step}] {message}", flush=True)
    target = os.environ.get(EVENTS_ENV)
    if target:
        line = json.dumps({"step": step, "kind": kind, "message": message, **data}, default=str)
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a step killed mid-write leaves at most one torn line
    return events
