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
    model_registry: str,
    rows: Output[Dataset],
    window: Output[Artifact],
) -> NamedTuple("CollectOutputs", rows=int, labelled=int, model_uri=str, model_version=str):  # type: ignore[valid-type]
    """Read the request log's window: the version's served rows, joined with the labels that arrived.
    An empty `model_uri` (a scheduled run) monitors the version that served the window."""
    from collections import namedtuple

    from shipyard.monitor_steps import collect_step
    from shipyard.params import parse
    from shipyard.settings import MonitoringSettings

    out, model_uri, model_version = collect_step(
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
        model_registry,
    )
    rows.metadata.update({"rows": out.rows, "labelled": out.labelled, "start": out.start, "end": out.end})
    window.metadata.update({"requests": out.requests, "rejected": out.rejected_requests})
    CollectOutputs = namedtuple("CollectOutputs", ["rows", "labelled", "model_uri", "model_version"])
    return CollectOutputs(out.rows, out.labelled, model_uri, model_version)
