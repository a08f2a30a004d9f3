from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import COMPONENT_IMAGE

__all__ = ["train"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train(
    project: str,
    train: Input[Dataset],
    validation: Input[Dataset],
    data_hash: str,
    train_params: dict,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Fit the project's scikit-learn pipeline; record params, versions, timing and the loss curve."""
    from shipyard.params import TrainParams, parse
    from shipyard.steps import train_step

    record = train_step(
        project,
        train.path,
        validation.path,
        model.path,
        data_hash,
        parse(TrainParams, train_params, "train_params"),
    )
    model.metadata["framework"] = "scikit-learn"
    model.metadata["git_commit"] = record.git_commit
    metrics.log_metric("training_seconds", record.training_seconds)
    metrics.log_metric("epochs", record.epochs)
    metrics.log_metric("final_train_loss", record.train_loss[-1])
    metrics.log_metric("final_val_loss", record.val_loss[-1])
