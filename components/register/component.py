from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.images import COMPONENT_IMAGE

__all__ = ["register"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register(
    project: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    model_registry: str,
    feature_service: str,
    data_hash: str,
    promote: bool,
    champion_version: str,
    summary: Output[Artifact],
) -> NamedTuple("RegisterOutputs", version=str, status=str, uri=str):  # type: ignore[valid-type]
    """Write an immutable, content-hashed version with its card; champion only if the gates passed
    and the champion it was compared with is still the champion."""
    from collections import namedtuple

    from shipyard.records import write_record
    from shipyard.steps import register_step

    out = register_step(
        project,
        model.path,
        evaluation.path,
        model_registry,
        feature_service,
        data_hash,
        promote,
        champion_version,
    )
    write_record(out, summary.path)
    summary.metadata.update({"version": out.version, "status": out.status, "uri": out.uri})
    return namedtuple("RegisterOutputs", ["version", "status", "uri"])(  # type: ignore[call-arg]
        out.version, out.status, out.uri
    )
