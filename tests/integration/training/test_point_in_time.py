"""Point-in-time correctness: Feast's historical join never hands training a value from the future."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from shipyard import featurestore
from tests.integration.training.conftest import ROOT
from ticket_routing import PROJECT
from ticket_routing.schema import ACTIVITY_FILE, PROFILE_FILE, TICKETS_FILE

T = pd.Timestamp


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    return repo


def _activity(rows: list[tuple[int, str, int]]) -> pd.DataFrame:
    ts = pd.to_datetime([r[1] for r in rows], utc=True)
    return pd.DataFrame(
        {
            "customer_id": np.array([r[0] for r in rows], dtype=np.int64),
            "event_timestamp": ts,
            "created": ts,
            "open_invoices": np.array([r[2] for r in rows], dtype=np.int64),
            "recent_orders_30d": np.zeros(len(rows), dtype=np.int64),
            "failed_logins_7d": np.zeros(len(rows), dtype=np.int64),
            "days_since_last_payment": np.ones(len(rows)),
        }
    )


def test_feature_written_after_ticket_is_never_used(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    # Customer 1: a value before the ticket (3) and a much later one (99) written after it.
    # Customer 2: only a snapshot older than the view's TTL (14 days) -> no value at all.
    _activity(
        [
            (1, "2025-03-01T00:00:00", 3),
            (1, "2025-03-10T12:00:01", 99),
            (2, "2025-01-01T00:00:00", 7),
        ]
    ).to_parquet(repo / "data" / ACTIVITY_FILE)
    prof_ts = pd.to_datetime(["2025-02-20T00:00:00", "2025-02-20T00:00:00"], utc=True)
    pd.DataFrame(
        {
            "customer_id": np.array([1, 2], dtype=np.int64),
            "event_timestamp": prof_ts,
            "created": prof_ts,
            "region": ["north", "south"],
            "segment": ["retail", "retail"],
            "is_employee": np.array([0, 0], dtype=np.int64),
            "account_age_days": np.array([100, 200], dtype=np.int64),
            "num_products": np.array([1, 2], dtype=np.int64),
        }
    ).to_parquet(repo / "data" / PROFILE_FILE)
    tickets = pd.DataFrame(
        {
            "ticket_id": ["a", "b", "c"],
            "customer_id": np.array([1, 1, 2], dtype=np.int64),
            "event_timestamp": pd.to_datetime(
                ["2025-03-10T12:00:00", "2025-03-10T12:00:02", "2025-03-10T12:00:00"], utc=True
            ),
            "ticket_text": ["invoice", "invoice", "login"],
            "department": ["accounting", "accounting", "it"],
        }
    )
    tickets.to_parquet(repo / "data" / TICKETS_FILE)
    featurestore.apply(repo)
    frame = featurestore.training_frame(tickets, PROJECT, repo, repo / "data", "ticket_routing_v1").set_index(
        "ticket_id"
    )

    assert frame.loc["a", "open_invoices"] == 3  # one second before the 99 snapshot
    assert frame.loc["b", "open_invoices"] == 99  # one second after it
    # Expired by TTL: Feast's file offline store drops the row rather than back-filling an old value;
    # the training-set step counts such rows and fails beyond a tolerated rate.
    assert "c" not in frame.index
    assert frame.loc["a", "kw_accounting"] == 1 and frame.loc["a", "kw_it"] == 0
    assert frame.loc["a", "region"] == "north"


def test_training_set_step_reports_dropped_tickets(tmp_path: Path) -> None:
    """Most tickets without valid features means broken feature data: fail naming the cause."""
    import pytest

    from shipyard.errors import SourceDataError
    from shipyard.params import Gates
    from shipyard.steps import training_set_step

    repo = _repo(tmp_path)
    _activity([(1, "2025-01-01T00:00:00", 1)]).to_parquet(repo / "data" / ACTIVITY_FILE)
    ts = pd.to_datetime(["2025-01-01T00:00:00"], utc=True)
    pd.DataFrame(
        {
            "customer_id": np.array([1], dtype=np.int64),
            "event_timestamp": ts,
            "created": ts,
            "region": ["north"],
            "segment": ["retail"],
            "is_employee": np.array([0], dtype=np.int64),
            "account_age_days": np.array([1], dtype=np.int64),
            "num_products": np.array([1], dtype=np.int64),
        }
    ).to_parquet(repo / "data" / PROFILE_FILE)
    tickets = pd.DataFrame(
        {
            "ticket_id": ["x", "y"],
            "customer_id": np.array([1, 1], dtype=np.int64),
            "event_timestamp": pd.to_datetime(["2025-01-02T00:00:00", "2025-06-01T00:00:00"], utc=True),
            "ticket_text": ["a", "b"],
            "department": ["it", "it"],
        }
    )
    tickets.to_parquet(tmp_path / "tickets.parquet")
    featurestore.apply(repo)
    with pytest.raises(SourceDataError, match=r"1 of 2 events .*ticket_routing_v1"):
        training_set_step(
            "ticket_routing",
            str(tmp_path / "tickets.parquet"),
            str(repo / "data"),
            str(repo),
            "feature_store.yaml",
            "ticket_routing_v1",
            str(tmp_path / "out.parquet"),
            Gates(max_dropped_rate=0.01),
        )


def test_training_reads_the_validated_copy_not_the_live_files(tmp_path: Path) -> None:
    """What is validated is what is hashed is what is trained on: after ingest copied and validated
    the tables, a change to the live file (a feed landing mid-run) must not reach the training set."""
    repo = _repo(tmp_path)
    _activity([(1, "2025-03-01T00:00:00", 3)]).to_parquet(repo / "data" / ACTIVITY_FILE)
    ts = pd.to_datetime(["2025-02-20T00:00:00"], utc=True)
    profile = pd.DataFrame(
        {
            "customer_id": np.array([1], dtype=np.int64),
            "event_timestamp": ts,
            "created": ts,
            "region": ["north"],
            "segment": ["retail"],
            "is_employee": np.array([0], dtype=np.int64),
            "account_age_days": np.array([1], dtype=np.int64),
            "num_products": np.array([1], dtype=np.int64),
        }
    )
    profile.to_parquet(repo / "data" / PROFILE_FILE)
    featurestore.apply(repo)
    validated = tmp_path / "validated"
    shutil.copytree(repo / "data", validated, ignore=shutil.ignore_patterns("*.db"))
    # The live activity table changes after ingest: 3 becomes 42.
    _activity([(1, "2025-03-01T00:00:00", 42)]).to_parquet(repo / "data" / ACTIVITY_FILE)
    tickets = pd.DataFrame(
        {
            "ticket_id": ["a"],
            "customer_id": np.array([1], dtype=np.int64),
            "event_timestamp": pd.to_datetime(["2025-03-02T00:00:00"], utc=True),
            "ticket_text": ["invoice"],
            "department": ["accounting"],
        }
    )
    frame = featurestore.training_frame(tickets, PROJECT, repo, validated, "ticket_routing_v1")
    assert frame["open_invoices"].tolist() == [3]
    live = featurestore.training_frame(tickets, PROJECT, repo, repo / "data", "ticket_routing_v1")
    assert live["open_invoices"].tolist() == [42]
