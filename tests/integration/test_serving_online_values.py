"""Issue 8, model server item 5: a bad value in the online store is a missing feature, never a 5xx.

Rows are written into the real SQLite online store of the test stack with Feast's own
`write_to_online_store`, for customers that exist nowhere else (so no other test sees them): one
holds `inf`, one `NaN`, one a category the model never saw, and twins of them hold nothing (a
missing value). The bad customer is answered exactly like its twin with the value missing, in a
batch with healthy customers whose answers do not change; the value is flagged in the request log
and counted, for that row only.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.integration.serving_stack import Server, Stack, known_entities
from tests.integration.test_serving_hardening import read_request_log
from tests.integration.test_serving_lifecycle import scrape, value

PROFILE = {
    "region": "north",
    "segment": "retail",
    "is_employee": 0,
    "account_age_days": 900,
    "num_products": 2,
}
ACTIVITY = {
    "open_invoices": 3,
    "recent_orders_30d": 1,
    "failed_logins_7d": 0,
    "days_since_last_payment": 12.5,
}
BAD_NUMBER, MISSING_NUMBER, NAN_NUMBER = 8_000_000_001, 8_000_000_002, 8_000_000_003
BAD_CATEGORY, MISSING_CATEGORY, NEG_INF = 8_000_000_004, 8_000_000_005, 8_000_000_006
TEXT = "my invoice was charged twice"


def write_customers(repo: Path, yaml_name: str, customers: dict[int, dict[str, Any]]) -> None:
    """Write whole profile + activity rows for `customers` straight into the online store."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / yaml_name)
    now = pd.Timestamp.now(tz="UTC")
    for view, defaults in (("customer_profile", PROFILE), ("customer_activity", ACTIVITY)):
        rows = [
            {
                "customer_id": key,
                "event_timestamp": now,
                "created": now,
                **{c: values.get(c, defaults[c]) for c in defaults},
            }
            for key, values in customers.items()
        ]
        store.write_to_online_store(view, pd.DataFrame(rows))


BAD_ROWS: dict[int, dict[str, Any]] = {
    BAD_NUMBER: {"days_since_last_payment": math.inf},
    NEG_INF: {"days_since_last_payment": -math.inf},
    NAN_NUMBER: {"days_since_last_payment": math.nan},
    MISSING_NUMBER: {"days_since_last_payment": None},
    BAD_CATEGORY: {"region": "mars"},
    MISSING_CATEGORY: {"region": None},
}


@pytest.fixture(scope="module")
def bad_rows(stack: Stack) -> dict[int, dict[str, Any]]:
    write_customers(stack.repo, stack.yaml_name, BAD_ROWS)
    return BAD_ROWS


def probabilities(response: Any) -> list[dict[str, float]]:
    return [p["probabilities"] for p in response.json()["predictions"]]


def test_inf_nan_and_unknown_categories_from_the_store_are_missing_values(
    server: Server, stack: Stack, bad_rows: dict[int, dict[str, Any]]
) -> None:
    healthy = known_entities(stack, 2)
    order = [
        healthy[0],
        BAD_NUMBER,
        NEG_INF,
        NAN_NUMBER,
        MISSING_NUMBER,
        BAD_CATEGORY,
        MISSING_CATEGORY,
        healthy[1],
    ]
    before = scrape(server)
    batch = server.v1(
        [{"customer_id": c, "ticket_text": TEXT} for c in order],
        headers={"x-request-id": "bad-online-values"},
    )
    assert batch.status_code == 200, batch.text
    got = dict(zip(order, probabilities(batch), strict=True))
    # Each bad value is answered as if it were missing: the model's own training-time imputation.
    for bad in (BAD_NUMBER, NEG_INF, NAN_NUMBER):
        assert got[bad] == pytest.approx(got[MISSING_NUMBER], abs=1e-12), bad
    assert got[BAD_CATEGORY] == pytest.approx(got[MISSING_CATEGORY], abs=1e-12)
    assert got[BAD_NUMBER] != pytest.approx(got[BAD_CATEGORY], abs=1e-6)  # the twins are not all alike
    # Healthy customers in the same batch answer exactly as on their own.
    alone = server.v1([{"customer_id": healthy[0], "ticket_text": TEXT}])
    assert probabilities(alone)[0] == got[healthy[0]]
    assert all(p["entity_found"] for p in batch.json()["predictions"])

    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Counted per feature, for the bad rows only: inf, -inf and the unknown category are out of the
    # contract; all five bad-or-missing values were imputed.
    assert delta("shipyard_feature_out_of_range_total", feature="days_since_last_payment") == 2
    assert delta("shipyard_feature_out_of_range_total", feature="region") == 1
    assert delta("shipyard_feature_missing_total", feature="days_since_last_payment") == 4
    assert delta("shipyard_feature_missing_total", feature="region") == 2

    deadline = time.monotonic() + 10
    record: dict[str, Any] | None = None
    while record is None and time.monotonic() < deadline:
        time.sleep(0.2)
        record = next(
            (r for r in read_request_log(server.request_log) if r["request_id"] == "bad-online-values"), None
        )
    assert record is not None
    rows = dict(zip(order, record["rows"], strict=True))
    assert rows[BAD_NUMBER]["invalid_features"] == {"days_since_last_payment": "non_finite"}
    assert rows[NEG_INF]["invalid_features"] == {"days_since_last_payment": "non_finite"}
    assert rows[BAD_CATEGORY]["invalid_features"] == {"region": "unknown_category"}
    for clean in (healthy[0], healthy[1], NAN_NUMBER, MISSING_NUMBER, MISSING_CATEGORY):
        assert "invalid_features" not in rows[clean], clean
    assert rows[BAD_NUMBER]["features"]["days_since_last_payment"] is None
    # The request log stays strict JSON: no Infinity / NaN tokens.
    for path in server.request_log.glob("requests-*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(
                line, parse_constant=lambda token: pytest.fail(f"non-JSON token {token} in the request log")
            )


def test_a_bad_online_value_is_the_same_over_v2(server: Server, bad_rows: dict[int, dict[str, Any]]) -> None:
    payload = {
        "inputs": [
            {"name": "customer_id", "datatype": "INT64", "shape": [2], "data": [BAD_NUMBER, MISSING_NUMBER]},
            {"name": "ticket_text", "datatype": "BYTES", "shape": [2], "data": [TEXT, TEXT]},
        ]
    }
    with server.client() as c:
        r = c.post(f"/v2/models/{server.model}/infer", json=payload)
    assert r.status_code == 200, r.text
    probs = {o["name"]: o for o in r.json()["outputs"]}["probabilities"]["data"]
    half = len(probs) // 2
    assert probs[:half] == pytest.approx(probs[half:], abs=1e-12)
