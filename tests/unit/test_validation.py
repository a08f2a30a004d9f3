from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import DataValidationError
from shipyard.validation import ValidationReport
from shipyard.validation import validate as validate_with
from ticket_routing.schema import ACTIVITY_TABLE as ACTIVITY_FILE
from ticket_routing.schema import PROFILE_TABLE as PROFILE_FILE
from ticket_routing.schema import TICKETS_TABLE as TICKETS_FILE
from ticket_routing.synthetic import SyntheticConfig, generate
from ticket_routing.validation import RULES


def validate(tables: dict[str, pd.DataFrame], max_violation_rate: float = 0.001) -> ValidationReport:
    return validate_with(tables, RULES, max_violation_rate=max_violation_rate)


@pytest.fixture(scope="module")
def clean() -> dict[str, pd.DataFrame]:
    data = generate(SyntheticConfig(customers=200, tickets=2_000))
    return {
        TICKETS_FILE: data.tickets,
        PROFILE_FILE: data.customer_profile,
        ACTIVITY_FILE: data.customer_activity,
    }


def _copy(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {k: v.copy() for k, v in tables.items()}


def test_clean_data_passes(clean: dict[str, pd.DataFrame]) -> None:
    report = validate(clean)
    assert report.failed == []
    report.raise_for_failures()
    assert "| tickets | 2000 |" in report.to_markdown()


def test_unknown_label_fails_even_once(clean: dict[str, pd.DataFrame]) -> None:
    tables = _copy(clean)
    tables[TICKETS_FILE].loc[0, "department"] = "legal"
    with pytest.raises(DataValidationError, match=r"column 'department' breaks rule \"isin"):
        validate(tables).raise_for_failures()


def test_wrong_type_fails(clean: dict[str, pd.DataFrame]) -> None:
    tables = _copy(clean)
    tables[PROFILE_FILE]["num_products"] = tables[PROFILE_FILE]["num_products"].astype("float64")
    with pytest.raises(
        DataValidationError, match=r"customer_profile column 'num_products' breaks rule \"dtype"
    ):
        validate(tables).raise_for_failures()


def test_duplicate_keys_fail(clean: dict[str, pd.DataFrame]) -> None:
    tables = _copy(clean)
    act = tables[ACTIVITY_FILE]
    tables[ACTIVITY_FILE] = pd.concat([act, act.iloc[:1]], ignore_index=True)
    with pytest.raises(DataValidationError, match="unique"):
        validate(tables).raise_for_failures()


def test_rare_bad_values_are_tolerated_but_many_fail(clean: dict[str, pd.DataFrame]) -> None:
    tables = _copy(clean)
    tables[ACTIVITY_FILE].loc[0, "open_invoices"] = -1
    assert validate(tables, max_violation_rate=0.001).failed == []
    tables[ACTIVITY_FILE].loc[:200, "open_invoices"] = -1
    failed = validate(tables, max_violation_rate=0.001).failed
    assert [(f.column, f.rule) for f in failed] == [("open_invoices", "greater_than_or_equal_to(0)")]


def test_nan_and_inf_rates(clean: dict[str, pd.DataFrame]) -> None:
    tables = _copy(clean)
    col = "days_since_last_payment"
    tables[ACTIVITY_FILE].loc[:, col] = np.nan
    failed = validate(tables).failed
    assert any(f.column == col and f.rule == "missing_rate" for f in failed)
    tables = _copy(clean)
    tables[ACTIVITY_FILE].loc[:500, col] = np.inf
    assert any(f.column == col and f.rule == "finite" for f in validate(tables).failed)


def test_a_table_without_rules_is_named() -> None:
    with pytest.raises(DataValidationError, match="table 'refunds'.*no schema"):
        validate({"refunds": pd.DataFrame({"x": [1]})})
