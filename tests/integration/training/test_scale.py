"""The generator at the scale the issue names: a million tickets, still deterministic and valid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ticket_routing.synthetic import SyntheticConfig, generate, write


def test_generates_a_million_tickets(tmp_path: Path) -> None:
    cfg = SyntheticConfig(customers=50_000, tickets=1_000_000)
    write(generate(cfg), cfg, tmp_path)
    tickets = pd.read_parquet(
        tmp_path / "tickets.parquet", columns=["ticket_id", "department", "event_timestamp"]
    )
    assert len(tickets) == 1_000_000 and tickets["ticket_id"].is_unique
    shares = tickets["department"].value_counts(normalize=True)
    assert set(shares.index) == {"accounting", "inventory", "hr", "it"} and shares.min() > 0.03
    assert tickets["event_timestamp"].is_monotonic_increasing
