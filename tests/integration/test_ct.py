"""Continuous training end to end, on the drifted March the monitoring tests replay (session fixture
`replayed`): `shipyard monitor run --retrain` on the drifted half runs the training pipeline
(kfp.local) on the newer window, gates its candidate against the stale champion, registers it as a
candidate (never champion, even where the environment promotes) and ends with the release command;
on the healthy half nothing is trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from pipelines.local_monitor import continuous_training
from shipyard.cli import main
from shipyard.monitor_report import render_html
from shipyard.monitoring import MonitoringSummary, parse_time
from shipyard.params import Gates
from shipyard.registry import ModelRegistry
from tests.integration.drift_replay import DRIFT_FROM, Replayed


@pytest.fixture(scope="module")
def retrained(replayed: Replayed, tmp_path_factory: pytest.TempPathFactory) -> MonitoringSummary:
    """`shipyard monitor run --retrain --json` on the drifted window, through the CLI.

    The environment's gates, with a wider champion tolerance: the new window's holdout is a random
    split of January to March, and the stale champion trained on part of January and February, so
    its score there is optimistic by about a point (the candidate's is not).
    """
    settings = replayed.settings.model_copy(update={"gates": Gates(max_champion_regression=0.03)})
    assert settings.promote, "the local environment promotes: CT must not, whatever it says"
    settings_file = tmp_path_factory.mktemp("ct") / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    w = replayed.drifted.summary.window
    result = CliRunner().invoke(
        main,
        [
            "--settings",
            str(settings_file),
            "monitor",
            "run",
            "--retrain",
            "--json",
            "--window-start",
            w.start,
            "--window-end",
            w.end,
            "--labels-as-of",
            w.labels_as_of,
        ],
    )
    assert result.exit_code == 0, result.output
    return MonitoringSummary.model_validate_json(result.stdout)


def test_a_retrain_decision_registers_a_gated_candidate_and_never_promotes_it(
    replayed: Replayed, retrained: MonitoringSummary
) -> None:
    assert retrained.decision == "retrain"
    r = retrained.retrain
    assert r is not None and r.triggered, r
    assert r.status == "candidate" and r.created, r.message
    assert r.next_command == f"shipyard models promote {r.version}"
    reg = ModelRegistry(replayed.settings.model_registry)
    assert reg.get(str(r.version)).status == "candidate"
    champion = reg.champion()
    assert champion is not None and champion.version == replayed.stack.version  # the stale one, still
    # The same gates as any run, the current champion among them.
    card = json.loads((reg.fetch(str(r.version)) / "card.json").read_text())
    gates = {g["name"]: g["passed"] for g in card["evaluation"]["gates"]}
    assert {"min_accuracy", "min_macro_f1", "beats_baseline", "not_worse_than_champion"} <= set(gates)
    assert all(gates.values()) and r.failed_gates == []
    assert r.holdout is not None and r.holdout.champion_version == replayed.stack.version


def test_the_training_window_moves_to_include_the_drifted_period(
    replayed: Replayed, retrained: MonitoringSummary
) -> None:
    r = retrained.retrain
    assert r is not None and r.window is not None
    w = replayed.drifted.summary.window
    # Up to the last event the drifted window served (event time, not the replay's wall clock).
    assert r.window.end_from == "events" and r.window.end == w.events_to and r.window.start is None
    assert r.window.labels_as_of == w.labels_as_of
    tickets = pd.read_parquet(replayed.stack.data / "tickets.parquet")
    in_window = tickets[tickets["event_timestamp"] <= pd.Timestamp(parse_time(r.window.end))]
    assert (in_window["event_timestamp"] >= pd.Timestamp(DRIFT_FROM, tz="UTC")).sum() > 400
    reg = ModelRegistry(replayed.settings.model_registry)
    rows = json.loads((reg.fetch(str(r.version)) / "card.json").read_text())["data"]["rows"]
    stale = json.loads((replayed.stack.model_dir / "card.json").read_text())["data"]["rows"]
    # Every event up to then (the validation rules and the point-in-time join keep them all here),
    # where the stale champion saw January and February only.
    assert sum(rows.values()) == len(in_window) > sum(stale.values())


def test_the_candidate_beats_the_stale_champion_on_the_drifted_window(
    replayed: Replayed, retrained: MonitoringSummary
) -> None:
    r = retrained.retrain
    assert r is not None and r.backtest is not None, r
    b = r.backtest
    served = replayed.drifted.summary.performance
    # The window's labelled rows with the features the server used; the served answers are the log's.
    assert b.served_version == replayed.stack.version and b.rows == served.labelled > 400
    assert b.served_accuracy == pytest.approx(served.accuracy)
    assert b.candidate_accuracy > b.served_accuracy, b
    # The rows it trained or validated on are told apart (its test split of the window is the rest).
    assert b.unseen_rows is not None and 0 < b.unseen_rows < b.rows


def test_the_report_and_summary_carry_the_outcome_and_the_next_command(
    replayed: Replayed, retrained: MonitoringSummary
) -> None:
    r = retrained.retrain
    assert r is not None and r.next_command is not None
    state = Path(replayed.settings.state_dir) / "monitoring"
    latest = MonitoringSummary.model_validate_json((state / "latest.json").read_text())
    assert latest.retrain == r
    page = (state / "latest.html").read_text()
    assert "<h2>Continuous training</h2>" in page and r.next_command in page
    for drifted in ("open_invoices", "failed_logins_7d", "ticket_text (length)"):
        assert f"{drifted} drifted" in page
    assert page == render_html(retrained)


def test_a_healthy_decision_trains_nothing(replayed: Replayed, tmp_path: Path) -> None:
    healthy = replayed.healthy
    assert healthy.summary.decision == "healthy"
    reg = ModelRegistry(replayed.settings.model_registry)
    before = [(e.version, e.status) for e in reg.versions()]
    runs = sorted(Path(replayed.settings.pipeline_root).glob("shipyard-training-*"))
    with (tmp_path / "progress.txt").open("w") as say:
        outcome = continuous_training(replayed.settings, healthy.summary, healthy.rows, say=say)
    assert not outcome.triggered and outcome.version is None and outcome.next_command is None
    assert outcome.message == "decision healthy: nothing to retrain"
    assert [(e.version, e.status) for e in reg.versions()] == before
    assert sorted(Path(replayed.settings.pipeline_root).glob("shipyard-training-*")) == runs
    assert (tmp_path / "progress.txt").read_text() == ""
