from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from components.images import COMPONENT_IMAGE

__all__ = ["collect"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def collect(
    project: str,
    request_log: str,
    source_dir: str,
    model_uri: str,
    model_version: str,
    window_start: str,
    window_end: str,
    labels_as_of: str,
    monitoring: dict,
    rows: Output[Dataset],
    window: Output[Artifact],
) -> NamedTuple("CollectOutputs", rows=int, labelled=int):  # type: ignore[valid-type]
    """Read the request log's window: the version's served rows, joined with the labels that arrived."""
    from collections import namedtuple

    from shipyard.monitor_steps import collect_step
    from shipyard.params import parse
    from shipyard.settings import MonitoringSettings

    out = collect_step(
        project,
        request_log,
        source_dir,
        model_uri,
        model_version,
        window_start,
        window_end,
        labels_as_of,
        parse(MonitoringSettings, monitoring, "monitoring"),
        rows.path,
        window.path,
    )
    rows.metadata.update({"rows": out.rows, "labelled": out.labelled, "start": out.start, "end": out.end})
    window.metadata.update({"requests": out.requests, "rejected": out.rejected_requests})
    return namedtuple("CollectOutputs", ["rows", "labelled"])(out.rows, out.labelled)  # type: ignore[arg-type, call-arg]
