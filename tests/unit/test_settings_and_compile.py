from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.training import COMPILED, compile_pipeline
from shipyard.errors import SettingsError
from shipyard.settings import load_settings


def test_every_environment_loads() -> None:
    names = {env: load_settings(env) for env in ("local", "dev", "staging", "prod")}
    assert names["prod"].namespace == "shipyard-prod"
    assert names["staging"].feature_store_yaml == "environments/staging.yaml"
    assert names["local"].namespace is None


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("environment: local\nmodel_regsitry: /tmp/x\n")
    with pytest.raises(SettingsError, match="model_regsitry: Extra inputs are not permitted"):
        load_settings(path=path)


def test_bad_values_and_unknown_env() -> None:
    with pytest.raises(SettingsError, match="unknown environment 'qa'"):
        load_settings("qa")


def test_threshold_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("environment: local\nthresholds:\n  min_accuracy: 1.5\n")
    with pytest.raises(SettingsError, match="thresholds.min_accuracy"):
        load_settings(path=path)


def test_committed_pipeline_yaml_is_fresh(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "training.yaml").read_text()
    assert COMPILED.read_text() == fresh, "pipelines/training.yaml is stale: run `make compile`"
