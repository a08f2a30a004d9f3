"""The pure parts of `shipyard triage`: the run ledger's records, reading an InferenceService, and
comparing it with a release record field by field. The incidents run for real in
tests/integration/test_triage.py and tests/k8s/test_triage.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipyard.deploy import differences, live_model
from shipyard.records import PipelineRun, read_runs, write_run
from shipyard.release import (
    CodeRef,
    ContractRef,
    FeaturesRef,
    ModelRef,
    PipelineRef,
    Promotion,
    Release,
    ReleaseSpec,
)

H1, H2 = "1" * 64, "2" * 64
IMAGE = "ghcr.io/shipyard-mlops/shipyard@sha256:" + "3" * 64


def run(pipeline: str, started: str, status: str = "succeeded") -> PipelineRun:
    return PipelineRun.model_validate(
        {
            "pipeline": pipeline,
            "pipeline_name": f"shipyard-{pipeline}",
            "pipeline_sha256": H1,
            "started_at": started,
            "ended_at": started,
            "status": status,
            "failed_step": "validate" if status == "failed" else None,
            "error": "DataValidationError: bad" if status == "failed" else None,
            "log": "/tmp/last.log",
        }
    )


def test_the_ledger_keeps_every_run_in_start_order_and_reports_foreign_files(tmp_path: Path) -> None:
    ledger = tmp_path / "runs"
    second = write_run(ledger, run("training", "2026-11-24T10:00:00.000002+00:00", "failed"))
    first = write_run(ledger, run("monitoring", "2026-11-24T10:00:00.000001+00:00"))
    again = write_run(ledger, run("monitoring", "2026-11-24T10:00:00.000001+00:00"))  # never overwritten
    assert len({first, second, again}) == 3 and second.name == "20261124T100000.000002Z-training.json"
    (ledger / "notes.json").write_text("{not json")
    runs, problems = read_runs(ledger)
    assert [r.pipeline for _, r in runs] == ["monitoring", "monitoring", "training"]
    assert runs[-1][1].failed_step == "validate"
    assert len(problems) == 1 and "notes.json: not a run record" in problems[0]
    assert read_runs(tmp_path / "absent") == ([], [])


def record() -> Release:
    return Release.of(
        ReleaseSpec(
            environment="staging",
            code=CodeRef(git_sha="a" * 40, image=IMAGE),
            pipeline=PipelineRef(name="shipyard-training", version="0.1.0", sha256=H1),
            model=ModelRef(
                name="router", version="v1", content_hash=H1, storage_uri=f"s3://models/staging/versions/{H1}"
            ),
            features=FeaturesRef(feature_service="svc", definition_sha256=H1),
            contract=ContractRef(sha256=H1),
            promotion=Promotion(by="ci", at=datetime(2026, 11, 24, tzinfo=UTC)),
        )
    )


def isvc(uri: str, content_hash: str, version: str, ready: bool = True) -> dict[str, Any]:
    return {
        "spec": {
            "predictor": {
                "model": {
                    "storageUri": uri,
                    "image": IMAGE,
                    "env": [
                        {"name": "SHIPYARD_CONTENT_HASH", "value": content_hash},
                        {"name": "SHIPYARD_MODEL_VERSION", "value": version},
                    ],
                }
            }
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "Waiting"}]
        },
    }


def test_a_live_model_that_matches_the_record_has_no_differences() -> None:
    live = live_model(isvc(f"s3://models/staging/versions/{H1}/", H1, "v1"))
    assert live is not None and live.ready and live.canary == []
    assert differences(record(), live) == []


def test_every_field_the_cluster_changed_is_named_with_both_values() -> None:
    live = live_model(isvc(f"s3://models/staging/versions/{H2}", H2, "v2", ready=False))
    assert live is not None and not live.ready and "Ready=False" in live.ready_detail
    diffs = {name: (want, have) for name, want, have in differences(record(), live)}
    assert set(diffs) == {"storageUri", "contentHash", "model"}
    assert diffs["contentHash"] == (H1, H2) and diffs["model"] == ("v1", "v2")


def test_nothing_deployed_is_no_live_model() -> None:
    assert live_model(None) is None
    assert live_model({"spec": {"predictor": {}}}) is None
