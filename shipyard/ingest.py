"""Ingest: read a project's source tables, pick the training window, record what was read.

Only events whose label had arrived by `labels_as_of` are usable: training on labels that did not
exist yet at the cut-off would make offline metrics look better than production ever can. The
outputs are the exact bytes later steps validate, join and train on: the events parquet, and one
directory holding every feature table under its spec file name.
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
from shipyard.project import ProjectSpec, Table

_KIND = {
    "int64": pa.types.is_integer,
    "float64": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "timestamp": pa.types.is_timestamp,
    "bool": pa.types.is_boolean,
}


@dataclass(frozen=True)
class IngestSummary:
    rows: dict[str, int]
    file_hashes: dict[str, str]
    data_hash: str
    events_in_window: int


def _parse_utc(value: str, field: str) -> pd.Timestamp | None:
    if not value:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError as exc:
        raise SourceDataError(f"{field}: {value!r} is not an ISO date or timestamp") from exc
    return ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)


def read_table(path: Path, table: Table) -> pd.DataFrame:
    """Read one source table, failing with the file name and the missing or mistyped columns."""
    if not path.exists():
        raise SourceDataError(f"source table {path} does not exist")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceDataError(f"source table {path} is not a readable parquet file: {exc}") from exc
    missing = [c for c in table.columns if c not in schema.names]
    if missing:
        raise SourceDataError(f"source table {path}: missing required column(s) {', '.join(missing)}")
    wrong = [
        f"{c} must be {kind}, got {schema.field(c).type}"
        for c, kind in table.columns.items()
        if not _KIND[kind](schema.field(c).type)
    ]
    if wrong:
        raise SourceDataError(f"source table {path}: {'; '.join(wrong)}")
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceDataError(f"source table {path} cannot be read: {exc}") from exc


def ingest(
    spec: ProjectSpec,
    source_dir: Path,
    events_out: Path,
    features_out: Path,
    start: str = "",
    end: str = "",
    labels_as_of: str = "",
) -> IngestSummary:
    paths = {name: source_dir / table.file for name, table in spec.tables.items()}
    tables = {name: read_table(paths[name], table) for name, table in spec.tables.items()}
    events = tables[spec.events_table]

    lo, hi = _parse_utc(start, "start"), _parse_utc(end, "end")
    as_of = _parse_utc(labels_as_of, "labels_as_of") or pd.Timestamp(datetime.now(UTC))
    ts = events[spec.timestamp]
    ts = ts.dt.tz_localize(UTC) if ts.dt.tz is None else ts
    keep = pd.Series(True, index=events.index)
    if lo is not None:
        keep &= ts >= lo
    if hi is not None:
        keep &= ts < hi + pd.Timedelta(days=1) if len(end) <= 10 else ts <= hi
    if spec.label_available_at:
        available = events[spec.label_available_at]
        available = available.dt.tz_localize(UTC) if available.dt.tz is None else available
        keep &= available <= as_of
    window = events[keep]
    if window.empty:
        raise SourceDataError(
            f"source table {paths[spec.events_table]}: no event in the window start={start or '-'} "
            f"end={end or '-'} with a label available by {as_of.isoformat()}"
        )

    events_out.parent.mkdir(parents=True, exist_ok=True)
    window.to_parquet(events_out, index=False)
    features_out.mkdir(parents=True, exist_ok=True)
    for name, table in spec.feature_tables.items():
        shutil.copyfile(paths[name], features_out / table.file)

    # The data hash covers what training will see (the selected events, the feature tables), not the
    # window arguments: re-running with "now" as the cut-off on unchanged data hashes the same.
    hashes = {name: file_sha256(path) for name, path in paths.items()}
    seen = {**hashes, spec.events_table: file_sha256(events_out)}
    return IngestSummary(
        rows={name: len(frame) for name, frame in tables.items()},
        file_hashes=hashes,
        data_hash=json_sha256(seen),
        events_in_window=len(window),
    )
