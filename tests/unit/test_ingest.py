from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from shipyard.errors import SourceDataError
from shipyard.ingest import ingest
from shipyard.synthetic import SyntheticConfig, generate, write

CFG = SyntheticConfig(customers=100, tickets=1_000, start=date(2025, 1, 1), end=date(2025, 3, 31))


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    write(generate(CFG), CFG, tmp_path / "src")
    return tmp_path / "src"


def _run(source: Path, **kw: str):  # type: ignore[no-untyped-def]
    out = source.parent / "out"
    return ingest(source, out / "t.parquet", out / "p.parquet", out / "a.parquet", **kw), out


def test_window_and_label_cut_off(source: Path) -> None:
    summary, out = _run(source, start="2025-02-01", end="2025-02-28", labels_as_of="2025-02-20")
    tickets = pd.read_parquet(out / "t.parquet")
    assert summary.tickets_in_window == len(tickets) > 0
    assert tickets["event_timestamp"].min() >= pd.Timestamp("2025-02-01", tz="UTC")
    assert (tickets["label_available_at"] <= pd.Timestamp("2025-02-20", tz="UTC")).all()
    assert summary.rows["tickets.parquet"] == 1_000


def test_same_data_same_hash_different_window_different_hash(source: Path) -> None:
    a, _ = _run(source)
    b, _ = _run(source)
    c, _ = _run(source, start="2025-03-01")
    assert a.data_hash == b.data_hash != c.data_hash


def test_missing_file_and_column_are_named(source: Path) -> None:
    tickets = pd.read_parquet(source / "tickets.parquet")
    tickets.drop(columns=["ticket_text"]).to_parquet(source / "tickets.parquet")
    with pytest.raises(SourceDataError, match="tickets.parquet: missing required column.*ticket_text"):
        _run(source)
    (source / "tickets.parquet").unlink()
    with pytest.raises(SourceDataError, match="tickets.parquet does not exist"):
        _run(source)


def test_empty_window_is_an_error(source: Path) -> None:
    with pytest.raises(SourceDataError, match="no ticket in the window"):
        _run(source, start="2030-01-01")
