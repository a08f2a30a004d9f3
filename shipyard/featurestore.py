"""Thin, typed access to the Feast repo: apply, materialize, point-in-time training sets.

Shipyard never re-implements a Feast join: historical retrieval is Feast's own point-in-time join
over the same feature service the model server reads online.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime
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


def apply(repo: Path, yaml_name: str = "feature_store.yaml", quiet: bool = True) -> None:
    """`feast apply` for the repo: register definitions and create online tables (idempotent)."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    _quiet()
    cwd = Path.cwd()  # apply_total chdirs into the repo; give the caller its cwd back
    try:
        with _repo_on_path(repo), contextlib.ExitStack() as stack:
            if quiet:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            config = load_repo_config(repo, repo / yaml_name)
            apply_total(config, repo, skip_source_validation=False)
    finally:
        os.chdir(cwd)


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
    registry = config.registry
    file_registry = getattr(registry, "registry_type", "file") == "file" and "://" not in str(registry.path)
    if file_registry and not Path(registry.path).is_absolute():
        registry.path = str(repo / registry.path)
    online = config.online_store
    if getattr(online, "type", "") == "sqlite" and not Path(online.path).is_absolute():
        online.path = str(repo / online.path)
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
