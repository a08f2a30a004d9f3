from __future__ import annotations

import math

import pandas as pd

from ticket_routing.features import (
    TEXT_FEATURES,
    text_features,
    text_features_columns,
    text_features_frame,
)


def test_counts_keywords_per_department_case_insensitively() -> None:
    out = text_features(["Invoice 12 was charged twice? My LOGIN fails", "parental leave from May"])
    assert out["kw_accounting"] == [2, 0]  # "Invoice", "charged"
    assert out["kw_it"] == [1, 0]
    assert out["kw_hr"] == [0, 1]
    assert out["digit_count"] == [2, 0]
    assert out["question_marks"] == [1, 0]
    assert out["word_count"] == [8, 4]
    assert out["text_length"] == [44, 23]


def test_missing_text_counts_as_empty() -> None:
    out = text_features([None, math.nan, ""])
    assert all(out[name] == [0, 0, 0] for name in TEXT_FEATURES)


def test_frame_wrapper_keeps_index_and_types() -> None:
    frame = text_features_frame(pd.DataFrame({"ticket_text": ["my order 5 did not arrive"]}, index=[7]))
    assert list(frame.columns) == list(TEXT_FEATURES)
    assert frame.index.tolist() == [7]
    assert frame.loc[7, "kw_inventory"] == 2 and str(frame.dtypes.iloc[0]) == "int64"


def test_split_is_stratified_seeded_and_disjoint() -> None:
    from shipyard.splitting import split

    frame = pd.DataFrame(
        {
            "ticket_id": range(1000),
            "department": ["accounting"] * 500 + ["inventory"] * 300 + ["hr"] * 100 + ["it"] * 100,
        }
    )
    classes = ("accounting", "inventory", "hr", "it")
    a, b = split(frame, "department", classes, seed=1), split(frame, "department", classes, seed=1)
    assert a.test["ticket_id"].tolist() == b.test["ticket_id"].tolist()
    ids = [set(p["ticket_id"]) for p in (a.train, a.val, a.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 1000
    assert a.test["department"].value_counts().to_dict() == {
        "accounting": 75,
        "inventory": 45,
        "hr": 15,
        "it": 15,
    }
    other = split(frame, "department", classes, seed=2)
    assert other.test["ticket_id"].tolist() != a.test["ticket_id"].tolist()


def test_on_demand_twin_reads_request_columns() -> None:
    out = text_features_columns({"ticket_text": ["my login fails"], "customer_id": [1]})
    assert out == text_features(["my login fails"])
