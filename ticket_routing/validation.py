"""Ticket routing's data rules: what a ticket, a profile snapshot and an activity snapshot must be."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from shipyard.validation import ValidationRules
from ticket_routing.schema import (
    ACTIVITY_TABLE,
    CREATED,
    DEPARTMENTS,
    ENTITY_KEY,
    LABEL,
    MAX_TEXT_LENGTH,
    PROFILE_TABLE,
    REGIONS,
    SEGMENTS,
    TEXT,
    TICKETS_TABLE,
    TIMESTAMP,
)

_UTC = pd.DatetimeTZDtype(tz="UTC")


def _finite() -> pa.Check:
    return pa.Check(lambda s: ~np.isinf(s.astype("float64")), name="finite", ignore_na=True)


_SCHEMAS: dict[str, pa.DataFrameSchema] = {
    TICKETS_TABLE: pa.DataFrameSchema(
        {
            "ticket_id": pa.Column(str, unique=True),
            ENTITY_KEY: pa.Column("int64", pa.Check.gt(0)),
            TIMESTAMP: pa.Column(_UTC),
            TEXT: pa.Column(str, pa.Check.str_length(1, MAX_TEXT_LENGTH)),
            LABEL: pa.Column(str, pa.Check.isin(DEPARTMENTS)),
            "label_available_at": pa.Column(_UTC),
        },
        checks=[pa.Check(lambda df: df["label_available_at"] >= df[TIMESTAMP], name="label_after_ticket")],
        coerce=False,
    ),
    PROFILE_TABLE: pa.DataFrameSchema(
        {
            ENTITY_KEY: pa.Column("int64", pa.Check.gt(0)),
            TIMESTAMP: pa.Column(_UTC),
            CREATED: pa.Column(_UTC),
            "region": pa.Column(str, pa.Check.isin(REGIONS)),
            "segment": pa.Column(str, pa.Check.isin(SEGMENTS)),
            "is_employee": pa.Column("int64", pa.Check.isin([0, 1])),
            "account_age_days": pa.Column("int64", pa.Check.in_range(0, 36_500)),
            "num_products": pa.Column("int64", pa.Check.in_range(0, 100)),
        },
        unique=[ENTITY_KEY, TIMESTAMP],
    ),
    ACTIVITY_TABLE: pa.DataFrameSchema(
        {
            ENTITY_KEY: pa.Column("int64", pa.Check.gt(0)),
            TIMESTAMP: pa.Column(_UTC),
            CREATED: pa.Column(_UTC),
            "open_invoices": pa.Column("int64", pa.Check.ge(0)),
            "recent_orders_30d": pa.Column("int64", pa.Check.ge(0)),
            "failed_logins_7d": pa.Column("int64", pa.Check.ge(0)),
            "days_since_last_payment": pa.Column("float64", [pa.Check.ge(0), _finite()], nullable=True),
        },
        unique=[ENTITY_KEY, TIMESTAMP],
    ),
}
# Missing payment dates are a known gap of the payment system; an unknown label is structural.
RULES = ValidationRules(
    schemas=_SCHEMAS,
    max_missing_rate={(ACTIVITY_TABLE, "days_since_last_payment"): 0.05},
    structural_columns=frozenset({(TICKETS_TABLE, LABEL)}),
)
