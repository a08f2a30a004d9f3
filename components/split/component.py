from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import COMPONENT_IMAGE

__all__ = ["split"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def split(
    project: str,
    dataset: Input[Dataset],
    train_params: dict,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
) -> None:
    """Stratified, seeded train / validation / test holdout."""
    from shipyard.params import TrainParams, parse
    from shipyard.steps import split_step

    sizes = split_step(
        project,
        dataset.path,
        train.path,
        validation.path,
        test.path,
        parse(TrainParams, train_params, "train_params"),
    )
    train.metadata["rows"] = sizes["train"]
    validation.metadata["rows"] = sizes["val"]
    test.metadata["rows"] = sizes["test"]
