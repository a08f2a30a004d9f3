from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import COMPONENT_IMAGE

__all__ = ["training_set"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def training_set(
    project: str,
    events: Input[Dataset],
    features: Input[Dataset],
    feature_repo: str,
    feature_store_yaml: str,
    feature_service: str,
    gates: dict,
    dataset: Output[Dataset],
) -> int:
    """Feast historical retrieval over the validated tables: point-in-time features for every event."""
    from shipyard.params import Gates, parse
    from shipyard.steps import training_set_step

    rows = training_set_step(
        project,
        events.path,
        features.path,
        feature_repo,
        feature_store_yaml,
        feature_service,
        dataset.path,
        parse(Gates, gates, "gates"),
    )
    dataset.metadata["rows"] = rows
    dataset.metadata["feature_service"] = feature_service
    return rows
