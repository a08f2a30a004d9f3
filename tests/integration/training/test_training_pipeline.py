"""The real training pipeline under kfp.local: artifacts, gates, idempotency and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines import local_run
from shipyard.cli import main
from shipyard.errors import ShipyardError
from shipyard.records import RegisterRecord
from shipyard.registry import ModelRegistry
from tests.integration.training.conftest import Workspace
from tests.s3server import S3Server
from ticket_routing.schema import LABEL, TICKETS_FILE


def _run_dir(ws: Workspace) -> Path:
    runs = sorted(p for p in Path(ws.settings.pipeline_root).iterdir() if p.is_dir())
    return runs[-1]


@pytest.fixture(scope="module")
def first_run(workspace: Workspace) -> RegisterRecord:
    return local_run.run_pipeline(workspace.settings)


def test_pipeline_registers_a_champion_that_beats_the_baselines(
    workspace: Workspace, first_run: RegisterRecord
) -> None:
    assert first_run.status == "champion" and first_run.created is True
    reg = ModelRegistry(workspace.settings.model_registry)
    champion = reg.champion()
    assert champion is not None and champion.version == first_run.version
    vdir = reg.fetch(champion.version)
    assert vdir.name == champion.content_hash == first_run.content_hash
    card = json.loads((vdir / "card.json").read_text())
    ev = card["evaluation"]
    assert ev["passed"] is True
    best_baseline = max(b["accuracy"] for b in ev["baselines"].values())
    assert ev["candidate"]["accuracy"] >= best_baseline + 0.08
    assert set(ev["candidate"]["per_label"]) == {"accounting", "inventory", "hr", "it"}
    assert card["code"]["libraries"]["scikit-learn"] and card["data"]["hash"]
    assert "# Model card: ticket-router" in (vdir / "MODEL_CARD.md").read_text()
    contract = json.loads((vdir / "input_contract.json").read_text())
    request = {f["name"]: f for f in contract["request"]}
    assert request["customer_id"]["required"] is True and request["customer_id"]["type"] == "integer"
    assert set(contract["features"]["region"]["categories"]) <= {"north", "south", "east", "west", "central"}
    # Self-describing: the directory alone says what it is, so it can be served without the index.
    meta = json.loads((vdir / "version.json").read_text())
    assert meta["content_hash"] == champion.content_hash
    assert meta["project"] == "ticket_routing" and meta["feature_service"] == "ticket_routing_v1"
    assert meta["labels"] == ["accounting", "inventory", "hr", "it"]


def test_each_component_writes_well_formed_artifacts(workspace: Workspace, first_run: RegisterRecord) -> None:
    run = _run_dir(workspace)
    tickets = pd.read_parquet(run / "ingest" / "events")
    assert len(tickets) > 0 and set(tickets[LABEL]) <= {"accounting", "inventory", "hr", "it"}
    assert {p.name for p in (run / "ingest" / "features").iterdir()} == {
        "customer_profile.parquet",
        "customer_activity.parquet",
    }
    assert json.loads((run / "ingest" / "summary").read_text())["events_in_window"] == len(tickets)
    assert "# Data validation" in (run / "validate" / "report").read_text()
    features = pd.read_parquet(run / "training-set" / "dataset")
    assert {"open_invoices", "region", "kw_it"} <= set(features.columns)
    sizes = [len(pd.read_parquet(run / "split" / name)) for name in ("train", "validation", "test")]
    assert sum(sizes) == len(features) and min(sizes) > 0
    model_dir = run / "train" / "model"
    assert {"model.joblib", "training.json", "input_contract.json", "reference_stats.json"} <= {
        p.name for p in model_dir.iterdir()
    }
    executor = json.loads((run / "evaluate" / "executor_output.json").read_text())
    confusion = executor["artifacts"]["confusion"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert [c["displayName"] for c in confusion["annotationSpecs"]] == ["accounting", "inventory", "hr", "it"]
    assert sum(map(sum, (r["row"] for r in confusion["rows"]))) == sizes[2]
    assert "| gate |" in (run / "evaluate" / "report").read_text()


def test_second_run_is_idempotent(workspace: Workspace, first_run: RegisterRecord) -> None:
    again = local_run.run_pipeline(workspace.settings)
    assert again.created is False and again.version == first_run.version
    assert len(ModelRegistry(workspace.settings.model_registry).versions()) == 1


def test_models_list_json(workspace: Workspace, first_run: RegisterRecord) -> None:
    settings_file = workspace.root / "settings.yaml"
    settings_file.write_text(
        f"environment: local\nproject: ticket_routing\nmodel_registry: {workspace.settings.model_registry}\n"
    )
    result = CliRunner().invoke(main, ["--settings", str(settings_file), "models", "list", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["champion"] == first_run.version
    assert payload["versions"][0]["status"] == "champion" and payload["versions"][0]["accuracy"] > 0.7


def _broken_copy(workspace: Workspace, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(workspace.settings.data_dir, target, ignore=shutil.ignore_patterns("*.db"))
    return target


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing_file", r"tickets\.parquet does not exist"),
        ("wrong_type", r"ingest: SourceDataError: .*tickets\.parquet: customer_id must be int64, got double"),
        ("unknown_label", r"validate: DataValidationError: .*tickets column 'department' breaks rule \"isin"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_registry_unchanged(
    workspace: Workspace, first_run: RegisterRecord, tmp_path: Path, breakage: str, message: str
) -> None:
    data = _broken_copy(workspace, tmp_path)
    tickets = pd.read_parquet(data / TICKETS_FILE)
    if breakage == "missing_file":
        (data / TICKETS_FILE).unlink()
    elif breakage == "wrong_type":
        tickets["customer_id"] = tickets["customer_id"].astype("float64")
        tickets.to_parquet(data / TICKETS_FILE)
    else:
        tickets.loc[tickets.index[:3], LABEL] = "legal"
        tickets.to_parquet(data / TICKETS_FILE)
    index = Path(workspace.settings.model_registry) / "index"
    before = sorted(p.name for p in index.iterdir())
    with pytest.raises(ShipyardError, match=message):
        local_run.run_pipeline(workspace.settings, source_dir=str(data))
    assert sorted(p.name for p in index.iterdir()) == before


def test_pipeline_registers_on_an_s3_registry(workspace: Workspace, s3: S3Server, tmp_path: Path) -> None:
    """The same pipeline against a real S3 server: the version lands as a self-describing directory
    at an s3:// URI (what a KServe storageUri names), and the CLI reads the registry through S3."""
    registry = f"s3://{s3.new_bucket()}/staging/models"
    settings = workspace.settings.model_copy(update={"model_registry": registry})
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3.env().items():
            mp.setenv(key, value)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        record = local_run.run_pipeline(settings)
        assert record.status == "champion" and record.created
        assert record.uri == f"{registry}/versions/{record.content_hash}"
        reg = ModelRegistry(registry)
        vdir = reg.fetch(record.version, tmp_path / "fetched")
        meta = json.loads((vdir / "version.json").read_text())
        assert meta["content_hash"] == record.content_hash and meta["project"] == "ticket_routing"
        settings_file = tmp_path / "settings.yaml"
        settings_file.write_text(
            f"environment: staging\nproject: ticket_routing\nmodel_registry: {registry}\n"
        )
        result = CliRunner().invoke(main, ["--settings", str(settings_file), "models", "list", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["champion"] == record.version
