from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.images import COMPONENT_IMAGE

__all__ = ["retrain"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def retrain(
    summary: Input[Artifact],
    environment_settings: dict,
    monitoring: dict,
    retraining: Output[Artifact],
) -> str:
    """Continuous training on a cluster: the monitoring pipeline runs this step only on a `retrain`
    decision; it submits the committed training pipeline to the environment's Kubeflow Pipelines on
    the newer window (registered as a candidate, never promoted) and returns the run's id. The
    run's own `monitoring` parameter wins over the copy in `environment_settings` (its retraining
    window among them), as it did for the decision."""
    from shipyard.monitor_steps import retrain_step
    from shipyard.params import parse
    from shipyard.settings import Settings

    out = retrain_step(
        summary.path,
        parse(Settings, {**environment_settings, "monitoring": monitoring}, "environment_settings"),
        retraining.path,
    )
    retraining.metadata.update({"run_id": out.run_id or "", "run_url": out.run_url or ""})
    return out.run_id or ""
