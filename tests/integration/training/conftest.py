"""Fixtures for the integration tier: a real Feast repo, data and registry in a temp directory."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from shipyard import featurestore
from shipyard.settings import Settings, load_settings
from ticket_routing import PROJECT

ROOT = Path(__file__).resolve().parents[3]
SMALL: dict[str, object] = {
    "customers": 2_000,
    "tickets": 12_000,
    "start": date(2025, 1, 1),
    "end": date(2025, 9, 30),
    "seed": 11,
}


@dataclass(frozen=True)
class Workspace:
    root: Path
    settings: Settings

    @property
    def repo(self) -> Path:
        return self.settings.feature_repo


def make_workspace(root: Path, data_options: dict[str, object] = SMALL) -> Workspace:
    """Copy the feature repo (definitions only) into `root` and point local settings at it."""
    shutil.copytree(
        ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("data", "__pycache__")
    )
    settings = load_settings("local").model_copy(update={"data": data_options}).resolve(root)
    return Workspace(root=root, settings=settings)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """Generated data and `feast apply`, shared read-only by the integration tests."""
    from pipelines.local_run import apply_features, ensure_data

    ws = make_workspace(tmp_path_factory.mktemp("ws"))
    sink = open("/dev/null", "w")  # noqa: SIM115 - progress output is not under test here
    ensure_data(ws.settings, sink)
    apply_features(ws.settings, sink)
    yield ws
    sink.close()


@pytest.fixture(scope="session")
def training_frame(workspace: Workspace) -> pd.DataFrame:
    data = workspace.settings.data_dir
    tickets = pd.read_parquet(data / "tickets.parquet")
    return featurestore.training_frame(tickets, PROJECT, workspace.repo, data, workspace.settings.service)
