from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.images import COMPONENT_IMAGE

__all__ = ["evaluate"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    test: Input[Dataset],
    train: Input[Dataset],
    model_registry: str,
    min_accuracy: float,
    min_macro_f1: float,
    min_baseline_lift: float,
    max_champion_regression: float,
    max_final_loss_change: float,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
) -> bool:
    """Score the candidate, the baselines and the champion on the holdout; apply the gates."""
    from shipyard.report import evaluation_markdown as to_markdown
    from shipyard.steps import evaluate_step
    from shipyard.thresholds import Thresholds

    thresholds = Thresholds(
        min_accuracy=min_accuracy,
        min_macro_f1=min_macro_f1,
        min_baseline_lift=min_baseline_lift,
        max_champion_regression=max_champion_regression,
        max_final_loss_change=max_final_loss_change,
    )
    ev = evaluate_step(model.path, test.path, train.path, model_registry, thresholds, evaluation.path)
    cand = ev["candidate"]
    metrics.log_metric("accuracy", cand["accuracy"])
    metrics.log_metric("macro_f1", cand["macro_f1"])
    for name, base in ev["baselines"].items():
        metrics.log_metric(f"baseline_{name}_accuracy", base["accuracy"])
    for label, m in cand["per_label"].items():
        metrics.log_metric(f"f1_{label}", m["f1"])
    confusion.log_confusion_matrix(ev["labels"], cand["confusion"])
    with open(report.path, "w") as fh:
        fh.write(to_markdown(ev))
    evaluation.metadata["passed"] = ev["passed"]
    return bool(ev["passed"])
