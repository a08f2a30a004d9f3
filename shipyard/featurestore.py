"""Thin, typed access to the Feast repo: apply, materialize, point-in-time training sets.

Shipyard never re-implements a Feast join: historical retrieval is Feast's own point-in-time join
over the same feature service the model server reads online.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd

from shipyard.errors import SourceDataError
from shipyard.project import ProjectSpec


@contextlib.contextmanager
def _repo_on_path(repo: Path) -> Iterator[None]:
    """Feast imports the repo's modules by bare name (`from entities import ...`)."""
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(repo))


def _quiet() -> None:
    """Feast warns on every use that on-demand views are experimental; we know, and test them."""
    warnings.filterwarnings(
        "ignore", message="On demand feature view is an experimental", category=RuntimeWarning
    )


def _import_feast_for_reading() -> None:
    """Import Feast with typeguard's `@typechecked` as a no-op, when Feast is not imported yet.

    Feast decorates its core classes with `@typechecked`, which re-parses and recompiles their
    source on every import: 2.3 s of Feast's 3.3 s import here, paid by each pipeline step and
    model server that only *reads* a registry. Those checks guard user-written definitions, which
    are loaded by `apply` (which keeps them); objects deserialized from the registry were checked
    when they were applied. The decorator is restored right after, so nothing else is affected.
    """
    if "feast" in sys.modules:
        return
    import typeguard

    original = typeguard.typechecked

    def passthrough(target: Any = None, **_: Any) -> Any:
        return target if target is not None else (lambda t: t)

    typeguard.typechecked = passthrough
    try:
        import feast  # noqa: F401
    finally:
        typeguard.typechecked = original


def open_store(repo: Path, yaml_name: str = "feature_store.yaml") -> Any:
    """A `feast.FeatureStore` for reading: historical retrieval, materialization, online lookups."""
    _import_feast_for_reading()
    from feast import FeatureStore

    _quiet()
    config = repo / yaml_name
    if not config.exists():
        raise SourceDataError(f"Feast config {config} does not exist")
    return FeatureStore(repo_path=str(repo), fs_yaml_file=config)


def _local_paths(repo: Path, config: Any) -> tuple[Path | None, Path | None]:
    """The file registry and SQLite online store of a config, when they are local files."""
    registry = config.registry
    registry_path = None
    if getattr(registry, "registry_type", "file") == "file" and "://" not in str(registry.path):
        registry_path = Path(registry.path) if Path(registry.path).is_absolute() else repo / registry.path
    online = config.online_store
    online_path = None
    if getattr(online, "type", "") == "sqlite":
        online_path = Path(online.path) if Path(online.path).is_absolute() else repo / online.path
    return registry_path, online_path


def _foreign_registry(repo: Path, config: Any) -> str | None:
    """Why the repo's file registry belongs to another checkout, or None when it is this one's.

    Feast records the absolute path of each SQLite online table in the registry. A registry copied
    along with a checkout still names the original's database, and applying it would tear down the
    original's tables (every request there 503). So a copied registry is never applied.
    """
    registry_path, online_path = _local_paths(repo, config)
    if registry_path is None or online_path is None or not registry_path.exists():
        return None
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    proto = RegistryProto()
    try:
        proto.ParseFromString(registry_path.read_bytes())
    except Exception:  # a torn or foreign file: not ours to apply on top of
        return f"{registry_path} is not a readable Feast registry"
    mine = str(online_path.resolve())
    for infra_object in proto.infra.infra_objects:
        path = infra_object.sqlite_table.path if infra_object.HasField("sqlite_table") else ""
        if path and str(Path(path).resolve()) != mine:
            return f"{registry_path} names the online store {path}, not this checkout's {mine}"
    return None


def apply(repo: Path, yaml_name: str = "feature_store.yaml", quiet: bool = True) -> str | None:
    """`feast apply` for the repo: register definitions and create online tables (idempotent).

    Returns a note when a copied registry (see `_foreign_registry`) was set aside first.
    """
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    _quiet()
    note = None
    config_path = repo / yaml_name
    if not config_path.exists():
        raise SourceDataError(f"Feast config {config_path} does not exist")
    local_config = load_repo_config(repo, config_path)
    foreign = _foreign_registry(repo, local_config)
    if foreign is not None:
        registry_path, _ = _local_paths(repo, local_config)
        assert registry_path is not None
        aside = registry_path.with_name(f"{registry_path.name}.foreign-{int(time.time())}")
        registry_path.rename(aside)
        note = f"{foreign}: set it aside as {aside.name} and applied a fresh registry for this checkout"
    cwd = Path.cwd()  # apply_total chdirs into the repo; give the caller its cwd back
    try:
        with _repo_on_path(repo), contextlib.ExitStack() as stack:
            if quiet:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            config = load_repo_config(repo, repo / yaml_name)
            apply_total(config, repo, skip_source_validation=False)
    finally:
        os.chdir(cwd)
    return note


def reset_local(repo: Path, yaml_name: str = "feature_store.yaml") -> list[Path]:
    """Remove a local file registry and SQLite online store, then apply afresh: the one command that
    recovers a broken local feature store (`shipyard features reset`). Refuses remote stores."""
    from feast.repo_config import load_repo_config

    config_path = repo / yaml_name
    if not config_path.exists():
        raise SourceDataError(f"Feast config {config_path} does not exist")
    registry_path, online_path = _local_paths(repo, load_repo_config(repo, config_path))
    if registry_path is None or online_path is None:
        raise SourceDataError(
            f"{config_path}: only a local file registry with a SQLite online store can be reset here"
        )
    removed = []
    for path in (registry_path, online_path):
        if path.exists():
            path.unlink()
            removed.append(path)
    apply(repo, yaml_name)
    return removed


def materialize(repo: Path, start: datetime, end: datetime, yaml_name: str = "feature_store.yaml") -> None:
    """Load feature values with timestamps in [start, end] into the online store."""
    store = open_store(repo, yaml_name)
    with contextlib.redirect_stdout(io.StringIO()):
        store.materialize(start_date=start, end_date=end)


def _source_paths(store: Any, spec: ProjectSpec, repo: Path) -> dict[str, str]:
    """Each feature table's Feast file-source path, relative to the repo (checked)."""
    sources = {s.name: s for s in store.list_data_sources()}
    paths = {}
    for name, table in spec.feature_tables.items():
        source = sources.get(table.feast_source or "")
        if source is None:
            raise SourceDataError(
                f"table {name}: Feast data source {table.feast_source!r} is not in the registry "
                f"(feast apply {repo}?)"
            )
        path = getattr(source, "path", None)
        if not path or "://" in path or Path(path).is_absolute():
            raise SourceDataError(
                f"Feast data source {source.name}: path {path!r} must be relative to the feature repo "
                "so training can read the validated copy of the table"
            )
        paths[name] = path
    return paths


class _RootedStores:
    """Stores whose file sources read chosen copies of the tables instead of the live data.

    Feast resolves a relative file-source path against the repo path. Opening the same registry
    with the repo path set to a scratch directory, where each source's relative path is a link to
    the ingested and validated copy of its table (or to a pruned copy of it, see `training_frame`),
    makes Feast's own point-in-time join read exactly those bytes, whatever the live files hold by
    now. The repo config is loaded once; each `open` is a fresh store rooted at its own directory.
    """

    def __init__(self, repo: Path, yaml_name: str, spec: ProjectSpec) -> None:
        _import_feast_for_reading()
        from feast import FeatureStore
        from feast.repo_config import load_repo_config

        _quiet()
        config_path = repo / yaml_name
        if not config_path.exists():
            raise SourceDataError(f"Feast config {config_path} does not exist")
        self.config = load_repo_config(repo, config_path)
        # Local files stay where they are: only the sources move to the scratch directory.
        registry_path, online_path = _local_paths(repo, self.config)
        if registry_path is not None:
            self.config.registry.path = str(registry_path)
        if online_path is not None:
            self.config.online_store.path = str(online_path)
        self.store = FeatureStore(config=self.config)
        self.paths = _source_paths(self.store, spec, repo)

    def open(self, workdir: Path, tables: dict[str, Path]) -> Any:
        """A store rooted at `workdir` whose source for each table name reads `tables[name]`."""
        from feast import FeatureStore

        for name, target in tables.items():
            link = workdir / self.paths[name]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.resolve())
        config = self.config.model_copy(deep=True)
        config.repo_path = workdir
        return FeatureStore(config=config)


def materialize_validated(
    spec: ProjectSpec, repo: Path, features_dir: Path, yaml_name: str = "feature_store.yaml"
) -> tuple[datetime, datetime]:
    """Load the validated feature tables' whole span into the online store; return the span.

    Only the validated (and cleaned) copies are read, through the same re-rooted store training
    uses: data that failed validation, or rows it tolerated but excluded, never reach serving.
    """
    import tempfile

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    starts, ends = [], []
    for name, table in spec.feature_tables.items():
        path, column = features_dir / table.file, spec.timestamp_of(name)
        stamps = pq.read_table(path, columns=[column])[column]
        if len(stamps) == stamps.null_count:
            raise SourceDataError(f"table {name} ({path}): no rows with a {column} to materialize")
        starts.append(pc.min(stamps).as_py())
        ends.append(pc.max(stamps).as_py())
    start, end = min(starts), max(ends) + timedelta(seconds=1)
    stores = _RootedStores(repo, yaml_name, spec)
    with tempfile.TemporaryDirectory(prefix="shipyard-feast-") as tmp:
        store = stores.open(Path(tmp), {n: features_dir / t.file for n, t in spec.feature_tables.items()})
        with contextlib.redirect_stdout(io.StringIO()):
            store.materialize(start_date=start, end_date=end)
    return start, end


# Events per Feast call in `training_frame`. Feast's file offline store pairs every event with every
# row of its entity in each feature table before it applies the TTL, so one call over a year of
# weekly snapshots holds ~53 rows per event (16.7 GB at a million events). A chunk of events needs
# only the rows of its own entities within its own time span (plus TTL), a few per event.
CHUNK_ROWS: Final = 25_000


@dataclass(frozen=True)
class _Pruning:
    """How a feature table can be cut down for a chunk of events without changing Feast's answer."""

    key: str  # the one join key column, the same in the events and the table
    timestamp: str  # the source's timestamp field
    lookback_ns: int | None  # the longest TTL of the views reading the table; None: unbounded


def _prunings(
    store: Any, service: Any, spec: ProjectSpec, events: pd.DataFrame
) -> dict[str, _Pruning | None]:
    """Per feature table, how it may be pruned, or None where it is used as it is.

    Only the simple, common shape is pruned: every view of the service that reads the table joins on
    the same single key column, without a join-key map or a field mapping. Anything else is passed
    whole to Feast, which is always correct, just not smaller.
    """
    names = {p.name for p in service.feature_view_projections}
    projections = {p.name: p for p in service.feature_view_projections}
    views = [v for v in store.list_feature_views() if v.name in names]
    by_source: dict[str, list[Any]] = {}
    for view in views:
        by_source.setdefault(view.batch_source.name, []).append(view)
    out: dict[str, _Pruning | None] = {}
    for name, table in spec.feature_tables.items():
        readers = by_source.get(table.feast_source or "", [])
        keys = {tuple(v.join_keys) for v in readers}
        source = readers[0].batch_source if readers else None
        simple = (
            len(keys) == 1
            and len(next(iter(keys))) == 1
            and not any(projections[v.name].join_key_map for v in readers)
            and next(iter(keys))[0] in events.columns
        )
        if source is None or source.field_mapping or not simple:
            out[name] = None
            continue
        ttls = [v.ttl for v in readers]
        unbounded = any(t is None or t.total_seconds() == 0 for t in ttls)
        lookback = None if unbounded else max(pd.Timedelta(t).value for t in ttls)
        out[name] = _Pruning(key=next(iter(keys))[0], timestamp=source.timestamp_field, lookback_ns=lookback)
    return out


def _utc_ns(values: Any) -> Any:
    """Timestamps as int64 nanoseconds since the epoch, naive ones read as UTC (as Feast does)."""
    import numpy as np

    stamps = pd.to_datetime(pd.Series(values), utc=True)
    return stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)


class _PrunableTable:
    """One feature table in memory, with its key and timestamps as arrays for fast chunk filters."""

    def __init__(self, path: Path, pruning: _Pruning) -> None:
        import numpy as np
        import pyarrow.parquet as pq

        self.table = pq.read_table(path)
        self.pruning = pruning
        self.keys = self.table.column(pruning.key).to_numpy()
        stamps = self.table.column(pruning.timestamp)
        self.null = stamps.is_null().to_numpy()
        self.stamps = np.where(self.null, 0, _utc_ns(stamps.to_pandas()).astype(np.int64))

    def pruned(self, keys: Any, first_ns: int, last_ns: int) -> Any:
        """The rows Feast can pair with events of `keys` between `first_ns` and `last_ns`.

        A row is kept when its entity is among `keys` and its timestamp lies in [first - TTL,
        last]: only those can fall within an event's own [event - TTL, event] window. Feast's file
        offline store also tells apart an entity with no rows at all (its events keep missing
        values) from one whose rows are all expired (its events are dropped), so an entity that
        has rows, none of them in the window, keeps one row: it is outside every event's window,
        so it is never chosen, but the entity still has rows. Rows without a timestamp are kept.
        """
        import numpy as np
        import pyarrow as pa

        mine = np.isin(self.keys, keys)
        window = self.stamps <= last_ns
        if self.pruning.lookback_ns is not None:
            window &= self.stamps >= first_ns - self.pruning.lookback_ns
        keep = mine & (window | self.null)
        rows = np.flatnonzero(mine)
        uncovered = np.setdiff1d(self.keys[rows], self.keys[keep])
        if uncovered.size:
            candidates = rows[np.isin(self.keys[rows], uncovered)]
            _, first = np.unique(self.keys[candidates], return_index=True)
            keep[candidates[first]] = True
        return self.table.filter(pa.array(keep))


def _lean_for_dask(frame: pd.DataFrame) -> pd.DataFrame:
    """The same values in the representations Feast's dask store handles cheaply.

    Dask names every intermediate result by hashing its data: a Python-backed string column (the
    free text) is joined into one big string and hashed at each of the ~25 steps of a join, an
    Arrow-backed one is hashed from its buffers. And Feast converts an event timestamp whose zone
    is not `pytz.UTC` row by row. Feast hands the result back through Arrow, which restores both
    to what they were, so only the cost changes (a test holds the frames equal).
    """
    import pytz

    out = frame.copy(deep=False)
    for col in frame.columns:
        dtype = frame[col].dtype
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
            out[col] = frame[col].astype("string[pyarrow]")
        elif isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC":
            out[col] = frame[col].dt.tz_convert(pytz.UTC)
    return out


def _chunks(stamps_ns: Any, size: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of at most ~`size` time-sorted events; equal timestamps stay together.

    Feast's file store keeps one event of a group sharing entity key and timestamp, so such a group
    must be seen by one call, as it is by one call over everything.
    """
    import numpy as np

    n = len(stamps_ns)
    bounds = [0]
    while bounds[-1] < n:
        cut = min(bounds[-1] + size, n)
        if cut < n:
            # Move the cut past every event with the same timestamp as the one before it.
            cut = int(np.searchsorted(stamps_ns, stamps_ns[cut - 1], side="right"))
        bounds.append(cut)
    return list(itertools.pairwise(bounds))


@dataclass(frozen=True)
class _ChunkJob:
    workdir: Path  # holds the chunk's pruned tables; the chunk's store is rooted below it
    files: dict[str, Path]  # table name -> the file its Feast source reads for this chunk
    events: pd.DataFrame


def _join_chunk(stores: _RootedStores, service: Any, job: _ChunkJob) -> pd.DataFrame:
    """Feast's point-in-time join for one prepared chunk.

    One after the other, in this process: the chunks are independent, but forked workers hang
    once dask's thread pool exists in the parent (a forked child inherits the pool object, not its
    threads), and spawned ones import Feast again; running them on both cores is future work.
    """
    store = stores.open(job.workdir / "repo", job.files)
    frame: pd.DataFrame = store.get_historical_features(
        entity_df=_lean_for_dask(job.events), features=service
    ).to_df()
    shutil.rmtree(job.workdir, ignore_errors=True)
    return frame


def training_frame(
    events: pd.DataFrame,
    spec: ProjectSpec,
    repo: Path,
    features_dir: Path,
    feature_service: str,
    yaml_name: str = "feature_store.yaml",
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """Point-in-time join: each event gets the feature values valid at its own timestamp.

    The model's request fields travel as request data so on-demand features are computed by the same
    Feast transformation that runs at serving time.

    The join is Feast's own (its file offline store), called once per chunk of `chunk_rows`
    time-ordered events with each feature table pruned to the rows that chunk can use (see
    `_PrunableTable.pruned`), so memory follows the chunk, not the whole history. An event's
    result depends only on its entity's rows, so the chunks' results are the one big call's (a
    test holds them equal), with one exception that is Feast's own: of events sharing entity and
    timestamp Feast keeps one, picked by an unstable sort, so which one depends on the other events
    of the call. `chunk_rows=0` makes the one big call over the unpruned tables.
    """
    import tempfile

    import pyarrow.parquet as pq

    request = [f.name for f in spec.model_request_fields if f.name in events.columns]
    entity_df = events[[spec.event_id, spec.entity_key, spec.timestamp, *request, spec.label]]
    stores = _RootedStores(repo, yaml_name, spec)
    whole = {n: features_dir / t.file for n, t in spec.feature_tables.items()}
    frames: list[pd.DataFrame] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-feast-") as tmp, _repo_on_path(repo):
        service = stores.store.get_feature_service(feature_service)
        if chunk_rows <= 0:
            store = stores.open(Path(tmp), whole)
            frames.append(store.get_historical_features(entity_df=entity_df.copy(), features=service).to_df())
        else:
            entity_df = entity_df.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)
            stamps = _utc_ns(entity_df[spec.timestamp])
            prunings = _prunings(stores.store, service, spec, entity_df)
            tables = {n: _PrunableTable(whole[n], p) for n, p in prunings.items() if p is not None}
            for i, (start, stop) in enumerate(_chunks(stamps, chunk_rows)):
                chunk = entity_df.iloc[start:stop]
                workdir = Path(tmp) / f"chunk-{i}"
                workdir.mkdir(parents=True)
                files = dict(whole)
                for name, table in tables.items():
                    files[name] = workdir / f"{name}.parquet"
                    keys = chunk[table.pruning.key].unique()
                    pq.write_table(table.pruned(keys, int(stamps[start]), int(stamps[stop - 1])), files[name])
                frames.append(_join_chunk(stores, service, _ChunkJob(workdir, files, chunk)))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    # Feast returns rows in join order; restore event order so downstream steps are reproducible.
    return frame.sort_values([spec.timestamp, spec.event_id], kind="stable").reset_index(drop=True)


def online_features(store: Any, feature_service: str, rows: list[dict[str, object]]) -> dict[str, list[Any]]:
    """Online lookup + on-demand features for request rows (entity key + request fields)."""
    service = store.get_feature_service(feature_service)
    result: dict[str, list[Any]] = store.get_online_features(features=service, entity_rows=rows).to_dict()
    return result
