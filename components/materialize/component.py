from kfp import dsl
from kfp.dsl import Dataset, Input

from components.images import COMPONENT_IMAGE

__all__ = ["materialize"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def materialize(
    project: str,
    features: Input[Dataset],
    feature_repo: str,
    feature_store_yaml: str,
) -> str:
    """Load the validated feature snapshots into the environment's online store (SQLite, Redis)."""
    from shipyard.steps import materialize_step

    return materialize_step(project, features.path, feature_repo, feature_store_yaml)
