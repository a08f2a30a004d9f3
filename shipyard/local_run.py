"""`shipyard run`: the whole loop on one machine, with no cluster.

Generates the synthetic data when absent (or generated with other arguments), applies and
materializes the Feast repo, then runs the compiled-from-source training pipeline with KFP's own
local runner (`kfp.local.SubprocessRunner`): each component runs as a separate process exactly as
its container would, passing artifacts through the pipeline root.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from shipyard import featurestore, synthetic
from shipyard.errors import ShipyardError
from shipyard.schema import ACTIVITY_FILE, PROFILE_FILE, TIMESTAMP
from shipyard.settings import Settings

_ERROR_LINE = re.compile(r"shipyard\.errors\.(\w+): (.*)")


class PipelineFailedError(ShipyardError):
    """A pipeline task failed; the message carries the task's own error when it raised one."""


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]
    seconds: dict[str, float]


def synthetic_config(settings: Settings) -> synthetic.SyntheticConfig:
    s = settings.synthetic
    return synthetic.SyntheticConfig(
        customers=s.customers, tickets=s.tickets, start=s.start, end=s.end, seed=s.seed
    )


def ensure_data(settings: Settings, say: TextIO) -> bool:
    """Generate the source tables unless identical ones are already there. True if generated."""
    cfg = synthetic_config(settings)
    if synthetic.existing_config(settings.data_dir) == cfg.to_json():
        say.write(f"data: reusing {settings.data_dir} ({cfg.tickets} tickets, {cfg.customers} customers)\n")
        return False
    say.write(
        f"data: generating {cfg.tickets} tickets for {cfg.customers} customers into {settings.data_dir}\n"
    )
    synthetic.write(synthetic.generate(cfg), cfg, settings.data_dir)
    return True


def prepare_features(settings: Settings, say: TextIO) -> None:
    """feast apply + materialize the whole span of the snapshot tables, so the online store holds
    each customer's latest snapshot whatever window the data was generated for."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    featurestore.apply(settings.feature_repo, settings.feature_store_yaml)
    stamps = [
        pq.read_table(settings.data_dir / name, columns=[TIMESTAMP])[TIMESTAMP]
        for name in (PROFILE_FILE, ACTIVITY_FILE)
    ]
    start = min(pc.min(col).as_py() for col in stamps)
    end = max(pc.max(col).as_py() for col in stamps) + timedelta(seconds=1)
    featurestore.materialize(settings.feature_repo, start, end, settings.feature_store_yaml)
    say.write(
        f"features: applied {settings.feature_repo} and materialized {start:%Y-%m-%d}..{end:%Y-%m-%d}\n"
    )


class _Tee(io.TextIOBase):
    """Route task output: everything to the run log, Shipyard progress lines to the terminal.

    KFP's executor prints its full input/output JSON for every task; useful in a log file, noise on
    a terminal. The last Shipyard error a task raised is kept to report it as the run's failure.
    """

    def __init__(self, inner: TextIO, log: TextIO, verbose: bool) -> None:
        self.inner, self.log, self.verbose = inner, log, verbose
        self.last_error: str | None = None

    def write(self, text: str) -> int:
        self.log.write(text)
        for match in _ERROR_LINE.finditer(text):
            self.last_error = match.group(2).strip()
        if self.verbose:
            return self.inner.write(text)
        for line in text.splitlines(keepends=True):
            stripped = line.strip()
            if stripped.startswith("[shipyard:") or _ERROR_LINE.search(line):
                self.inner.write("  " + stripped + "\n")
        return len(text)

    def flush(self) -> None:
        self.inner.flush()
        self.log.flush()


def pipeline_arguments(settings: Settings, **overrides: Any) -> dict[str, Any]:
    t = settings.thresholds
    args: dict[str, Any] = {
        "source_dir": str(settings.data_dir),
        "feature_repo": str(settings.feature_repo),
        "feature_store_yaml": settings.feature_store_yaml,
        "feature_service": settings.feature_service,
        "model_registry": settings.model_registry,
        "seed": settings.seed,
        "min_accuracy": t.min_accuracy,
        "min_macro_f1": t.min_macro_f1,
        "min_baseline_lift": t.min_baseline_lift,
        "max_champion_regression": t.max_champion_regression,
        "max_final_loss_change": t.max_final_loss_change,
    }
    args.update(overrides)
    return args


def run_pipeline(settings: Settings, verbose: bool = False, **overrides: Any) -> dict[str, Any]:
    """Run the training pipeline with kfp.local; return the register step's summary.

    The full task output goes to `<pipeline_root>/last-run.log`.
    """
    import logging

    from kfp import local

    from pipelines.training import training_pipeline

    root = Path(settings.pipeline_root)
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    if not verbose:
        logging.getLogger("kfp").setLevel(logging.WARNING)
        # SubprocessRunner runs our image's code in this very environment, on purpose.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    with (root / "last-run.log").open("w") as log:
        tee = _Tee(sys.stdout, log, verbose)
        previous, sys.stdout = sys.stdout, tee
        try:
            task = training_pipeline(**pipeline_arguments(settings, **overrides))
        except RuntimeError as exc:
            detail = tee.last_error or str(exc)
            raise PipelineFailedError(f"training pipeline failed: {detail} (full log: {log.name})") from exc
        finally:
            sys.stdout = previous
    summary: dict[str, Any] = json.loads(Path(task.output.path).read_text())
    return summary


def run(settings: Settings, say: TextIO = sys.stdout, verbose: bool = False) -> RunResult:
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ensure_data(settings, say)
    seconds["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare_features(settings, say)
    seconds["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say.write("pipeline: running shipyard-training with kfp.local (SubprocessRunner)\n")
    summary = run_pipeline(settings, verbose=verbose)
    seconds["pipeline"] = time.perf_counter() - t0
    return RunResult(summary=summary, seconds=seconds)
