from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.images import COMPONENT_IMAGE

__all__ = ["register"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    model_registry: str,
    feature_service: str,
    data_hash: str,
    promote: bool,
    summary: Output[Artifact],
) -> NamedTuple("RegisterOutputs", version=str, status=str):  # type: ignore[valid-type]
    """Write an immutable, content-hashed version with its card; champion only if the gates passed."""
    import json
    from collections import namedtuple

    from shipyard.steps import register_step

    out = register_step(model.path, evaluation.path, model_registry, feature_service, data_hash, promote)
    with open(summary.path, "w") as fh:
        json.dump(out, fh, indent=2)
    summary.metadata.update({"version": out["version"], "status": out["status"]})
    return namedtuple("RegisterOutputs", ["version", "status"])(out["version"], out["status"])  # type: ignore[call-arg]
