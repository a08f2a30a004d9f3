"""Proof of a platform: a second, different project trains, registers and serves with no platform edit.

The loan-default project (tests/projects/loan_default) has another entity, numeric-only features, two
classes, numeric request fields, its own feature-table timestamp, model factory, rules, Feast repo
and generator. It runs through the same `shipyard run` (kfp.local, the same pipeline function the
committed YAML is compiled from), the same registry (a directory and a real S3 server) and the same
model server as the reference project.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipelines import local_run
from serving.process import ServerProcess
from serving.server import config_from_settings
from shipyard.params import Gates
from shipyard.records import RegisterRecord
from shipyard.registry import ModelRegistry
from shipyard.settings import Settings, load_settings
from tests.s3server import S3Server

PROJECT_DIR = Path(__file__).resolve().parents[1] / "projects" / "loan_default"
NAME = "loan-default"


@dataclass(frozen=True)
class Trained:
    settings: Settings
    run: RegisterRecord


def _settings(root: Path, registry: str) -> Settings:
    shutil.copytree(PROJECT_DIR / "feature_repo", root / "feature_repo")
    return (
        load_settings("local")
        .model_copy(
            update={
                "project": "tests.projects.loan_default",
                "data": {"applicants": 600, "applications": 3000},
                # This project's own gates: a default model beats "always repaid" by less than tickets
                # beat keyword rules, and the gates are configuration, per project and environment.
                "gates": Gates(min_accuracy=0.6, min_macro_f1=0.55, min_baseline_lift=0.01),
                "model_registry": registry,
            }
        )
        .resolve(root)
    )


def _train(root: Path, registry: str) -> Trained:
    settings = _settings(root, registry)
    with open("/dev/null", "w") as sink:
        result = local_run.run(settings, say=sink)
    return Trained(settings, result.summary)


@pytest.fixture(scope="module")
def local_loan(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("loan")
    return _train(root, str(root / "models"))


@pytest.fixture(scope="module")
def s3_loan(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("loan-s3")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3.env().items():
            mp.setenv(key, value)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        yield _train(root, f"s3://{s3.new_bucket()}/models")


def _check_registered(trained: Trained) -> None:
    run = trained.run
    assert run.status == "champion" and run.created, run.reason
    reg = ModelRegistry(trained.settings.model_registry)
    vdir = reg.fetch(run.version)
    meta = json.loads((vdir / "version.json").read_text())
    assert meta["project"] == "tests.projects.loan_default"
    assert meta["labels"] == ["repaid", "defaulted"] and meta["feature_service"] == "loan_default_v1"
    contract = json.loads((vdir / "input_contract.json").read_text())
    assert contract["inputs"]["text"] == [] and contract["inputs"]["categorical"] == []
    # Request numbers the model reads directly, and the bureau features Feast joined.
    assert {"amount", "term_months", "credit_score", "debt_ratio"} <= set(contract["inputs"]["numeric"])
    card = json.loads((vdir / "card.json").read_text())
    assert card["name"] == NAME and set(card["evaluation"]["baselines"]) == {"majority"}


def test_second_project_trains_and_registers_on_a_directory(local_loan: Trained) -> None:
    _check_registered(local_loan)


def test_second_project_trains_and_registers_on_s3(s3_loan: Trained) -> None:
    assert s3_loan.settings.model_registry.startswith("s3://")
    _check_registered(s3_loan)


def test_second_project_is_served_by_the_same_server(local_loan: Trained, tmp_path: Path) -> None:
    config = config_from_settings(local_loan.settings, port=0, request_log_dir=tmp_path / "log")
    with ServerProcess(config, tmp_path / "server.log") as server, httpx.Client(base_url=server.url) as c:
        url = f"/v1/models/{NAME}:predict"
        rows: list[dict[str, object]] = [
            {"applicant_id": 5, "amount": 12_000.0, "term_months": 36},
            {"applicant_id": 999_999, "amount": 5_000, "term_months": 12},
        ]
        r = c.post(url, json={"instances": rows})
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        assert [p["entity_found"] for p in predictions] == [True, False]
        for p in predictions:
            assert p["outcome"] in {"repaid", "defaulted"}
            assert set(p["probabilities"]) == {"repaid", "defaulted"}
            assert abs(sum(p["probabilities"].values()) - 1) < 1e-9
        # The contract is this project's, read from the version: bounds and unknown fields.
        bad = c.post(url, json={"instances": [{**rows[0], "amount": -5}]})
        assert bad.status_code == 400 and bad.json()["field"] == "instances[0].amount"
        other = c.post(url, json={"instances": [{**rows[0], "ticket_text": "hi"}]})
        assert other.status_code == 400 and other.json()["rule"] == "unknown_field"
        v2 = c.post(
            f"/v2/models/{NAME}/infer",
            json={
                "inputs": [
                    {"name": "applicant_id", "shape": [1], "datatype": "INT64", "data": [5]},
                    {"name": "amount", "shape": [1], "datatype": "FP64", "data": [12_000.0]},
                    {"name": "term_months", "shape": [1], "datatype": "INT32", "data": [36]},
                ]
            },
        )
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o for o in v2.json()["outputs"]}
        assert set(outputs) == {"outcome", "probabilities", "entity_found"}
        assert outputs["outcome"]["data"] == [predictions[0]["outcome"]]
        metrics = c.get("/metrics").text
        assert 'shipyard_predictions_total{label="' in metrics and 'model="loan-default"' in metrics


def test_a_champion_of_another_project_is_refused_by_name(local_loan: Trained, tmp_path: Path) -> None:
    from shipyard.errors import SourceDataError
    from shipyard.params import Gates
    from shipyard.steps import evaluate_step

    reg = ModelRegistry(local_loan.settings.model_registry)
    loan_dir = reg.fetch(local_loan.run.version)
    with pytest.raises(SourceDataError, match="belongs to project 'tests.projects.loan_default'"):
        evaluate_step(
            "ticket_routing",
            str(loan_dir),
            str(tmp_path / "test.parquet"),
            str(tmp_path / "train.parquet"),
            reg.uri(local_loan.run.version),
            local_loan.run.version,
            Gates(),
            str(tmp_path / "ev"),
        )
