"""Scale: the generator at the size the issue names (a million tickets, still deterministic and
valid), and the speed-ups training needs at that size changing nothing it produces."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

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


def test_fixed_width_labels_train_the_very_same_model(
    training_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training reads labels as fixed-width strings (`training.label_array`) because scikit-learn
    sorts them in every call of the epoch loop; the model, its loss curve and its answers must be
    exactly those that labels as Python objects give."""
    import numpy as np

    from shipyard import training
    from shipyard.params import TrainParams
    from shipyard.splitting import split
    from ticket_routing import PROJECT

    parts = split(training_frame, PROJECT.label, PROJECT.classes, seed=7)
    assert training.label_array(parts.train[PROJECT.label]).dtype.kind == "U"
    params = TrainParams(max_epochs=8)
    fast, fast_record = training.train(parts.train, parts.val, PROJECT, params)
    monkeypatch.setattr(training, "label_array", lambda labels: labels.astype(str).to_numpy())
    slow, slow_record = training.train(parts.train, parts.val, PROJECT, params)
    assert fast_record.train_loss == slow_record.train_loss and fast_record.val_loss == slow_record.val_loss
    a, b = fast.named_steps["classifier"], slow.named_steps["classifier"]
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.intercept_, b.intercept_)
    rows = training.prepare(parts.test, training.ModelInputs.from_json(fast_record.inputs))
    assert np.array_equal(fast.predict_proba(rows), slow.predict_proba(rows))
    assert fast.predict(rows).tolist() == slow.predict(rows).tolist()
