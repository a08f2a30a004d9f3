"""The loan project's data rules."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from shipyard.validation import ValidationRules

_UTC = pd.DatetimeTZDtype(tz="UTC")

RULES = ValidationRules(
    schemas={
        "applications": pa.DataFrameSchema(
            {
                "application_id": pa.Column("int64", unique=True),
                "applicant_id": pa.Column("int64", pa.Check.gt(0)),
                "applied_at": pa.Column(_UTC),
                "amount": pa.Column("float64", pa.Check.in_range(100, 1_000_000)),
                "term_months": pa.Column("int64", pa.Check.in_range(6, 120)),
                "outcome": pa.Column(str, pa.Check.isin(["repaid", "defaulted"])),
                "outcome_known_at": pa.Column(_UTC),
            }
        ),
        "bureau": pa.DataFrameSchema(
            {
                "applicant_id": pa.Column("int64", pa.Check.gt(0)),
                "reported_at": pa.Column(_UTC),
                "credit_score": pa.Column("int64", pa.Check.in_range(300, 850)),
                "income": pa.Column("float64", pa.Check.ge(0)),
                "debt_ratio": pa.Column("float64", pa.Check.in_range(0, 1)),
                "open_loans": pa.Column("int64", pa.Check.ge(0)),
            },
            unique=["applicant_id", "reported_at"],
        ),
    },
    structural_columns=frozenset({("applications", "outcome")}),
)
