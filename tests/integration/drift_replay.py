"""A drifted March replayed through the real model server and monitored: shared by the monitoring and
continuous-training tests (one session fixture, `replayed`, in conftest.py).

Ticket routing replays March 2025 of a generated history whose covariate and concept drift start on
the 16th, on a model trained on January and February: the first half of March is one monitoring
window, the second half (drifted) another. The online store is filled day by day while replaying
(`shipyard.cli.demo.replay`, the demo's own), so each request sees the features that were current
when it was sent, as in production (a store loaded with the end of March would serve the future to
early-March tickets).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from pipelines.local_monitor import MonitorRun, run_monitoring
from shipyard import featurestore, steps
from shipyard.cli.demo import replay
from shipyard.params import TrainParams
from shipyard.registry import ModelRegistry
from shipyard.settings import MonitoringSettings, Settings, load_settings
from tests.integration.serving_stack import LENIENT, MODEL, SPEC, Stack, copy_repo, start_server
from ticket_routing import synthetic

TICKETS = "ticket_routing"
DRIFT_FROM = date(2025, 3, 16)
TRAIN_END = "2025-02-28T23:59:59+00:00"


@dataclass(frozen=True)
class Replayed:
    settings: Settings
    stack: Stack
    healthy: MonitorRun
    drifted: MonitorRun


def monitoring_settings(root: Path, project: str, repo: Path, registry: str, log: Path) -> Settings:
    """The local environment's settings (its gates too) pointed at a test's repo, registry and log."""
    return load_settings("local").model_copy(
        update={
            "project": project,
            "feature_repo": repo,
            "data_dir": repo / "data",
            "state_dir": root / "state",
            "model_registry": registry,
            "pipeline_root": str(root / "pipeline_root"),
            "monitoring": MonitoringSettings(request_log=str(log)),
        }
    )


def train_tickets(root: Path) -> Stack:
    """January and February of a history that drifts from March 16th, trained with the pipeline's steps."""
    repo = copy_repo(root / "feature_repo")
    cfg = synthetic.SyntheticConfig(
        customers=300,
        tickets=3000,
        start=date(2025, 1, 1),
        end=date(2025, 3, 31),
        seed=11,
        covariate_drift_from=DRIFT_FROM,
        concept_drift_from=DRIFT_FROM,
    )
    synthetic.write(synthetic.generate(cfg), cfg, repo / "data")
    featurestore.apply(repo)
    work = root / "work"
    work.mkdir()
    p = {
        n: str(work / n)
        for n in ("events", "features", "report", "clean", "clean_features", "set", "model", "eval")
    }
    p |= {n: str(work / f"{n}.parquet") for n in ("train", "val", "test")}
    ingest = steps.ingest_step(TICKETS, str(repo / "data"), p["events"], p["features"], end=TRAIN_END)
    steps.validate_step(
        TICKETS, p["events"], p["features"], p["report"], LENIENT, p["clean"], p["clean_features"]
    )
    steps.training_set_step(
        TICKETS,
        p["clean"],
        p["clean_features"],
        str(repo),
        "feature_store.yaml",
        "ticket_routing_v1",
        p["set"],
        LENIENT,
    )
    steps.split_step(TICKETS, p["set"], p["train"], p["val"], p["test"], TrainParams())
    record = steps.train_step(TICKETS, p["train"], p["val"], p["model"], ingest.data_hash, TrainParams())
    # The event id is passed through and logged, never read by the model.
    assert "ticket_id" not in {c for cols in record.inputs.values() for c in cols}
    assert record.inputs["text"] == ["ticket_text"]
    steps.evaluate_step(TICKETS, p["model"], p["test"], p["train"], "", "", LENIENT, p["eval"])
    registry = root / "models"
    reg = steps.register_step(
        TICKETS, p["model"], p["eval"], str(registry), "ticket_routing_v1", ingest.data_hash, promote=True
    )
    return Stack(
        root=root,
        repo=repo,
        registry=registry,
        version=reg.version,
        content_hash=reg.content_hash,
        model_dir=ModelRegistry(registry).fetch(reg.version),
    )


def replay_drifted_march(root: Path) -> Replayed:
    """Train, serve, replay both halves of March (plus three requests the contract rejects), then
    monitor each half with `shipyard monitor run`'s code; the version is found from the log."""
    stack = train_tickets(root)
    tickets = pd.read_parquet(stack.data / "tickets.parquet")
    march = tickets[tickets["event_timestamp"] >= pd.Timestamp("2025-03-01", tz="UTC")]
    first = march[march["event_timestamp"] < pd.Timestamp(DRIFT_FROM, tz="UTC")]
    second = march[march["event_timestamp"] >= pd.Timestamp(DRIFT_FROM, tz="UTC")]
    loaded = datetime(2024, 10, 1, tzinfo=UTC)
    server = start_server(stack, root / "server")
    try:
        t0 = datetime.now(UTC)
        loaded = replay(server.url, MODEL, SPEC, stack.repo, first, loaded)
        t1 = datetime.now(UTC)
        loaded = replay(server.url, MODEL, SPEC, stack.repo, second, loaded)
        with server.client() as client:  # three requests the contract rejects, with their field and rule
            for bad in ({"customer_id": 0}, {"customer_id": 1, "ticket_text": " "}, {"ticket_text": "x"}):
                answer = client.post(f"/v1/models/{server.model}:predict", json={"instances": [bad]})
                assert answer.status_code == 400, answer.text
        t2 = datetime.now(UTC)
    finally:
        server.stop()  # flushes the request log
    settings = monitoring_settings(root, TICKETS, stack.repo, str(stack.registry), server.request_log)
    with open("/dev/null", "w") as say:  # progress lines are not under test
        # The version is found from the log (the one that served the window), not named.
        healthy = run_monitoring(settings, window_start=t0.isoformat(), window_end=t1.isoformat(), say=say)
        drifted = run_monitoring(settings, window_start=t1.isoformat(), window_end=t2.isoformat(), say=say)
    return Replayed(settings, stack, healthy, drifted)
