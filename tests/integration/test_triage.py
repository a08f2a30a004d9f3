"""`shipyard triage` on the local stack: three staged incidents and a healthy setup, all real.

Everything starts from the drifted-March replay the monitoring tests share (`replayed`: a trained
champion, the real model server's request log, monitoring runs through kfp.local, which the run
ledger recorded). Each scenario gets its own state directory and pipeline root, so the answers come
only from what that scenario staged:

- healthy: the undrifted half's monitoring summary and run, the champion answering in the request log;
- a broken component: the training pipeline run for real on source data with an unknown label, so
  its validate step fails -> pipeline bug;
- a corrupted input batch: requests that break the contract and entities the online store does not
  know, served by a real server, then a monitoring run -> data problem;
- an old model: a monitoring policy whose max_age_days the champion is past -> stale model.

Each incident test also asserts the other questions stay clean, so a triage that blamed everything
would fail; the healthy test fails if any question raised an alarm without a cause.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.local_monitor import run_monitoring
from pipelines.local_run import PipelineFailedError, run_pipeline
from shipyard.cli.demo import request_rows
from shipyard.records import RUNS_DIR, ledger_dir, read_runs
from shipyard.settings import MonitoringSettings, Settings
from shipyard.triage import TriageReport, triage
from tests.integration.drift_replay import DRIFT_FROM, Replayed
from tests.integration.serving_stack import SPEC, start_server

SHIPYARD = Path(sys.executable).parent / "shipyard"


@dataclass(frozen=True)
class Scenario:
    settings: Settings
    root: Path


def verdicts(report: TriageReport) -> dict[str, str]:
    return {a.question: a.verdict for a in report.answers}


def findings(report: TriageReport, question: str) -> list[str]:
    answer = next(a for a in report.answers if a.question == question)
    return [f"{f.verdict} {f.check}: {f.message} [{f.evidence}]" for f in answer.findings]


def scenario(replayed: Replayed, root: Path, summaries: bool = True) -> Scenario:
    """A state directory and pipeline root of its own: the successful monitoring runs of the replay in
    the run ledger and (with `summaries`) the healthy window's monitoring summary and report."""
    root.mkdir(parents=True)
    state, pipeline_root = root / "state", root / "pipeline_root"
    runs, _ = read_runs(ledger_dir(Path(replayed.settings.pipeline_root)))
    ledger_dir(pipeline_root).mkdir(parents=True)
    for path, run in runs:
        if run.pipeline == "monitoring" and run.status == "succeeded":
            shutil.copy(path, ledger_dir(pipeline_root) / path.name)
    if summaries:
        run_dir = replayed.healthy.summary_file.parent
        shutil.copytree(run_dir, state / "monitoring" / run_dir.name)
    settings = replayed.settings.model_copy(update={"state_dir": state, "pipeline_root": str(pipeline_root)})
    return Scenario(settings, root)


def cli(settings: Settings, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real console script on a settings file of the scenario's settings."""
    path = root / "settings.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return subprocess.run(
        [str(SHIPYARD), "--settings", str(path), "triage", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def healthy(replayed: Replayed, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return scenario(replayed, tmp_path_factory.mktemp("triage") / "healthy")


def test_a_healthy_setup_is_reported_healthy(healthy: Scenario, replayed: Replayed) -> None:
    report = triage(healthy.settings, healthy.root)
    assert report.healthy and report.causes == [] and report.exit_code == 0, report.model_dump_json(indent=2)
    v = verdicts(report)
    assert v["model"] == "ok" and v["data"] == "ok" and v["staleness"] == "ok", v
    assert v["pipeline"] in ("ok", "note"), findings(report, "pipeline")
    # The evidence is the artifact: the ledger entry, the registry URI, the request log, the summary.
    pipeline = findings(report, "pipeline")
    assert any(line.startswith("ok monitoring run") and f"/{RUNS_DIR}/" in line for line in pipeline), (
        pipeline
    )
    model = findings(report, "model")
    assert any(f"champion {replayed.stack.version} answering" in line for line in model), model
    assert any(replayed.stack.content_hash in line for line in model), model
    data = findings(report, "data")
    assert any(
        str(healthy.settings.state_dir / "monitoring") in line and "summary.json" in line for line in data
    )

    shown = cli(healthy.settings, healthy.root)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "HEALTHY" in shown.stdout and "evidence:" in shown.stdout and "Traceback" not in shown.stderr
    as_json = cli(healthy.settings, healthy.root, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["healthy"] is True


def test_a_broken_component_is_a_pipeline_bug(replayed: Replayed, healthy: Scenario, tmp_path: Path) -> None:
    """The training pipeline runs for real on source data with a department no model knows: its
    validate step fails, the ledger records where, and triage names the pipeline and the step."""
    s = scenario(replayed, tmp_path / "broken")
    data = tmp_path / "broken" / "data"
    shutil.copytree(replayed.stack.data, data)
    tickets = pd.read_parquet(data / "tickets.parquet")
    tickets.loc[tickets.index[::10], SPEC.label] = "astrology"
    tickets.to_parquet(data / "tickets.parquet", index=False)
    settings = s.settings.model_copy(update={"data_dir": data})
    with open("/dev/null", "w") as say, pytest.raises(PipelineFailedError, match="validate"):
        run_pipeline(settings, say=say)

    report = triage(settings, s.root)
    assert report.causes == ["pipeline"] and report.exit_code == 1, report.model_dump_json(indent=2)
    pipeline = findings(report, "pipeline")
    failed = [line for line in pipeline if line.startswith("problem training run")]
    assert failed and "FAILED at step validate" in failed[0] and "department" in failed[0], pipeline
    assert "shipyard-training" in failed[0]  # the compiled package that ran, with its hash
    # The healthy scenario's ledger has no training run at all: the cause is this run, not triage.
    assert not any(
        line.startswith("problem") for line in findings(triage(healthy.settings, healthy.root), "pipeline")
    )


def test_a_corrupted_input_batch_is_a_data_problem(replayed: Replayed, tmp_path: Path) -> None:
    """A real server answers a batch where a tenth of the requests break the contract and a third of
    the rows name customers the online store does not know; the monitoring run over that window
    finds it, and triage says data problem and nothing else."""
    s = scenario(replayed, tmp_path / "corrupted", summaries=False)
    tickets = pd.read_parquet(replayed.stack.data / "tickets.parquet")
    march = tickets[
        (tickets[SPEC.timestamp] >= pd.Timestamp("2025-03-01", tz="UTC"))
        & (tickets[SPEC.timestamp] < pd.Timestamp(DRIFT_FROM, tz="UTC"))
    ]
    good = request_rows(SPEC, march.head(300))
    unknown = [
        {**row, SPEC.entity_key: 9_000_000 + i} for i, row in enumerate(request_rows(SPEC, march.tail(150)))
    ]
    for row in unknown:
        row.pop(SPEC.event_id, None)  # no label will arrive for these: accuracy stays about the good rows
    server = start_server(replayed.stack, tmp_path / "server")
    start = datetime.now(UTC)
    try:
        for i in range(0, len(good), 10):
            assert server.v1(good[i : i + 10]).status_code == 200
        for i in range(0, len(unknown), 10):
            assert server.v1(unknown[i : i + 10]).status_code == 200
        for bad in (
            {SPEC.entity_key: 0, "ticket_text": "refund"},
            {SPEC.entity_key: 5, "ticket_text": " "},
        ) * 3:
            assert server.v1([bad]).status_code == 400
    finally:
        server.stop()  # flushes the request log
    end = datetime.now(UTC) + timedelta(seconds=1)
    settings = s.settings.model_copy(
        update={"monitoring": MonitoringSettings(request_log=str(server.request_log))}
    )
    with open("/dev/null", "w") as say:
        run = run_monitoring(settings, window_start=start.isoformat(), window_end=end.isoformat(), say=say)
    assert run.summary.window.rows == len(good) + len(unknown)

    report = triage(settings, s.root)
    assert "data" in report.causes and report.exit_code == 1, report.model_dump_json(indent=2)
    v = verdicts(report)
    assert v["data"] == "problem" and v["model"] == "ok" and v["pipeline"] in ("ok", "note"), v
    data = findings(report, "data")
    assert any("broke the input contract" in line and str(run.summary_file) in line for line in data), data
    assert any("no online features for their entity" in line for line in data), data
    staleness = findings(report, "staleness")
    assert any(line.startswith("ok model age") for line in staleness), staleness


def test_an_old_model_is_stale(healthy: Scenario, replayed: Replayed) -> None:
    """The same healthy setup under a policy the champion is past (registered minutes ago, the policy
    retires models after 0.0001 days): stale model, through the console script and its exit code."""
    policy = healthy.settings.monitoring.model_copy(update={"warn_age_days": 0.00005, "max_age_days": 0.0001})
    settings = healthy.settings.model_copy(update={"monitoring": policy})
    report = triage(settings, healthy.root)
    assert report.causes == ["staleness"], report.model_dump_json(indent=2)
    staleness = findings(report, "staleness")
    age = next(line for line in staleness if " model age:" in line)
    assert age.startswith("problem") and replayed.stack.version in age and "retrain at 0.0001 d" in age

    shown = cli(settings, healthy.root, "--json")
    assert shown.returncode == 1, shown.stdout + shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["causes"] == ["staleness"] and doc["healthy"] is False
    shown = cli(settings, healthy.root)
    assert shown.returncode == 1 and "PROBLEM: stale model?" in shown.stdout, shown.stdout + shown.stderr
