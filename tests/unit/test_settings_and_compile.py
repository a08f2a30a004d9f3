from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipelines.training import COMPILED, compile_pipeline, same_pipeline
from shipyard.errors import SettingsError
from shipyard.params import Gates, TrainParams
from shipyard.settings import load_settings, pipeline_arguments


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


def test_gate_out_of_range_and_unknown_gate(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("environment: local\ngates:\n  min_accuracy: 1.5\n")
    with pytest.raises(SettingsError, match="gates.min_accuracy"):
        load_settings(path=path)
    path.write_text("environment: local\ngates:\n  min_acuracy: 0.5\n")
    with pytest.raises(SettingsError, match="gates.min_acuracy: Extra inputs are not permitted"):
        load_settings(path=path)


def test_pipeline_arguments_are_the_one_mapping_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "environment: staging\nproject: ticket_routing\nmodel_registry: s3://models/x\n"
        "gates:\n  min_accuracy: 0.9\n"
        "train:\n  max_epochs: 5\n  hyperparameters: {alpha: 0.01}\npromote: false\n"
    )
    args = pipeline_arguments(load_settings(path=path))
    assert args["model_registry"] == "s3://models/x"
    assert Gates.model_validate(args["gates"]).min_accuracy == 0.9
    assert TrainParams.model_validate(args["train_params"]).hyperparameters == {"alpha": 0.01}
    assert args["promote"] is False
    assert args["feature_service"] == "ticket_routing_v1"  # the project's, unless settings override it


def test_compiled_defaults_are_cluster_sane_never_laptop_paths() -> None:
    compiled, _platform = yaml.safe_load_all(COMPILED.read_text())
    defaults = {
        name: spec.get("defaultValue")
        for name, spec in compiled["root"]["inputDefinitions"]["parameters"].items()
    }
    dev = pipeline_arguments(load_settings("dev"))
    assert defaults["model_registry"] == dev["model_registry"] == "s3://shipyard-models/dev"
    assert defaults["gates"] == dev["gates"] and defaults["train_params"] == dev["train_params"]
    text = COMPILED.read_text()
    for laptop in ("/mnt/models", "/home/", "/work/", "/tmp/", "/root/"):
        assert laptop not in text, f"compiled pipeline names a local path: {laptop}"
    assert not re.search(r"(^|[\s'\"/])\.shipyard/", text), "compiled pipeline names local state"


def test_settings_schema_is_strict() -> None:
    from shipyard.settings import settings_schema

    schema = settings_schema()
    assert schema["additionalProperties"] is False
    assert {"model_registry", "gates", "train", "serving", "secrets"} <= set(schema["properties"])


def test_committed_pipeline_yaml_is_fresh(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "training.yaml").read_text()
    assert same_pipeline(COMPILED.read_text(), fresh), "pipelines/training.yaml is stale: run `make compile`"


def test_shipped_json_schema_is_fresh() -> None:
    import json

    from shipyard.settings import settings_schema

    shipped = Path(__file__).resolve().parents[2] / "shipyard" / "settings.schema.json"
    assert json.loads(shipped.read_text()) == settings_schema(), (
        "shipyard/settings.schema.json is stale: run `make schema`"
    )


def test_every_environment_file_validates_against_the_project() -> None:
    for env in ("local", "dev", "staging", "prod"):
        settings = load_settings(env)
        assert settings.spec.name == "ticket-router" and settings.service == "ticket_routing_v1"


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_each_environment_package_injects_its_secrets_and_endpoint(env: str, tmp_path: Path) -> None:
    from pipelines.training import environment_settings

    settings = environment_settings(env)
    spec, platform = yaml.safe_load_all(compile_pipeline(tmp_path / f"{env}.yaml", settings).read_text())
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults["model_registry"] == f"s3://shipyard-models/{env}"
    assert defaults["promote"] is settings.promote
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    containers = spec["deploymentSpec"]["executors"]
    assert set(executors) == set(containers)  # every task, none forgotten
    want = {(ref.secret, ref.key, var) for var, ref in settings.secrets.items()}
    for name, executor in executors.items():
        got = {
            (s["secretName"], k["secretKey"], k["envVar"])
            for s in executor["secretAsEnv"]
            for k in s["keyToEnv"]
        }
        assert got == want, name
        env_vars = {e["name"]: e["value"] for e in containers[name]["container"].get("env", [])}
        assert env_vars["AWS_ENDPOINT_URL_S3"] == settings.s3.endpoint_url
    text = (tmp_path / f"{env}.yaml").read_text()
    assert "/work/" not in text and not re.search(r"(^|[\s'\"/])\.shipyard/", text)
