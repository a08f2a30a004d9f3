from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.images import COMPONENT_IMAGE

__all__ = ["monitor"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def monitor(
    project: str,
    rows: Input[Dataset],
    window: Input[Artifact],
    model_uri: str,
    model_version: str,
    monitoring: dict,
    report: Output[HTML],
    metrics: Output[Metrics],
    summary: Output[Artifact],
) -> str:
    """Drift, data quality, fresh-label accuracy and age against the version's own reference and
    evaluation; an HTML report, headline metrics, and the summary with the decision (returned)."""
    from shipyard.monitor_steps import metrics_of, monitor_step
    from shipyard.params import parse
    from shipyard.settings import MonitoringSettings

    out = monitor_step(
        project,
        rows.path,
        window.path,
        model_uri,
        model_version,
        parse(MonitoringSettings, monitoring, "monitoring"),
        report.path,
        summary.path,
    )
    for name, value in metrics_of(out).items():
        metrics.log_metric(name, value)
    summary.metadata.update({"decision": out.decision, "version": out.model.version})
    return out.decision
