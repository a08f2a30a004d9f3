"""The monitoring pipeline end to end, for both projects: a trained version served by the real model
server (`serving.process.ServerProcess`), requests carrying the event id, the server's own request
log, and the pipeline (collect -> monitor) run with kfp.local through `shipyard monitor run`'s code.

Ticket routing replays March 2025 of a generated history whose covariate and concept drift start on
the 16th, on a model trained on January and February: the first half of March comes out healthy,
the second half asks for retraining, naming the drifted inputs and the accuracy drop on fresh labels.
The online store is filled day by day while replaying, so each request sees the features that were
current when it was sent, as in production (a store loaded with the end of March would serve the
future to early-March tickets). The loan project runs through the same pipeline with no change.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from pipelines import local_run
from pipelines.local_monitor import MonitorRun, run_monitoring
from serving.process import ServerProcess
from serving.server import config_from_settings
from shipyard import featurestore, steps
from shipyard.params import TrainParams
from shipyard.registry import ModelRegistry
from shipyard.settings import MonitoringSettings, Settings, load_settings
from tests.integration.serving_stack import LENIENT, Server, Stack, copy_repo, start_server
from ticket_routing import synthetic

ROOT = Path(__file__).resolve().parents[2]
TICKETS = "ticket_routing"
DRIFT_FROM = date(2025, 3, 16)
TRAIN_END = "2025-02-28T23:59:59+00:00"
BATCH = 16


@dataclass(frozen=True)
class Replayed:
    settings: Settings
    stack: Stack
    healthy: MonitorRun
    drifted: MonitorRun


def _settings(root: Path, project: str, repo: Path, registry: str, log: Path) -> Settings:
    return load_settings("local").model_copy(
        update={
            "project": project,
            "feature_repo": repo,
            "data_dir": repo / "data",
            "state_dir": root / "state",
            "model_registry": registry,
            "pipeline_root": str(root / "pipeline_root"),
            "monitoring": MonitoringSettings(request_log=str(log)),
        }
    )


def _train_tickets(root: Path) -> Stack:
    """January and February of a history that drifts from March 16th, trained with the pipeline's steps."""
    repo = copy_repo(root / "feature_repo")
    cfg = synthetic.SyntheticConfig(
        customers=300,
        tickets=3000,
        start=date(2025, 1, 1),
        end=date(2025, 3, 31),
        seed=11,
        covariate_drift_from=DRIFT_FROM,
        concept_drift_from=DRIFT_FROM,
    )
    synthetic.write(synthetic.generate(cfg), cfg, repo / "data")
    featurestore.apply(repo)
    work = root / "work"
    work.mkdir()
    p = {
        n: str(work / n)
        for n in ("events", "features", "report", "clean", "clean_features", "set", "model", "eval")
    }
    p |= {n: str(work / f"{n}.parquet") for n in ("train", "val", "test")}
    ingest = steps.ingest_step(TICKETS, str(repo / "data"), p["events"], p["features"], end=TRAIN_END)
    steps.validate_step(
        TICKETS, p["events"], p["features"], p["report"], LENIENT, p["clean"], p["clean_features"]
    )
    steps.training_set_step(
        TICKETS,
        p["clean"],
        p["clean_features"],
        str(repo),
        "feature_store.yaml",
        "ticket_routing_v1",
        p["set"],
        LENIENT,
    )
    steps.split_step(TICKETS, p["set"], p["train"], p["val"], p["test"], TrainParams())
    record = steps.train_step(TICKETS, p["train"], p["val"], p["model"], ingest.data_hash, TrainParams())
    # The event id is passed through and logged, never read by the model.
    assert "ticket_id" not in {c for cols in record.inputs.values() for c in cols}
    assert record.inputs["text"] == ["ticket_text"]
    steps.evaluate_step(TICKETS, p["model"], p["test"], p["train"], "", "", LENIENT, p["eval"])
    registry = root / "models"
    reg = steps.register_step(
        TICKETS, p["model"], p["eval"], str(registry), "ticket_routing_v1", ingest.data_hash, promote=True
    )
    return Stack(
        root=root,
        repo=repo,
        registry=registry,
        version=reg.version,
        content_hash=reg.content_hash,
        model_dir=ModelRegistry(registry).fetch(reg.version),
    )


def _replay(server: Server, repo: Path, tickets: pd.DataFrame, loaded_until: datetime) -> datetime:
    """Send `tickets` day by day, loading each day's feature snapshots into the online store first."""
    with server.client() as client:
        for day, group in tickets.groupby(tickets["event_timestamp"].dt.floor("D")):
            until = day.to_pydatetime()
            if until > loaded_until:
                featurestore.materialize(repo, loaded_until, until)
                loaded_until = until
            rows = [
                {"customer_id": int(key), "ticket_text": str(text), "ticket_id": str(event)}
                for key, text, event in zip(
                    group["customer_id"], group["ticket_text"], group["ticket_id"], strict=True
                )
            ]
            for i in range(0, len(rows), BATCH):
                answer = client.post(
                    f"/v1/models/{server.model}:predict", json={"instances": rows[i : i + BATCH]}
                )
                assert answer.status_code == 200, answer.text
    return loaded_until


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    root = tmp_path_factory.mktemp("monitor-tickets")
    stack = _train_tickets(root)
    tickets = pd.read_parquet(stack.data / "tickets.parquet")
    march = tickets[tickets["event_timestamp"] >= pd.Timestamp("2025-03-01", tz="UTC")]
    first = march[march["event_timestamp"] < pd.Timestamp(DRIFT_FROM, tz="UTC")]
    second = march[march["event_timestamp"] >= pd.Timestamp(DRIFT_FROM, tz="UTC")]
    loaded = datetime(2024, 10, 1, tzinfo=UTC)
    server = start_server(stack, root / "server")
    try:
        t0 = datetime.now(UTC)
        loaded = _replay(server, stack.repo, first, loaded)
        t1 = datetime.now(UTC)
        loaded = _replay(server, stack.repo, second, loaded)
        with server.client() as client:  # three requests the contract rejects, with their field and rule
            for bad in ({"customer_id": 0}, {"customer_id": 1, "ticket_text": " "}, {"ticket_text": "x"}):
                assert (
                    client.post(f"/v1/models/{server.model}:predict", json={"instances": [bad]}).status_code
                    == 400
                )
        t2 = datetime.now(UTC)
    finally:
        server.stop()  # flushes the request log
    settings = _settings(root, TICKETS, stack.repo, str(stack.registry), server.request_log)
    say = open("/dev/null", "w")  # noqa: SIM115 - progress lines are not under test
    try:
        # The version is found from the log (the one that served the window), not named.
        healthy = run_monitoring(settings, window_start=t0.isoformat(), window_end=t1.isoformat(), say=say)
        drifted = run_monitoring(settings, window_start=t1.isoformat(), window_end=t2.isoformat(), say=say)
    finally:
        say.close()
    yield Replayed(settings, stack, healthy, drifted)


def _reasons(run: MonitorRun) -> list[str]:
    return [f"{r.severity} [{r.signal}] {r.message}" for r in run.summary.reasons]


def test_undrifted_traffic_is_healthy(replayed: Replayed) -> None:
    s = replayed.healthy.summary
    assert s.model.version == replayed.stack.version and s.window.rows > 300
    assert s.window.labelled == s.window.rows  # every ticket's department has arrived by now
    assert s.decision == "healthy", _reasons(replayed.healthy)
    assert not s.drifted and s.performance.accuracy is not None
    assert s.data_quality.entity_not_found_rate == 0.0 and s.window.rejected == []


def test_drifted_traffic_asks_for_retraining_and_says_why(replayed: Replayed) -> None:
    s = replayed.drifted.summary
    healthy = replayed.healthy.summary
    assert s.decision == "retrain", _reasons(replayed.drifted)
    drifted = {d.feature for d in s.drifted}
    # The generator's covariate drift: more open invoices, more failed logins, longer texts.
    assert {"open_invoices", "failed_logins_7d", "ticket_text (length)"} <= drifted, drifted
    assert not drifted & {"region", "segment", "is_employee"}
    # Its concept drift: inventory wording now means accounting. Accounting also grew with the
    # covariate drift (which the model follows), so overall accuracy hides it; the per-label F1 on
    # fresh labels does not: tickets predicted "inventory" are now often "accounting".
    inventory, before = s.performance.per_label["inventory"], healthy.performance.per_label["inventory"]
    assert inventory["precision"] < before["precision"] - 0.2
    assert any(r.signal == "accuracy" and r.message.startswith("inventory: F1") for r in s.reasons), _reasons(
        replayed.drifted
    )
    (text,) = s.text
    assert text.oov_rate is not None and text.reference_oov_rate is not None
    assert text.oov_rate > text.reference_oov_rate
    # The rejected requests are counted by field and rule (positions stripped).
    assert {(r.field, r.rule) for r in s.window.rejected} == {
        ("customer_id", "min"),
        ("ticket_text", "min_length"),
        ("customer_id", "required"),
    }


def test_reports_and_summaries_are_written_where_a_person_opens_them(replayed: Replayed) -> None:
    for run in (replayed.healthy, replayed.drifted):
        page = run.report.read_text()
        assert page.startswith("<!DOCTYPE html>") and "<svg" in page
        assert f"<b>{run.summary.decision}</b>" in page
        assert json.loads(run.summary_file.read_text())["decision"] == run.summary.decision
        assert run.report.parent.parent == replayed.settings.state_dir / "monitoring"
    latest = replayed.settings.state_dir / "monitoring" / "latest.json"
    assert json.loads(latest.read_text())["decision"] == replayed.drifted.summary.decision


# -- the second project ------------------------------------------------------------------------------
def test_the_loan_project_is_monitored_by_the_same_pipeline(tmp_path: Path) -> None:
    root = tmp_path
    shutil.copytree(ROOT / "tests" / "projects" / "loan_default" / "feature_repo", root / "feature_repo")
    settings = (
        load_settings("local")
        .model_copy(
            update={
                "project": "tests.projects.loan_default",
                "data": {"applicants": 400, "applications": 2000},
                "gates": LENIENT,
                "model_registry": str(root / "models"),
            }
        )
        .resolve(root)
    )
    with open("/dev/null", "w") as sink:
        trained = local_run.run(settings, say=sink).summary
    version_dir = ModelRegistry(settings.model_registry).fetch(trained.version)
    inputs = json.loads((version_dir / "input_contract.json").read_text())["inputs"]
    assert "application_id" not in inputs["numeric"] and {"amount", "term_months"} <= set(inputs["numeric"])

    applications = pd.read_parquet(settings.data_dir / "applications.parquet").tail(400)
    log = root / "log"
    config = config_from_settings(settings, port=0, request_log_dir=log, request_log_flush_seconds=0.2)
    started = datetime.now(UTC)
    with ServerProcess(config, root / "server.log") as server, httpx.Client(base_url=server.url) as client:
        records = applications.to_dict("records")
        rows: list[dict[str, Any]] = [
            {
                "applicant_id": int(r["applicant_id"]),
                "amount": float(r["amount"]),
                "term_months": int(r["term_months"]),
                "application_id": int(r["application_id"]),
            }
            for r in records
        ]
        for i in range(0, len(rows), BATCH):
            answer = client.post("/v1/models/loan-default:predict", json={"instances": rows[i : i + BATCH]})
            assert answer.status_code == 200, answer.text
    ended = datetime.now(UTC) + timedelta(seconds=1)
    monitored = settings.model_copy(update={"monitoring": MonitoringSettings(request_log=str(log))})
    with open("/dev/null", "w") as sink:
        run = run_monitoring(
            monitored,
            window_start=started.isoformat(),
            window_end=ended.isoformat(),
            model_version=trained.version,
            say=sink,
        )
    s = run.summary
    assert s.model.project == "tests.projects.loan_default" and s.window.event_id == "application_id"
    assert s.window.rows == 400 and s.window.labelled == 400  # integer event ids joined
    assert s.performance.accuracy is not None and set(s.performance.per_label) == {"repaid", "defaulted"}
    assert s.text == [] and {d.feature for d in s.drift} >= {"amount", "term_months", "credit_score"}
    # The request fields come from the very distribution the model was trained on.
    assert not {"amount", "term_months"} & {d.feature for d in s.drifted}, _reasons(run)
    assert "<svg" in run.report.read_text()
