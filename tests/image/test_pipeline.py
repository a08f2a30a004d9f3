"""The whole training pipeline with every task in the image: kfp.local.DockerRunner (docker's API,
served by `podman system service` where there is no docker daemon), no network, as uid 10001.

DockerRunner reports success when a container is already gone, so this checks what the tasks wrote,
not exit codes: every task's executor output, the registered version (content hash verified), the
online store, and the same metrics as the same pipeline run on the host by the SubprocessRunner.
"""

from __future__ import annotations

import io
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from shipyard.params import Gates
from shipyard.records import RegisterRecord, read_record
from shipyard.registry import ModelRegistry
from shipyard.settings import Settings, load_settings, pipeline_arguments
from tests.image.engine import ROOT, UID, Engine, open_to_container_user

DATA: dict[str, object] = {
    "customers": 600,
    "tickets": 4_000,
    "start": date(2025, 1, 1),
    "end": date(2025, 4, 30),
    "seed": 3,
}
# These tests are about where the steps run, not about model quality: every model passes.
LENIENT = Gates(
    min_accuracy=0.0,
    min_macro_f1=0.0,
    min_baseline_lift=0.0,
    max_champion_regression=1.0,
    max_final_loss_change=1.0,
).model_dump(mode="json")


def workspace(root: Path) -> Settings:
    """Local settings (files + SQLite) anchored at `root`, with the repo's definitions and fresh data."""
    from pipelines.local_run import apply_features, ensure_data

    shutil.copytree(
        ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("data", "__pycache__")
    )
    settings = load_settings("local").model_copy(update={"data": DATA}).resolve(root)
    sink = io.StringIO()
    ensure_data(settings, sink)
    apply_features(settings, sink)
    return settings


def task_outputs(pipeline_root: Path) -> dict[str, dict[str, Any]]:
    """executor_output.json of each task of the one run under `pipeline_root`, by task name."""
    runs = [p for p in pipeline_root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return {
        task.name: json.loads((task / "executor_output.json").read_text())
        for task in runs[0].iterdir()
        if (task / "executor_output.json").exists()
    }


def metrics(outputs: dict[str, dict[str, Any]]) -> dict[str, float]:
    return dict(outputs["evaluate"]["artifacts"]["metrics"]["artifacts"][0]["metadata"])


def test_training_pipeline_runs_in_the_image_through_docker_runner(
    engine: Engine, docker_host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docker.types import Mount  # type: ignore[import-untyped]
    from kfp import local

    from pipelines.local_run import run_pipeline
    from pipelines.training import make_pipeline

    settings = workspace(tmp_path / "ws")
    # The host's reference run gets a workspace of its own, generated the same way (never a copy:
    # Feast's registry records the absolute paths of its SQLite tables).
    host_settings = workspace(tmp_path / "host")

    ws, pipeline_root = tmp_path / "ws", tmp_path / "pipeline_root"
    pipeline_root.mkdir()
    open_to_container_user(ws)
    open_to_container_user(pipeline_root)
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    # The pipeline root is mounted by DockerRunner itself (same path inside); the workspace (data,
    # feature repo + SQLite stores, model registry) at the same path too, so the pipeline's arguments
    # mean the same inside and out.
    local.init(
        runner=local.DockerRunner(
            network_mode="none", mounts=[Mount(target=str(ws), source=str(ws), type="bind")]
        ),
        pipeline_root=str(pipeline_root),
    )
    pipeline = make_pipeline(settings)
    tasks = set(pipeline.pipeline_spec.root.dag.tasks)
    assert {"ingest", "validate", "materialize", "training-set", "train", "evaluate", "register"} <= tasks
    arguments = pipeline_arguments(settings, champion_uri="", champion_version="", gates=LENIENT)
    task = pipeline(**arguments)

    outputs = task_outputs(pipeline_root)
    assert set(outputs) == tasks, f"tasks that wrote no executor output: {tasks - set(outputs)}"
    run_dir = next(p for p in pipeline_root.iterdir() if p.is_dir())
    for name in tasks:
        written = run_dir / name / "executor_output.json"
        assert written.stat().st_uid == UID, f"{name}: written by uid {written.stat().st_uid}, not the image"

    record = read_record(RegisterRecord, task.output.path)
    assert (record.status, record.version, record.created) == ("champion", "v1", True), record
    registry = ModelRegistry(settings.model_registry)
    assert registry.champion() is not None and registry.champion().version == "v1"  # type: ignore[union-attr]
    model_dir = registry.fetch("v1", tmp_path / "fetched")  # verifies every file against its hash
    assert (model_dir / "MODEL_CARD.md").exists()
    assert outputs["ingest"]["parameterValues"]["events_in_window"] > 0
    assert outputs["materialize"]["parameterValues"]["Output"]
    assert (settings.feature_repo / "data" / "online_store.db").stat().st_size > 0

    # The same pipeline on the host (SubprocessRunner) over the same data computes the same thing.
    host = run_pipeline(host_settings, say=io.StringIO(), gates=LENIENT)
    assert (host.status, host.version) == ("champion", "v1")
    host_outputs = task_outputs(Path(host_settings.pipeline_root))
    assert host_outputs["ingest"]["parameterValues"] == outputs["ingest"]["parameterValues"]
    assert metrics(host_outputs) == pytest.approx(metrics(outputs), abs=1e-9)
