"""`shipyard run`: the whole loop on one machine, with no cluster.

Generates the project's data when absent (or generated with other options), applies and
materializes the Feast repo, then runs the compiled-from-source training pipeline with KFP's own
local runner (`kfp.local.SubprocessRunner`): each component runs as a separate process exactly as
its container would, passing artifacts through the pipeline root. Steps report progress and
failures as structured events ($SHIPYARD_EVENTS), which is what this runner reads; their
terminal output is only shown.
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from shipyard import featurestore
from shipyard.errors import ShipyardError
from shipyard.hashing import json_sha256
from shipyard.project import import_callable
from shipyard.records import (
    EVENTS_ENV,
    PipelineRun,
    RegisterRecord,
    ledger_dir,
    read_events,
    read_record,
    write_run,
)
from shipyard.settings import Settings, pipeline_arguments


class PipelineFailedError(ShipyardError):
    """A pipeline task failed; the message carries the task's own error when it raised one."""


@dataclass(frozen=True)
class RunResult:
    summary: RegisterRecord
    seconds: dict[str, float]


def ensure_data(settings: Settings, say: TextIO) -> None:
    """Run the project's data generator (it reuses identical data) when the project has one."""
    spec = settings.spec
    if spec.generator is None:
        say.write(f"data: project {spec.name} has no generator; using {settings.data_dir} as it is\n")
        return
    generate = import_callable(spec.generator, f"project {spec.name}: data generator")
    say.write(f"data: {generate(settings.data_dir, settings.data)}\n")


def apply_features(settings: Settings, say: TextIO) -> None:
    """`feast apply`: definitions and online tables. Loading values is the pipeline's materialize
    step, after validation, so nothing unvalidated ever reaches the online store."""
    note = featurestore.apply(settings.feature_repo, settings.feature_store_yaml)
    if note:
        say.write(f"features: {note}\n")
    say.write(f"features: applied {settings.feature_repo}\n")


class _Tee(io.TextIOBase):
    """Route task output: everything to the run log, Shipyard progress lines to the terminal.

    KFP's executor prints its full input/output JSON for every task; useful in a log file, noise on
    a terminal. What the run *knows* (progress, the failing step's error) comes from the events file.
    """

    def __init__(self, inner: TextIO, log: TextIO, verbose: bool) -> None:
        self.inner, self.log, self.verbose = inner, log, verbose

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.verbose:
            return self.inner.write(text)
        for line in text.splitlines(keepends=True):
            stripped = line.strip()
            if stripped.startswith("[shipyard:"):
                self.inner.write("  " + stripped + "\n")
        return len(text)

    def flush(self) -> None:
        self.inner.flush()
        self.log.flush()


def champion_arguments(settings: Settings, say: TextIO = sys.stdout) -> dict[str, str]:
    """The champion as a pipeline input, checked up front (`shipyard.registry.champion_inputs`)."""
    from shipyard.registry import champion_inputs

    return champion_inputs(settings.model_registry, settings.state_dir / "cache" / "models", say)


def run_locally(
    pipeline: Any,
    arguments: dict[str, Any],
    pipeline_root: Path,
    name: str,
    say: TextIO = sys.stdout,
    verbose: bool = False,
) -> Any:
    """Run a compiled-from-source pipeline with kfp.local; return its task (outputs on disk).

    The one local runner for every pipeline: each step is its own process (SubprocessRunner, this
    environment), KFP's full output goes to `<pipeline_root>/last-<name>.log`, progress lines go to
    `say`, and a failure is reported with the failing step's structured error event. Every run, ended
    either way, adds a record to the run ledger `runs/` beside the pipeline root
    (`shipyard.records.PipelineRun`: the compiled package's hash, start and end, status, the failed
    step and its error line).
    """
    import logging

    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    if not verbose:
        logging.getLogger("kfp").setLevel(logging.WARNING)
        # SubprocessRunner runs our image's code in this very environment, on purpose.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    events_file = pipeline_root / f"last-{name}.events.jsonl"
    events_file.unlink(missing_ok=True)
    previous_env = os.environ.get(EVENTS_ENV)
    os.environ[EVENTS_ENV] = str(events_file)
    package_name, package_sha = compiled_identity(pipeline)
    started = _now()
    log_path = pipeline_root / f"last-{name}.log"

    def ledger(
        status: Literal["succeeded", "failed"], step: str | None = None, error: str | None = None
    ) -> None:
        run = PipelineRun(
            pipeline=name,
            pipeline_name=package_name,
            pipeline_sha256=package_sha,
            started_at=started,
            ended_at=_now(),
            status=status,
            failed_step=step,
            error=error,
            log=str(log_path),
        )
        try:
            write_run(ledger_dir(pipeline_root), run)
        except OSError as exc:  # the ledger must never stop a run, nor hide why it failed
            say.write(f"warning: could not record the run in {ledger_dir(pipeline_root)}: {exc}\n")

    with log_path.open("w") as log:
        previous, sys.stdout = sys.stdout, _Tee(say, log, verbose)
        try:
            task = pipeline(**arguments)
        except RuntimeError as exc:
            errors = [e for e in read_events(events_file) if e.get("kind") == "error"]
            detail = f"{errors[-1]['step']}: {errors[-1]['message']}" if errors else str(exc)
            step = str(errors[-1]["step"]) if errors else _failed_task(str(exc))
            error = str(errors[-1]["message"]) if errors else str(exc)
            ledger("failed", step, error.strip().splitlines()[0] if error.strip() else None)
            raise PipelineFailedError(f"{name} pipeline failed: {detail} (full log: {log.name})") from exc
        except Exception as exc:  # recorded, then raised as it was: the ledger never hides a failure
            ledger("failed", None, f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
        else:
            ledger("succeeded")
            return task
        finally:
            sys.stdout = previous
            if previous_env is None:
                os.environ.pop(EVENTS_ENV, None)
            else:
                os.environ[EVENTS_ENV] = previous_env


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _failed_task(message: str) -> str | None:
    """The task kfp.local names in its failure message (used when the step emitted no error event)."""
    found = re.search(r"[Tt]ask '([^']+)'", message)
    return found.group(1) if found else None


def compiled_identity(pipeline: Any) -> tuple[str | None, str | None]:
    """The compiled package's name and hash (as data, like a committed package's in a release record);
    (None, None) when it cannot be compiled here: the ledger must never stop a run."""
    import yaml
    from kfp import compiler

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pipeline.yaml"
            compiler.Compiler().compile(pipeline, str(path))
            docs = list(yaml.safe_load_all(path.read_text()))
    except Exception:  # an uncompilable pipeline fails its run just after, with the real error
        return None, None
    head = docs[0] if docs and isinstance(docs[0], dict) else {}
    return (str(head.get("pipelineInfo", {}).get("name")) or None), json_sha256(docs)


def run_pipeline(
    settings: Settings, verbose: bool = False, say: TextIO = sys.stdout, **overrides: Any
) -> RegisterRecord:
    """Run the training pipeline with kfp.local; return the register step's record."""
    from pipelines.training import make_pipeline

    arguments = pipeline_arguments(settings, **{**champion_arguments(settings, say), **overrides})
    task = run_locally(
        make_pipeline(settings), arguments, Path(settings.pipeline_root), "training", say, verbose
    )
    return read_record(RegisterRecord, task.output.path)


def run(settings: Settings, say: TextIO = sys.stdout, verbose: bool = False) -> RunResult:
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ensure_data(settings, say)
    seconds["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    apply_features(settings, say)
    seconds["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say.write(f"pipeline: running shipyard-training for project {settings.project} with kfp.local\n")
    summary = run_pipeline(settings, verbose=verbose, say=say)
    seconds["pipeline"] = time.perf_counter() - t0
    return RunResult(summary=summary, seconds=seconds)
