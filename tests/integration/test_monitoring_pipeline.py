"""The monitoring pipeline end to end, for both projects: a trained version served by the real model
server (`serving.process.ServerProcess`), requests carrying the event id, the server's own request
log, and the pipeline (collect -> monitor) run with kfp.local through `shipyard monitor run`'s code.

Ticket routing replays a drifted March (`tests/integration/drift_replay.py`, the session fixture
`replayed`): the first half comes out healthy, the second half asks for retraining, naming the
drifted inputs and the accuracy drop on fresh labels. The loan project runs through the same
pipeline with no change.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from pipelines import local_run
from pipelines.local_monitor import MonitorRun, run_monitoring
from serving.process import ServerProcess
from serving.server import config_from_settings
from shipyard.registry import ModelRegistry
from shipyard.settings import MonitoringSettings, load_settings
from tests.integration.drift_replay import DRIFT_FROM, Replayed
from tests.integration.serving_stack import LENIENT

ROOT = Path(__file__).resolve().parents[2]
BATCH = 16


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
    # When the served rows' events happened (joined by event id): continuous training trains up to it.
    assert s.window.events_from is not None and s.window.events_to is not None
    assert DRIFT_FROM.isoformat() <= s.window.events_from[:10] <= s.window.events_to[:10] <= "2025-03-31"
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
