from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from shipyard.errors import SourceDataError
from ticket_routing.synthetic import SyntheticConfig, existing_config, generate, generate_data, write

SMALL = SyntheticConfig(customers=300, tickets=3_000, start=date(2025, 1, 1), end=date(2025, 4, 30))


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    write(generate(SMALL), SMALL, tmp_path / "a")
    write(generate(SMALL), SMALL, tmp_path / "b")
    for name in ("tickets.parquet", "customer_profile.parquet", "customer_activity.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert existing_config(tmp_path / "a") == SMALL.to_json()


def test_other_seed_other_data() -> None:
    a = generate(SMALL).tickets
    b = generate(SyntheticConfig(**{**SMALL.model_dump(), "seed": 1})).tickets
    assert not a["ticket_text"].equals(b["ticket_text"])


def test_tables_are_consistent() -> None:
    data = generate(SMALL)
    t = data.tickets
    assert set(t["department"]) == {"accounting", "inventory", "hr", "it"}
    assert (t["label_available_at"] > t["event_timestamp"]).all()
    assert t["ticket_id"].is_unique
    assert t["event_timestamp"].min() >= pd.Timestamp("2025-01-01", tz="UTC")
    assert t["event_timestamp"].max() < pd.Timestamp("2025-05-01", tz="UTC")
    assert set(t["customer_id"]) <= set(data.customer_profile["customer_id"])
    assert not data.customer_activity.duplicated(["customer_id", "event_timestamp"]).any()
    # Every ticket has a snapshot at or before it (no ticket outside the feature history).
    assert data.customer_activity["event_timestamp"].min() < t["event_timestamp"].min()


def test_covariate_drift_shifts_features_after_the_date() -> None:
    drifted = generate(SyntheticConfig(**{**SMALL.model_dump(), "covariate_drift_from": date(2025, 3, 1)}))
    act = drifted.customer_activity
    after = act["event_timestamp"] >= pd.Timestamp("2025-03-01", tz="UTC")
    assert act.loc[after, "open_invoices"].mean() > 1.5 * act.loc[~after, "open_invoices"].mean()
    lengths = drifted.tickets.set_index("event_timestamp")["ticket_text"].str.len()
    assert lengths[lengths.index >= "2025-03-01"].mean() > lengths[lengths.index < "2025-03-01"].mean() + 30


def test_concept_drift_moves_inventory_wording_to_accounting() -> None:
    base = generate(SMALL).tickets
    drifted = generate(
        SyntheticConfig(**{**SMALL.model_dump(), "concept_drift_from": date(2025, 3, 1)})
    ).tickets
    assert base["ticket_text"].equals(drifted["ticket_text"])  # same texts, different labels
    late = drifted["event_timestamp"] >= pd.Timestamp("2025-03-01", tz="UTC")
    early_same = (base.loc[~late, "department"] == drifted.loc[~late, "department"]).all()
    assert early_same
    moved = (base.loc[late, "department"] == "inventory") & (drifted.loc[late, "department"] == "accounting")
    assert moved.sum() > 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"customers": 0}, "customers"), ({"tickets": 0}, "tickets"), ({"end": date(2024, 1, 1)}, "end")],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticConfig.model_validate(kwargs)


def test_generator_entry_reuses_identical_data_and_names_bad_options(tmp_path: Path) -> None:
    options = {"customers": "300", "tickets": 3000, "start": "2025-01-01", "end": "2025-04-30"}
    assert generate_data(tmp_path, options).startswith("generated 3000 tickets")
    before = (tmp_path / "tickets.parquet").stat().st_mtime_ns
    assert generate_data(tmp_path, options).startswith("reusing")
    assert (tmp_path / "tickets.parquet").stat().st_mtime_ns == before
    with pytest.raises(SourceDataError, match="tickts: Extra inputs are not permitted"):
        generate_data(tmp_path, {"tickts": 5})
    with pytest.raises(SourceDataError, match="customers: Input should be greater than or equal to 1"):
        generate_data(tmp_path, {"customers": 0})
