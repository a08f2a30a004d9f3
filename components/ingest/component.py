from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import COMPONENT_IMAGE

__all__ = ["ingest"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    source_dir: str,
    start: str,
    end: str,
    labels_as_of: str,
    tickets: Output[Dataset],
    customer_profile: Output[Dataset],
    customer_activity: Output[Dataset],
) -> NamedTuple("IngestOutputs", data_hash=str, tickets_in_window=int):  # type: ignore[valid-type]
    """Read the source tables, keep tickets in the window whose labels had arrived, hash the data."""
    from collections import namedtuple

    from shipyard.steps import ingest_step

    out = ingest_step(
        source_dir, tickets.path, customer_profile.path, customer_activity.path, start, end, labels_as_of
    )
    for artifact, name in (
        (tickets, "tickets"),
        (customer_profile, "customer_profile"),
        (customer_activity, "customer_activity"),
    ):
        artifact.metadata["rows"] = (
            out["tickets_in_window"] if name == "tickets" else out["rows"][f"{name}.parquet"]
        )
    tickets.metadata["data_hash"] = out["data_hash"]
    return namedtuple("IngestOutputs", ["data_hash", "tickets_in_window"])(  # type: ignore[call-arg]
        out["data_hash"], out["tickets_in_window"]
    )
