"""Deterministic synthetic applications and monthly credit-bureau snapshots."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def generate_data(out_dir: Path, options: Mapping[str, Any]) -> str:
    unknown = set(options) - {"applicants", "applications", "seed"}
    if unknown:
        raise ValueError(f"unknown generator option(s): {', '.join(sorted(unknown))}")
    applicants = int(options.get("applicants", 800))
    n = int(options.get("applications", 4_000))
    rng = np.random.default_rng(int(options.get("seed", 5)))
    start = pd.Timestamp("2025-01-01", tz="UTC")
    ids = np.arange(1, applicants + 1, dtype=np.int64)
    score0 = rng.normal(650, 80, applicants).clip(300, 850)
    income = rng.lognormal(10.5, 0.5, applicants).round(0)
    months = 8
    reported = start + pd.to_timedelta(np.arange(months) * 30, unit="D")
    bureau = pd.DataFrame(
        {
            "applicant_id": np.repeat(ids, months),
            "reported_at": np.tile(reported, applicants),
            "credit_score": (np.repeat(score0, months) + rng.normal(0, 15, applicants * months))
            .clip(300, 850)
            .astype(np.int64),
            "income": np.repeat(income, months),
            "debt_ratio": rng.beta(2, 5, applicants * months).round(3),
            "open_loans": rng.poisson(1.5, applicants * months).astype(np.int64),
        }
    )
    who = rng.integers(0, applicants, n)
    applied = start + pd.to_timedelta(31 + rng.random(n) * 190, unit="D")
    amount = rng.lognormal(9.5, 0.8, n).clip(100, 1_000_000).round(2)
    term = rng.choice([12, 24, 36, 48, 60, 120], n).astype(np.int64)
    month = np.clip(np.asarray((applied - start) / pd.Timedelta(days=30)).astype(int), 0, months - 1)
    snap = bureau.iloc[who * months + month]
    risk = (
        -2.0
        - 0.012 * (snap["credit_score"].to_numpy() - 650)
        + 3.0 * snap["debt_ratio"].to_numpy()
        + 0.4 * np.log(amount / income[who])
        + 0.3 * snap["open_loans"].to_numpy()
        + 0.004 * term
    )
    defaulted = rng.random(n) < 1 / (1 + np.exp(-risk))
    order = np.argsort(applied.to_numpy(), kind="stable")
    applications = pd.DataFrame(
        {
            "application_id": np.arange(n, dtype=np.int64)[order],
            "applicant_id": ids[who][order],
            "applied_at": applied[order],
            "amount": amount[order],
            "term_months": term[order],
            "outcome": pd.Series(np.where(defaulted, "defaulted", "repaid")[order], dtype="string"),
            "outcome_known_at": (applied + pd.Timedelta(days=60))[order],
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("applications.parquet", applications), ("bureau.parquet", bureau)):
        tmp = out_dir / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out_dir / name)
    return f"generated {n} applications for {applicants} applicants into {out_dir}"
