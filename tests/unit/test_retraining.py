"""Continuous training's pure parts: the newer training window a retrain decision asks for, the one
next step each outcome allows, and the report section that shows it (the pipeline run itself is in
tests/integration/test_ct.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shipyard.errors import SourceDataError
from shipyard.monitor_report import render_html
from shipyard.monitoring import event_span
from shipyard.retraining import Retraining, TrainingWindow, outcome, release_command, training_window
from tests.unit.test_monitoring import population, run

EVALUATION: dict[str, Any] = {
    "candidate": {"accuracy": 0.81, "macro_f1": 0.74},
    "champion": {"version": "v1", "scores": {"accuracy": 0.76, "macro_f1": 0.70}, "macro_f1_delta": 0.04},
    "gates": [{"name": "min_accuracy", "passed": True}, {"name": "not_worse_than_champion", "passed": True}],
    "test_rows": 450,
}
WINDOW = TrainingWindow(
    start=None, end="2025-03-31T23:12:50+00:00", labels_as_of="2026-01-01T00:00:00+00:00", end_from="events"
)


def test_the_training_window_ends_at_the_last_served_event_not_at_the_clock() -> None:
    w = training_window("2026-11-24T10:00:00Z", "2025-03-31T23:12:50+00:00", "2026-11-24T10:05:00Z", None)
    assert (w.start, w.end, w.end_from) == (None, "2025-03-31T23:12:50+00:00", "events")
    assert w.labels_as_of == "2026-11-24T10:05:00+00:00"
    sliding = training_window("2026-11-24T10:00:00Z", "2025-03-31T00:00:00", "2026-11-24T10:05:00Z", 30)
    assert (sliding.start, sliding.end) == ("2025-03-01T00:00:00+00:00", "2025-03-31T00:00:00+00:00")
    # No event ids in the log: the window's own end.
    clock = training_window("2026-11-24T10:00:00Z", None, "2026-11-24T10:05:00Z", 7)
    assert (clock.end, clock.end_from) == ("2026-11-24T10:00:00+00:00", "window")
    assert clock.start == "2026-11-17T10:00:00+00:00"
    with pytest.raises(SourceDataError, match="window.events_to"):
        training_window("2026-11-24T10:00:00Z", "last tuesday", "2026-11-24T10:05:00Z", None)


def test_the_event_span_covers_the_served_rows_only() -> None:
    events = pd.DataFrame(
        {
            "event": ["a", "b", "c", "d"],
            "at": pd.to_datetime(["2025-03-02", "2025-03-20", "2025-03-05", "2025-04-30"], utc=True),
        }
    )
    served = pd.DataFrame({"event": ["c", "a", None, "zz"]})  # no id, and an id the table lacks
    assert event_span(served, events, "event", "at") == (
        datetime(2025, 3, 2, tzinfo=UTC).isoformat(),
        datetime(2025, 3, 5, tzinfo=UTC).isoformat(),
    )
    assert event_span(served.iloc[:0], events, "event", "at") == (None, None)
    assert event_span(pd.DataFrame({"event": ["zz"]}), events, "event", "at") == (None, None)


def test_a_gated_candidate_is_proposed_never_promoted() -> None:
    r = outcome(
        "staging", WINDOW, "v7", "candidate", True, "all gates passed", "card.md", EVALUATION, None, []
    )
    assert r.triggered and r.next_command == release_command("staging", "v7")
    assert r.next_command == "shipyard --env staging release propose --model v7 --image <repo@sha256:...>"
    assert r.holdout is not None and (r.holdout.accuracy, r.holdout.champion_accuracy) == (0.81, 0.76)
    assert "not promoted" in r.message and r.failed_gates == []


def test_a_rejected_or_unchanged_model_has_nothing_to_propose() -> None:
    failed = {**EVALUATION, "gates": [{"name": "min_accuracy", "passed": False}]}
    rejected = outcome(
        "local", WINDOW, "v8", "rejected", True, "failed gates: min_accuracy", "c", failed, None, []
    )
    assert rejected.next_command is None and rejected.failed_gates == ["min_accuracy"]
    assert "failed gate(s) min_accuracy" in rejected.message
    same = outcome("local", WINDOW, "v1", "champion", False, "all gates passed", "c", EVALUATION, None, [])
    assert same.next_command is None and "already registered" in same.message


def test_the_report_shows_what_continuous_training_did(tmp_path: Path) -> None:
    summary = run(tmp_path, population(90, 600, covariate=True, concept=True))
    assert summary.decision == "retrain"
    done = outcome(
        "local", WINDOW, "v2", "candidate", True, "all gates passed", "card.md", EVALUATION, None, []
    )
    page = render_html(summary.model_copy(update={"retrain": done}))
    assert "<h2>Continuous training</h2>" in page and "v2: candidate" in page
    assert "shipyard models promote v2" in page and "count drifted" in page
    skipped = Retraining(triggered=False, message="decision healthy: nothing to retrain")
    page = render_html(summary.model_copy(update={"retrain": skipped}))
    assert "decision healthy: nothing to retrain" in page and "release propose" not in page
    assert "Continuous training" not in render_html(summary)  # not asked for: not shown
