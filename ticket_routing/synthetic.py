"""Deterministic synthetic data for ticket routing: a bank routing support tickets.

Both the ticket text and the customer's context at ticket time carry signal, with label noise and
generic texts, so a majority or keyword baseline is clearly beaten while 100 % accuracy is out of
reach. Customer tables are periodic snapshots, which makes point-in-time joins matter: the label of
a ticket depends on the snapshot valid when the ticket was written, not on a later one.

Everything is vectorised with numpy so a million tickets take seconds, and seeded so the same
arguments produce byte-identical parquet files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipyard.errors import SourceDataError
from ticket_routing.schema import (
    ACTIVITY_FILE,
    CREATED,
    DEPARTMENTS,
    ENTITY_KEY,
    LABEL,
    PROFILE_FILE,
    REGIONS,
    SEGMENTS,
    TEXT,
    TICKETS_FILE,
    TIMESTAMP,
)

PROFILE_PERIOD: Final = pd.Timedelta(days=30)
ACTIVITY_PERIOD: Final = pd.Timedelta(days=7)
MANIFEST: Final = "generation.json"

_TEMPLATES: Final[dict[str, tuple[str, ...]]] = {
    "accounting": (
        "I was charged twice for invoice {n}",
        "please explain the fee on my last statement",
        "my payment of {amount} EUR has not been credited yet",
        "I would like a refund for invoice {n}",
        "why is invoice {n} marked as overdue",
        "the billing address on my statement is wrong",
        "there is an unknown charge of {amount} EUR on my account",
        "can you send me a copy of the {month} statement",
    ),
    "inventory": (
        "my order {n} has not arrived",
        "the card reader I ordered is out of stock",
        "please send a replacement for the damaged cheque books",
        "where is the shipment of debit cards for order {n}",
        "the courier lost my parcel with the new tokens",
        "I received the wrong item in order {n}",
        "when will the safe deposit box keys be delivered",
        "can I change the delivery address of order {n}",
    ),
    "hr": (
        "I would like to request parental leave from {month}",
        "question about my payslip for {month}",
        "how many vacation days do I have left this year",
        "please update my pension contribution to {pct} percent",
        "my salary for {month} is missing the overtime",
        "I need a copy of my employment contract",
        "who is my new manager after the reorganisation",
        "can I move my holiday to {month}",
    ),
    "it": (
        "I cannot log in to online banking",
        "my password reset link does not work",
        "the mobile app crashes when I open it",
        "I did not receive the two-factor code",
        "the website shows error {n} in my browser",
        "my access to the business portal was blocked",
        "the app says my session expired every minute",
        "login fails after the latest update",
    ),
}
_GENERIC: Final = (
    "hello, I need help with something, please call me back",
    "urgent: please contact me as soon as possible",
    "I have a question about my account",
    "nothing works as expected, what should I do",
    "could someone from your team get in touch",
    "I already wrote last week and nobody answered",
)
_OPENERS: Final = ("", "", "hi, ", "hello, ", "good morning, ", "dear team, ")
_CLOSERS: Final = ("", "", ".", ". thanks", ". thank you in advance", "!", "?")
_FILLER: Final = " I have been a customer for many years and expect a quick and complete answer."
_MONTHS: Final = ("january", "february", "march", "april", "may", "june", "july", "august")


class SyntheticConfig(BaseModel):
    """What to generate. Drift knobs default to off; dates are inclusive UTC days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(5_000, ge=1)
    tickets: int = Field(20_000, ge=1)
    start: date = date(2025, 1, 1)
    end: date = date(2025, 12, 31)
    seed: int = 20251
    label_noise: float = Field(0.06, ge=0.0, lt=1.0)
    covariate_drift_from: date | None = None
    concept_drift_from: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> SyntheticConfig:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) must not be before start ({self.start})")
        return self

    def to_json(self) -> dict[str, object]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.model_dump().items()}


def _utc(d: date) -> pd.Timestamp:
    return pd.Timestamp(datetime(d.year, d.month, d.day, tzinfo=UTC))


@dataclass(frozen=True)
class SyntheticData:
    tickets: pd.DataFrame
    customer_profile: pd.DataFrame
    customer_activity: pd.DataFrame


def generate(cfg: SyntheticConfig) -> SyntheticData:
    rng = np.random.default_rng(cfg.seed)
    start, end = _utc(cfg.start), _utc(cfg.end) + pd.Timedelta(days=1)
    n_c = cfg.customers
    ids = np.arange(100_000, 100_000 + n_c, dtype=np.int64)

    # Static customer traits and latent rates that drive both features and labels.
    region = rng.choice(len(REGIONS), size=n_c, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    segment = rng.choice(len(SEGMENTS), size=n_c, p=[0.7, 0.2, 0.1])
    is_employee = (rng.random(n_c) < 0.05).astype(np.int64)
    signup_days_before = rng.integers(30, 3_000, size=n_c)
    base_products = rng.poisson(1.2, size=n_c) + 1
    invoice_rate = rng.gamma(1.2, 0.9, size=n_c)
    order_rate = rng.gamma(1.0, 0.8, size=n_c) * np.array([0.7, 1.8, 1.4])[segment]
    login_rate = rng.gamma(0.8, 0.7, size=n_c)
    ticket_weight = rng.lognormal(0.0, 0.6, size=n_c)

    # Snapshots start one period before `start` so every ticket has a valid (non-expired) snapshot.
    jitter_h = rng.integers(0, 24, size=n_c)
    prof_t0 = start - PROFILE_PERIOD
    act_t0 = start - ACTIVITY_PERIOD
    n_prof = int((end - prof_t0) / PROFILE_PERIOD) + 1
    n_act = int((end - act_t0) / ACTIVITY_PERIOD) + 1

    prof_ts = (
        prof_t0.value
        + np.arange(n_prof)[None, :] * PROFILE_PERIOD.value
        + (jitter_h * 3_600_000_000_000)[:, None]
    )
    # A product is occasionally opened: num_products is non-decreasing over snapshots.
    products = base_products[:, None] + np.cumsum(rng.random((n_c, n_prof)) < 0.04, axis=1)
    age = signup_days_before[:, None] + ((prof_ts - start.value) // 86_400_000_000_000)

    act_ts = (
        act_t0.value
        + np.arange(n_act)[None, :] * ACTIVITY_PERIOD.value
        + (jitter_h * 3_600_000_000_000)[:, None]
    )
    drift = np.zeros((n_c, n_act), dtype=bool)
    if cfg.covariate_drift_from is not None:
        drift = act_ts >= _utc(cfg.covariate_drift_from).value
    seasonal = 1.0 + 0.3 * np.sin(np.arange(n_act) / 8.0)[None, :]
    open_invoices = rng.poisson(invoice_rate[:, None] * seasonal * np.where(drift, 2.0, 1.0))
    recent_orders = rng.poisson(order_rate[:, None] * np.ones((1, n_act)))
    failed_logins = rng.poisson(login_rate[:, None] * np.ones((1, n_act))) + drift.astype(np.int64)
    days_since_payment = rng.exponential(20.0, size=(n_c, n_act)).round(1)
    days_since_payment[rng.random((n_c, n_act)) < 0.02] = np.nan  # payment system gaps

    profile = pd.DataFrame(
        {
            ENTITY_KEY: np.repeat(ids, n_prof),
            TIMESTAMP: pd.to_datetime(prof_ts.ravel(), utc=True),
            "region": np.asarray(REGIONS, dtype=object)[np.repeat(region, n_prof)],
            "segment": np.asarray(SEGMENTS, dtype=object)[np.repeat(segment, n_prof)],
            "is_employee": np.repeat(is_employee, n_prof),
            "account_age_days": age.ravel().astype(np.int64),
            "num_products": products.ravel().astype(np.int64),
        }
    )
    profile[CREATED] = profile[TIMESTAMP] + pd.Timedelta(minutes=5)
    activity = pd.DataFrame(
        {
            ENTITY_KEY: np.repeat(ids, n_act),
            TIMESTAMP: pd.to_datetime(act_ts.ravel(), utc=True),
            "open_invoices": open_invoices.ravel().astype(np.int64),
            "recent_orders_30d": recent_orders.ravel().astype(np.int64),
            "failed_logins_7d": failed_logins.ravel().astype(np.int64),
            "days_since_last_payment": days_since_payment.ravel(),
        }
    )
    activity[CREATED] = activity[TIMESTAMP] + pd.Timedelta(minutes=5)

    # Tickets: who writes, when, and the snapshot in force at that moment.
    n_t = cfg.tickets
    cust = rng.choice(n_c, size=n_t, p=ticket_weight / ticket_weight.sum())
    t_ns = start.value + (rng.random(n_t) * (end.value - start.value)).astype(np.int64)
    t_ns = t_ns // 1_000_000_000 * 1_000_000_000  # whole seconds, like a ticketing system
    a_idx = (t_ns - act_ts[cust, 0]) // ACTIVITY_PERIOD.value
    inv = open_invoices[cust, a_idx]
    orders = recent_orders[cust, a_idx]
    logins = failed_logins[cust, a_idx]
    pay = np.nan_to_num(days_since_payment[cust, a_idx], nan=0.0)
    seg = segment[cust]
    emp = is_employee[cust]

    logits = np.stack(
        [
            -1.0 + 0.9 * inv + 0.02 * pay,
            -1.0 + 0.85 * orders + 0.8 * (seg == 1) + 0.5 * (seg == 2),
            -3.5 + 6.0 * emp,
            -1.0 + 1.1 * logins,
        ],
        axis=1,
    )
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    dept = (prob.cumsum(axis=1) > rng.random(n_t)[:, None]).argmax(axis=1)

    text, text_dept = _texts(rng, dept, t_ns, cfg)
    label = dept.copy()
    # Drift draws happen whether or not drift is on, so a drift knob changes nothing but its effect.
    move_draw = rng.random(n_t)
    if cfg.concept_drift_from is not None:
        # The bank moved order disputes to the billing team: inventory wording now means accounting.
        moved = (t_ns >= _utc(cfg.concept_drift_from).value) & (text_dept == 1) & (move_draw < 0.6)
        label[moved] = 0
    noisy = rng.random(n_t) < cfg.label_noise
    label[noisy] = (label[noisy] + rng.integers(1, len(DEPARTMENTS), size=int(noisy.sum()))) % len(
        DEPARTMENTS
    )

    delay_ns = (3_600 + rng.exponential(3 * 86_400, size=n_t)).astype(np.int64) * 1_000_000_000
    order = np.argsort(t_ns, kind="stable")
    tickets = pd.DataFrame(
        {
            "ticket_id": [f"T{i:08d}" for i in range(n_t)],
            ENTITY_KEY: ids[cust][order],
            TIMESTAMP: pd.to_datetime(t_ns[order], utc=True),
            TEXT: np.asarray(text, dtype=object)[order],
            LABEL: np.asarray(DEPARTMENTS, dtype=object)[label][order],
            "label_available_at": pd.to_datetime((t_ns + delay_ns)[order], utc=True),
        }
    )
    for frame in (tickets, profile, activity):
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].astype("string")
    return SyntheticData(tickets=tickets, customer_profile=profile, customer_activity=activity)


def _texts(
    rng: np.random.Generator, dept: np.ndarray, t_ns: np.ndarray, cfg: SyntheticConfig
) -> tuple[list[str], np.ndarray]:
    """Ticket texts: clear (40 %), mixed with another department's wording (35 %), generic (25 %)."""
    n = len(dept)
    mode = rng.choice(3, size=n, p=[0.40, 0.35, 0.25])
    other = (dept + rng.integers(1, len(DEPARTMENTS), size=n)) % len(DEPARTMENTS)
    main_tpl = rng.integers(0, 8, size=n)
    other_tpl = rng.integers(0, 8, size=n)
    generic_tpl = rng.integers(0, len(_GENERIC), size=n)
    opener = rng.integers(0, len(_OPENERS), size=n)
    closer = rng.integers(0, len(_CLOSERS), size=n)
    swap = rng.random(n) < 0.5
    nums = rng.integers(10_000, 99_999, size=n)
    amounts = rng.integers(5, 5_000, size=n)
    months = rng.integers(0, len(_MONTHS), size=n)
    pcts = rng.integers(2, 12, size=n)
    long_draw = rng.random(n)
    long_text = np.zeros(n, dtype=bool)
    if cfg.covariate_drift_from is not None:
        long_text = (t_ns >= _utc(cfg.covariate_drift_from).value) & (long_draw < 0.7)
    text_dept = np.where(mode == 2, -1, dept)

    out: list[str] = []
    for i in range(n):
        slots = {"n": nums[i], "amount": amounts[i], "month": _MONTHS[months[i]], "pct": pcts[i]}
        if mode[i] == 2:
            body = _GENERIC[generic_tpl[i]]
        else:
            body = _TEMPLATES[DEPARTMENTS[dept[i]]][main_tpl[i]].format(**slots)
            if mode[i] == 1:
                extra = _TEMPLATES[DEPARTMENTS[other[i]]][other_tpl[i]].format(**slots)
                body = f"{extra} and also {body}" if swap[i] else f"{body}, also {extra}"
        text = f"{_OPENERS[opener[i]]}{body}{_CLOSERS[closer[i]]}"
        if long_text[i]:
            text += _FILLER
        out.append(text[0].upper() + text[1:])
    return out, text_dept


def write(data: SyntheticData, cfg: SyntheticConfig, out_dir: Path) -> None:
    """Write the three tables and a manifest; each file appears atomically (temp file + rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (
        (TICKETS_FILE, data.tickets),
        (PROFILE_FILE, data.customer_profile),
        (ACTIVITY_FILE, data.customer_activity),
    ):
        tmp = out_dir / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out_dir / name)
    tmp = out_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(cfg.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_dir / MANIFEST)


def existing_config(out_dir: Path) -> dict[str, object] | None:
    """The config the data in `out_dir` was generated with, or None when absent or incomplete."""
    manifest = out_dir / MANIFEST
    if not manifest.exists():
        return None
    if not all((out_dir / f).exists() for f in (TICKETS_FILE, PROFILE_FILE, ACTIVITY_FILE)):
        return None
    loaded: dict[str, object] = json.loads(manifest.read_text())
    return loaded


def generate_data(out_dir: Path, options: Mapping[str, Any]) -> str:
    """The project's data generator (`ProjectSpec.generator`): generate into `out_dir` unless data
    generated with identical options is already there. Returns one line saying what happened."""
    try:
        cfg = SyntheticConfig.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SourceDataError(f"data generator options: {problems}") from exc
    if existing_config(out_dir) == cfg.to_json():
        return f"reusing {out_dir} ({cfg.tickets} tickets, {cfg.customers} customers)"
    data = generate(cfg)
    write(data, cfg, out_dir)
    return f"generated {cfg.tickets} tickets for {cfg.customers} customers into {out_dir}"
