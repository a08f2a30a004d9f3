"""Ingest: read the source tables, pick the training window, record what was read.

Only tickets whose label had arrived by `labels_as_of` are usable: training on labels that did not
exist yet at the cut-off would make offline metrics look better than production ever can.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.errors import SourceDataError
from shipyard.hashing import file_sha256, json_sha256
from shipyard.schema import (
    ACTIVITY_COLUMNS,
    ACTIVITY_FILE,
    PROFILE_COLUMNS,
    PROFILE_FILE,
    TICKET_COLUMNS,
    TICKETS_FILE,
    TIMESTAMP,
)

REQUIRED: dict[str, dict[str, str]] = {
    TICKETS_FILE: dict(TICKET_COLUMNS),
    PROFILE_FILE: dict(PROFILE_COLUMNS),
    ACTIVITY_FILE: dict(ACTIVITY_COLUMNS),
}


@dataclass(frozen=True)
class IngestSummary:
    rows: dict[str, int]
    file_hashes: dict[str, str]
    data_hash: str
    tickets_in_window: int


def _parse_utc(value: str, field: str) -> pd.Timestamp | None:
    if not value:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError as exc:
        raise SourceDataError(f"{field}: {value!r} is not an ISO date or timestamp") from exc
    return ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)


def read_table(path: Path) -> pd.DataFrame:
    """Read one source table, failing with the file name and the missing columns."""
    if not path.exists():
        raise SourceDataError(f"source table {path} does not exist")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceDataError(f"source table {path} is not a readable parquet file: {exc}") from exc
    missing = [c for c in REQUIRED.get(path.name, {}) if c not in schema.names]
    if missing:
        raise SourceDataError(f"source table {path}: missing required column(s) {', '.join(missing)}")
    return pd.read_parquet(path)


def ingest(
    source_dir: Path,
    tickets_out: Path,
    profile_out: Path,
    activity_out: Path,
    start: str = "",
    end: str = "",
    labels_as_of: str = "",
) -> IngestSummary:
    paths = {name: source_dir / name for name in REQUIRED}
    tables = {name: read_table(path) for name, path in paths.items()}
    tickets = tables[TICKETS_FILE]

    lo, hi = _parse_utc(start, "start"), _parse_utc(end, "end")
    as_of = _parse_utc(labels_as_of, "labels_as_of") or pd.Timestamp(datetime.now(UTC))
    if not pd.api.types.is_datetime64_any_dtype(tickets[TIMESTAMP]):
        raise SourceDataError(
            f"source table {paths[TICKETS_FILE]}: column {TIMESTAMP} must be a timestamp, "
            f"got {tickets[TIMESTAMP].dtype}"
        )
    ts = tickets[TIMESTAMP]
    ts = ts.dt.tz_localize(UTC) if ts.dt.tz is None else ts
    keep = pd.Series(True, index=tickets.index)
    if lo is not None:
        keep &= ts >= lo
    if hi is not None:
        keep &= ts < hi + pd.Timedelta(days=1) if len(end) <= 10 else ts <= hi
    if pd.api.types.is_datetime64_any_dtype(tickets["label_available_at"]):
        keep &= tickets["label_available_at"] <= as_of
    window = tickets[keep]
    if window.empty:
        raise SourceDataError(
            f"source table {paths[TICKETS_FILE]}: no ticket in the window start={start or '-'} "
            f"end={end or '-'} with a label available by {as_of.isoformat()}"
        )

    for target in (tickets_out, profile_out, activity_out):
        target.parent.mkdir(parents=True, exist_ok=True)
    window.to_parquet(tickets_out, index=False)
    shutil.copyfile(paths[PROFILE_FILE], profile_out)
    shutil.copyfile(paths[ACTIVITY_FILE], activity_out)

    # The data hash covers what training will see (the selected tickets, the feature tables), not the
    # window arguments: re-running with "now" as the cut-off on unchanged data hashes the same.
    hashes = {name: file_sha256(path) for name, path in paths.items()}
    seen = {TICKETS_FILE: file_sha256(tickets_out), PROFILE_FILE: hashes[PROFILE_FILE]}
    seen[ACTIVITY_FILE] = hashes[ACTIVITY_FILE]
    return IngestSummary(
        rows={name: len(frame) for name, frame in tables.items()},
        file_hashes=hashes,
        data_hash=json_sha256(seen),
        tickets_in_window=len(window),
    )
