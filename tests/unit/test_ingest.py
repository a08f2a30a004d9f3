from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from shipyard.errors import SourceDataError
from shipyard.ingest import IngestSummary, ingest
from ticket_routing import PROJECT
from ticket_routing.synthetic import SyntheticConfig, generate, write

CFG = SyntheticConfig(customers=100, tickets=1_000, start=date(2025, 1, 1), end=date(2025, 3, 31))


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    write(generate(CFG), CFG, tmp_path / "src")
    return tmp_path / "src"


def _run(source: Path, **kw: str) -> tuple[IngestSummary, Path]:
    out = source.parent / "out"
    return ingest(PROJECT, source, out / "t.parquet", out / "features", **kw), out


def test_window_and_label_cut_off(source: Path) -> None:
    summary, out = _run(source, start="2025-02-01", end="2025-02-28", labels_as_of="2025-02-20")
    tickets = pd.read_parquet(out / "t.parquet")
    assert summary.events_in_window == len(tickets) > 0
    assert tickets["event_timestamp"].min() >= pd.Timestamp("2025-02-01", tz="UTC")
    assert (tickets["label_available_at"] <= pd.Timestamp("2025-02-20", tz="UTC")).all()
    assert summary.rows["tickets"] == 1_000
    # Feature tables are copied byte for byte under their spec file names: what is validated is what
    # Feast will join.
    for name in ("customer_profile.parquet", "customer_activity.parquet"):
        assert (out / "features" / name).read_bytes() == (source / name).read_bytes()


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
    with pytest.raises(SourceDataError, match="no event in the window"):
        _run(source, start="2030-01-01")


def test_wrong_column_type_and_corrupt_file_are_named(source: Path) -> None:
    profile = pd.read_parquet(source / "customer_profile.parquet")
    profile.assign(num_products=profile["num_products"].astype(str)).to_parquet(
        source / "customer_profile.parquet"
    )
    with pytest.raises(
        SourceDataError, match="customer_profile.parquet: num_products must be int64, got string"
    ):
        _run(source)
    (source / "customer_profile.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(SourceDataError, match="customer_profile.parquet is not a readable parquet file"):
        _run(source)


def test_corrupt_data_pages_are_named_not_a_traceback(source: Path) -> None:
    """The footer (schema) intact, a data page damaged: the case that used to surface as a bare
    `Corrupt snappy compressed data` with no file named."""
    path = source / "customer_activity.parquet"
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 3
    raw[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceDataError, match=r"customer_activity\.parquet"):
        _run(source)
