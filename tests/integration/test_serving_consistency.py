"""Train/serve consistency: the vector the server assembles online equals the one training saw.

For a sample of real tickets, re-timed to just after the last feature snapshot (so the latest
online values are the point-in-time-correct ones), Feast historical retrieval (training's path,
including Feast's own on-demand view) and the server's online assembly must produce identical model
inputs, and the served probabilities must equal the offline prediction of the same model version.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.contract import Ticket
from serving.features import FeastOnlineFeatures
from shipyard.featurestore import online_features, open_store, training_frame
from shipyard.registry import ModelRegistry
from shipyard.schema import ENTITY_KEY, LABEL, TEXT, TIMESTAMP
from shipyard.training import load_model, model_inputs
from tests.integration.serving_stack import FEATURE_SERVICE, Server, Stack, source_tables

SAMPLE = 60


def sample(stack: Stack) -> pd.DataFrame:
    tables = source_tables(stack)
    tickets = tables["tickets.parquet"]
    last_snapshot = max(
        tables[t][TIMESTAMP].max() for t in ("customer_profile.parquet", "customer_activity.parquet")
    )
    # One ticket per customer: Feast's point-in-time join keys rows by (entity, timestamp).
    chosen = tickets.drop_duplicates(ENTITY_KEY).sample(SAMPLE, random_state=3).copy()
    chosen[TIMESTAMP] = last_snapshot + pd.Timedelta(hours=1)
    return chosen.sort_values("ticket_id").reset_index(drop=True)


def offline_inputs(stack: Stack, tickets: pd.DataFrame) -> pd.DataFrame:
    frame = (
        training_frame(tickets, stack.repo, FEATURE_SERVICE).sort_values("ticket_id").reset_index(drop=True)
    )
    assert frame["ticket_id"].tolist() == tickets["ticket_id"].tolist()
    return model_inputs(frame)


def as_tickets(tickets: pd.DataFrame) -> list[Ticket]:
    return [Ticket(int(c), str(t)) for c, t in zip(tickets[ENTITY_KEY], tickets[TEXT], strict=True)]


def test_online_feature_vector_equals_the_offline_one(stack: Stack) -> None:
    tickets = sample(stack)
    offline = offline_inputs(stack, tickets)
    online = FeastOnlineFeatures(stack.repo, stack.yaml_name, FEATURE_SERVICE).assemble(as_tickets(tickets))
    assert all(online.customer_found), "the sample should only hold customers with features"
    pd.testing.assert_frame_equal(online.frame.reset_index(drop=True), offline, check_exact=True)


def test_in_process_on_demand_features_equal_feasts_own(stack: Stack) -> None:
    """The server computes the `ticket_text` view in-process; Feast's execution gives the same numbers."""
    tickets = sample(stack)
    store = open_store(stack.repo)
    rows = [{ENTITY_KEY: t.customer_id, TEXT: t.ticket_text} for t in as_tickets(tickets)]
    feast_side = online_features(store, FEATURE_SERVICE, rows)
    ours = FeastOnlineFeatures(stack.repo, stack.yaml_name, FEATURE_SERVICE).assemble(as_tickets(tickets)).raw
    for name, values in ours.items():
        if name in feast_side:
            assert [None if v is None else v for v in feast_side[name]] == values, name


def test_served_prediction_equals_the_offline_prediction(server: Server, stack: Stack) -> None:
    tickets = sample(stack)
    offline = offline_inputs(stack, tickets)
    model = load_model(ModelRegistry(stack.registry).verify(stack.version))
    expected = model.predict_proba(offline)
    classes = [str(c) for c in model.classes_]

    instances = [
        {"customer_id": t.customer_id, "ticket_text": t.ticket_text, "timestamp": ts.isoformat()}
        for t, ts in zip(as_tickets(tickets), tickets[TIMESTAMP], strict=True)
    ]
    response = server.v1(instances)
    assert response.status_code == 200, response.text
    served = np.array([[p["probabilities"][c] for c in classes] for p in response.json()["predictions"]])
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-12)
    departments = [p["department"] for p in response.json()["predictions"]]
    assert departments == [classes[i] for i in expected.argmax(axis=1)]
    # The sample is not degenerate: the model is right often enough for the comparison to mean something.
    assert np.mean(np.array(departments) == tickets[LABEL].to_numpy()) > 0.5
