from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import COMPONENT_IMAGE

__all__ = ["split"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def split(
    dataset: Input[Dataset],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    train: Output[Dataset],
    validation: Output[Dataset],
    test: Output[Dataset],
) -> None:
    """Stratified, seeded train / validation / test holdout."""
    from shipyard.steps import split_step

    sizes = split_step(
        dataset.path, train.path, validation.path, test.path, val_fraction, test_fraction, seed
    )
    train.metadata["rows"] = sizes["train"]
    validation.metadata["rows"] = sizes["val"]
    test.metadata["rows"] = sizes["test"]
