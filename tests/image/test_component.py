"""One component exactly as a cluster runs it: the command and arguments of the committed pipeline
YAML, an executor input built by KFP's own code, in the image with no network, as uid 10001."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import yaml
from google.protobuf import json_format  # type: ignore[import-untyped]
from kfp.local import executor_input_utils
from kfp.pipeline_spec import pipeline_spec_pb2

from components.images import COMPONENT_IMAGE
from pipelines.training import COMPILED
from shipyard.steps import ingest_step
from tests.image.engine import UID, Engine, open_to_container_user
from ticket_routing import synthetic

SMALL = synthetic.SyntheticConfig(
    customers=300, tickets=2_000, start=date(2025, 1, 1), end=date(2025, 3, 31), seed=5
)


def component(name: str) -> tuple[pipeline_spec_pb2.ComponentSpec, list[str], list[str], str]:
    """(component spec, command, args, image) of one task of the committed pipeline YAML."""
    # The package's first document is the pipeline spec (a second one holds the Kubernetes platform spec).
    document = next(yaml.safe_load_all(COMPILED.read_text()))
    spec = json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
    comp = spec.components[f"comp-{name}"]
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    container = executors[comp.executor_label]["container"]
    return comp, list(container["command"]), list(container["args"]), container["image"]


def test_ingest_from_the_compiled_yaml_runs_in_the_image_without_network(
    engine: Engine, tmp_path: Path
) -> None:
    comp, command, args, image = component("ingest")
    assert image == COMPONENT_IMAGE == engine.image
    source, out = tmp_path / "source", tmp_path / "out"
    synthetic.write(synthetic.generate(SMALL), SMALL, source)
    out.mkdir()
    open_to_container_user(out)

    # Container paths differ from the host's on purpose: nothing may depend on the checkout.
    task_root = "/work/out/ingest"
    parameters = {
        "project": "ticket_routing",
        "source_dir": "/work/source",
        "start": "",
        "end": "",
        "labels_as_of": "",
    }
    executor_input = executor_input_utils.construct_executor_input(
        comp, parameters, task_root, block_input_artifact=False
    )
    argv = [a.replace("{{$}}", json_format.MessageToJson(executor_input)) for a in args]
    proc = engine.run(
        [*command, *argv],
        volumes={source: "/work/source:ro", out: "/work/out"},
        network="none",
        timeout=600,
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    task = out / "ingest"
    result = json.loads((task / "executor_output.json").read_text())
    params = result["parameterValues"]
    # The same step on the host, over the same files: the container computed the same thing.
    host = ingest_step(
        "ticket_routing", str(source), str(tmp_path / "h-events"), str(tmp_path / "h-features")
    )
    assert params["data_hash"] == host.data_hash
    assert int(params["events_in_window"]) == host.events_in_window > 0
    pd.testing.assert_frame_equal(pd.read_parquet(task / "events"), pd.read_parquet(tmp_path / "h-events"))
    assert sorted(p.name for p in (task / "features").iterdir()) == sorted(
        p.name for p in (tmp_path / "h-features").iterdir()
    )
    summary = json.loads((task / "summary").read_text())
    assert summary["data_hash"] == host.data_hash
    events_meta = result["artifacts"]["events"]["artifacts"][0]["metadata"]
    assert events_meta["data_hash"] == host.data_hash
    # Written by the image's user, not by the host.
    assert (task / "events").stat().st_uid == UID
