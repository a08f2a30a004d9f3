from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from components.images import COMPONENT_IMAGE

__all__ = ["ingest"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    project: str,
    source_dir: str,
    start: str,
    end: str,
    labels_as_of: str,
    events: Output[Dataset],
    features: Output[Dataset],
    summary: Output[Artifact],
) -> NamedTuple("IngestOutputs", data_hash=str, events_in_window=int):  # type: ignore[valid-type]
    """Read the project's tables, keep labelled events in the window, hash what training will see."""
    from collections import namedtuple

    from shipyard.records import write_record
    from shipyard.steps import ingest_step

    out = ingest_step(project, source_dir, events.path, features.path, start, end, labels_as_of)
    write_record(out, summary.path)
    events.metadata.update({"rows": out.events_in_window, "data_hash": out.data_hash})
    features.metadata["tables"] = {k: v for k, v in out.rows.items()}
    return namedtuple("IngestOutputs", ["data_hash", "events_in_window"])(  # type: ignore[call-arg]
        out.data_hash, out.events_in_window
    )
