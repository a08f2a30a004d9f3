from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.images import COMPONENT_IMAGE

__all__ = ["evaluate"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    project: str,
    model: Input[Model],
    test: Input[Dataset],
    train: Input[Dataset],
    champion_uri: str,
    champion_version: str,
    gates: dict,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
) -> bool:
    """Score the candidate, the baselines and the given champion on the holdout; apply the gates."""
    from shipyard.params import Gates, parse
    from shipyard.report import evaluation_markdown
    from shipyard.steps import evaluate_step

    ev = evaluate_step(
        project,
        model.path,
        test.path,
        train.path,
        champion_uri,
        champion_version,
        parse(Gates, gates, "gates"),
        evaluation.path,
    )
    cand = ev.candidate
    metrics.log_metric("accuracy", cand["accuracy"])
    metrics.log_metric("macro_f1", cand["macro_f1"])
    for name, base in ev.baselines.items():
        metrics.log_metric(f"baseline_{name}_accuracy", base["accuracy"])
    for label, m in cand["per_label"].items():
        metrics.log_metric(f"f1_{label}", m["f1"])
    confusion.log_confusion_matrix(ev.labels, cand["confusion"])
    with open(report.path, "w") as fh:
        fh.write(evaluation_markdown(ev.model_dump()))
    evaluation.metadata["passed"] = ev.passed
    return ev.passed
