"""Thin, typed access to the Feast repo: apply, materialize, point-in-time training sets.

Shipyard never re-implements a Feast join: historical retrieval is Feast's own point-in-time join
over the same feature service the model server reads online.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

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


def _rooted_store(repo: Path, yaml_name: str, spec: ProjectSpec, features_dir: Path, workdir: Path) -> Any:
    """A store whose file sources read the validated snapshot artifacts instead of the live data.

    Feast resolves a relative file-source path against the repo path. Opening the same registry
    with the repo path set to `workdir`, where each source's relative path is a link to the ingested
    and validated copy of its table, makes Feast's own point-in-time join read exactly the bytes that
    were validated and hashed, whatever the live files hold by now.
    """
    _import_feast_for_reading()
    from feast import FeatureStore
    from feast.repo_config import load_repo_config

    _quiet()
    config_path = repo / yaml_name
    if not config_path.exists():
        raise SourceDataError(f"Feast config {config_path} does not exist")
    config = load_repo_config(repo, config_path)
    # Local files stay where they are: only the sources move to `workdir`.
    registry_path, online_path = _local_paths(repo, config)
    if registry_path is not None:
        config.registry.path = str(registry_path)
    if online_path is not None:
        config.online_store.path = str(online_path)
    store = FeatureStore(config=config)
    sources = {s.name: s for s in store.list_data_sources()}
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
        link = workdir / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((features_dir / table.file).resolve())
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
    with tempfile.TemporaryDirectory(prefix="shipyard-feast-") as tmp:
        store = _rooted_store(repo, yaml_name, spec, features_dir, Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):
            store.materialize(start_date=start, end_date=end)
    return start, end


def training_frame(
    events: pd.DataFrame,
    spec: ProjectSpec,
    repo: Path,
    features_dir: Path,
    feature_service: str,
    yaml_name: str = "feature_store.yaml",
) -> pd.DataFrame:
    """Point-in-time join: each event gets the feature values valid at its own timestamp.

    The model's request fields travel as request data so on-demand features are computed by the same
    Feast transformation that runs at serving time.
    """
    import tempfile

    request = [f.name for f in spec.model_request_fields if f.name in events.columns]
    entity_df = events[[spec.event_id, spec.entity_key, spec.timestamp, *request, spec.label]].copy()
    with tempfile.TemporaryDirectory(prefix="shipyard-feast-") as tmp:
        store = _rooted_store(repo, yaml_name, spec, features_dir, Path(tmp))
        with _repo_on_path(repo):
            service = store.get_feature_service(feature_service)
            frame: pd.DataFrame = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    # Feast returns rows in join order; restore event order so downstream steps are reproducible.
    return frame.sort_values([spec.timestamp, spec.event_id], kind="stable").reset_index(drop=True)


def online_features(store: Any, feature_service: str, rows: list[dict[str, object]]) -> dict[str, list[Any]]:
    """Online lookup + on-demand features for request rows (entity key + request fields)."""
    service = store.get_feature_service(feature_service)
    result: dict[str, list[Any]] = store.get_online_features(features=service, entity_rows=rows).to_dict()
    return result
