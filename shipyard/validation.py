"""Data validation: schema and quality rules for the source tables, with tolerated violation rates.

Structural problems (a missing column, a wrong type, an unknown label) always fail: no threshold
makes them safe. Value-level rules (ranges, missing values) fail only beyond a rate, because real
feeds are never perfectly clean and one bad row should not stop a retraining. The rules themselves
belong to a project (`ProjectSpec.validation`); this module only applies them and reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from shipyard.errors import DataValidationError

# Rules whose failure is structural: no violation rate makes these acceptable.
STRUCTURAL = {"column_in_dataframe", "dtype", "unique", "not_nullable", "column_in_schema"}


@dataclass(frozen=True)
class ValidationRules:
    """A project's rules: one pandera schema per table (keyed by the spec's table names), columns
    allowed to be missing up to a rate, and columns whose every violation is structural (e.g. an
    unknown label means the label set changed, which needs a new model, not a tolerance)."""

    schemas: Mapping[str, pa.DataFrameSchema]
    max_missing_rate: Mapping[tuple[str, str], float] = field(default_factory=dict)
    structural_columns: frozenset[tuple[str, str]] = frozenset()


@dataclass
class Finding:
    table: str
    column: str
    rule: str
    failures: int
    rate: float
    allowed: float
    rows: frozenset[int] = frozenset()  # positions of the offending rows (value-level rules)

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

    def excluded(self, table: str) -> frozenset[int]:
        """Rows a tolerated value-level finding names: kept out of everything downstream.

        Tolerating a rare bad value means the run goes on, not that the value is used: a region
        `mars` or an `inf` would otherwise be trained on and served from the online store.
        """
        rows: set[int] = set()
        for f in self.findings:
            if f.table == table and f.ok:
                rows |= f.rows
        return frozenset(rows)

    def clean(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        out = {}
        for name, frame in tables.items():
            drop = self.excluded(name)
            out[name] = frame.drop(index=frame.index[sorted(drop)]) if drop else frame
        return out

    def to_markdown(self) -> str:
        lines = ["# Data validation", "", "| table | rows | excluded |", "|---|---|---|"]
        lines += [f"| {t} | {n} | {len(self.excluded(t))} |" for t, n in self.rows.items()]
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


def validate_table(
    name: str, frame: pd.DataFrame, rules: ValidationRules, max_violation_rate: float
) -> list[Finding]:
    if name not in rules.schemas:
        raise DataValidationError(f"table {name!r}: the project's validation rules have no schema for it")
    schema = rules.schemas[name]
    # String columns arrive as pandas' "string" dtype from parquet; pandera's `str` means object.
    frame = frame.astype({c: object for c in frame.columns if pd.api.types.is_string_dtype(frame[c])})
    findings: list[Finding] = []
    if frame.empty:
        return [Finding(name, "<table>", "not_empty", 1, 1.0, 0.0)]
    n = max(len(frame), 1)
    for (table, column), allowed in rules.max_missing_rate.items():
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
        positions = pd.Series(range(len(frame)), index=frame.index)
        for (column, check), group in cases.groupby(["column", "check"], sort=True):
            rule = _rule_name(str(check))
            labels = group["index"].dropna().unique()
            failures = len(labels) if len(labels) else len(frame)
            structural = rule.split(" ")[0] in STRUCTURAL or (name, str(column)) in rules.structural_columns
            allowed = 0.0 if structural else max_violation_rate
            rows = frozenset(int(positions[label]) for label in labels if label in positions.index)
            findings.append(Finding(name, str(column), rule, failures, failures / n, allowed, rows))
    return findings


def _rule_name(check: str) -> str:
    """A readable rule name from pandera's check description, e.g. `isin([...])`, `dtype int64`."""
    if check.startswith("dtype("):
        return f"dtype {check[6:-1]}"
    if "uniqueness" in check:
        return "unique"
    return check


def validate(
    tables: Mapping[str, pd.DataFrame], rules: ValidationRules, max_violation_rate: float = 0.001
) -> ValidationReport:
    report = ValidationReport(rows={name: len(frame) for name, frame in tables.items()})
    for name, frame in tables.items():
        report.findings.extend(validate_table(name, frame, rules, max_violation_rate))
    return report
