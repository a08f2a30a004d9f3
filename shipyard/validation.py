"""Data validation: schema and quality rules for the source tables, with tolerated violation rates.

Structural problems (a missing column, a wrong type, an unknown label) always fail: no threshold
makes them safe. Value-level rules (ranges, missing values) fail only beyond a rate, because real
feeds are never perfectly clean and one bad row should not stop a retraining.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from shipyard.errors import DataValidationError
from shipyard.schema import (
    ACTIVITY_FILE,
    CREATED,
    DEPARTMENTS,
    ENTITY_KEY,
    LABEL,
    MAX_TEXT_LENGTH,
    PROFILE_FILE,
    REGIONS,
    SEGMENTS,
    TEXT,
    TICKETS_FILE,
    TIMESTAMP,
)

# Rules whose failure is structural: no violation rate makes these acceptable. An unknown label is
# structural too: it means the label set changed, which needs a new model, not a tolerance.
STRUCTURAL = {"column_in_dataframe", "dtype", "unique", "not_nullable", "column_in_schema"}
STRUCTURAL_COLUMNS = {(TICKETS_FILE, LABEL)}

_UTC = pd.DatetimeTZDtype(tz="UTC")


def _finite() -> pa.Check:
    return pa.Check(lambda s: ~np.isinf(s.astype("float64")), name="finite", ignore_na=True)


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    TICKETS_FILE: pa.DataFrameSchema(
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
    PROFILE_FILE: pa.DataFrameSchema(
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
    ACTIVITY_FILE: pa.DataFrameSchema(
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
# Columns allowed to be missing, and how often.
MAX_MISSING_RATE: dict[tuple[str, str], float] = {(ACTIVITY_FILE, "days_since_last_payment"): 0.05}


@dataclass
class Finding:
    table: str
    column: str
    rule: str
    failures: int
    rate: float
    allowed: float

    @property
    def ok(self) -> bool:
        return self.rate <= self.allowed


@dataclass
class ValidationReport:
    rows: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def to_markdown(self) -> str:
        lines = ["# Data validation", "", "| table | rows |", "|---|---|"]
        lines += [f"| {t} | {n} |" for t, n in self.rows.items()]
        lines += [
            "",
            "| table | column | rule | failures | rate | allowed | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in self.findings:
            verdict = "ok" if f.ok else "**FAIL**"
            lines.append(
                f"| {f.table} | {f.column} | {f.rule} | {f.failures} | {f.rate:.4%} "
                f"| {f.allowed:.2%} | {verdict} |"
            )
        if not self.findings:
            lines.append("| all | - | all rules | 0 | 0% | - | ok |")
        return "\n".join(lines) + "\n"

    def raise_for_failures(self) -> None:
        if self.failed:
            detail = "; ".join(
                f"{f.table} column {f.column!r} breaks rule {f.rule!r} in {f.failures} row(s) "
                f"({f.rate:.2%} > allowed {f.allowed:.2%})"
                for f in self.failed
            )
            raise DataValidationError(f"data validation failed: {detail}")


def validate_table(name: str, frame: pd.DataFrame, max_violation_rate: float) -> list[Finding]:
    schema = SCHEMAS[name]
    # String columns arrive as pandas' "string" dtype from parquet; pandera's `str` means object.
    frame = frame.astype({c: object for c in frame.columns if pd.api.types.is_string_dtype(frame[c])})
    findings: list[Finding] = []
    n = max(len(frame), 1)
    for (table, column), allowed in MAX_MISSING_RATE.items():
        if table == name and column in frame:
            missing = int(frame[column].isna().sum())
            findings.append(Finding(name, column, "missing_rate", missing, missing / n, allowed))
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases.assign(
            column=cases["column"].fillna("<table>").astype(str), check=cases["check"].astype(str)
        )
        for (column, check), group in cases.groupby(["column", "check"], sort=True):
            rule = _rule_name(str(check))
            failures = int(group["index"].nunique()) if group["index"].notna().any() else len(frame)
            structural = rule.split(" ")[0] in STRUCTURAL or (name, str(column)) in STRUCTURAL_COLUMNS
            allowed = 0.0 if structural else max_violation_rate
            findings.append(Finding(name, str(column), rule, failures, failures / n, allowed))
    return findings


def _rule_name(check: str) -> str:
    """A readable rule name from pandera's check description, e.g. `isin([...])`, `dtype int64`."""
    if check.startswith("dtype("):
        return f"dtype {check[6:-1]}"
    if "uniqueness" in check:
        return "unique"
    return check


def validate(tables: dict[str, pd.DataFrame], max_violation_rate: float = 0.001) -> ValidationReport:
    report = ValidationReport(rows={name: len(frame) for name, frame in tables.items()})
    for name, frame in tables.items():
        report.findings.extend(validate_table(name, frame, max_violation_rate))
    return report
