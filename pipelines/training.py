"""The continuous-training pipeline: ingest -> validate -> training set -> split -> train ->
evaluate -> register.

Compiled to `training.yaml` (upload it in the Kubeflow UI) and run unchanged on one machine with
`kfp.local` by `shipyard run`. Defaults are the paths inside the component image; the local runner
and each environment's settings override them.
"""

# No `from __future__ import annotations` here or in components: KFP reads the annotations at runtime.

from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Artifact

from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.register.component import register
from components.split.component import split
from components.train.component import train
from components.training_set.component import training_set
from components.validate.component import validate
from shipyard.params import TrainParams
from shipyard.thresholds import Thresholds

__all__ = ["COMPILED", "compile_pipeline", "training_pipeline"]

COMPILED = Path(__file__).with_name("training.yaml")
_T = Thresholds()
_P = TrainParams()


@dsl.pipeline(
    name="shipyard-training",
    description="Ticket routing: Feast point-in-time training set, scikit-learn model, gated registration.",
)
def training_pipeline(
    source_dir: str = "/opt/shipyard/feature_repo/data",
    feature_repo: str = "/opt/shipyard/feature_repo",
    feature_store_yaml: str = "feature_store.yaml",
    feature_service: str = "ticket_routing_v1",
    model_registry: str = "/mnt/models",
    start: str = "",
    end: str = "",
    labels_as_of: str = "",
    max_violation_rate: float = 0.001,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = _P.seed,
    alpha: float = _P.alpha,
    max_epochs: int = _P.max_epochs,
    min_accuracy: float = _T.min_accuracy,
    min_macro_f1: float = _T.min_macro_f1,
    min_baseline_lift: float = _T.min_baseline_lift,
    max_champion_regression: float = _T.max_champion_regression,
    max_final_loss_change: float = _T.max_final_loss_change,
    promote: bool = True,
) -> Artifact:
    ingested = ingest(source_dir=source_dir, start=start, end=end, labels_as_of=labels_as_of)
    # Source tables change under the same parameters: never serve ingest from the cache.
    ingested.set_caching_options(False)
    ingested.set_display_name("ingest")
    tables = {
        "tickets": ingested.outputs["tickets"],
        "customer_profile": ingested.outputs["customer_profile"],
        "customer_activity": ingested.outputs["customer_activity"],
    }
    checked = validate(**tables, max_violation_rate=max_violation_rate)
    features = training_set(
        tickets=ingested.outputs["tickets"],
        feature_repo=feature_repo,
        feature_store_yaml=feature_store_yaml,
        feature_service=feature_service,
    ).after(checked)
    parts = split(
        dataset=features.outputs["dataset"], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    trained = train(
        train=parts.outputs["train"],
        validation=parts.outputs["validation"],
        data_hash=ingested.outputs["data_hash"],
        alpha=alpha,
        max_epochs=max_epochs,
        seed=seed,
    )
    evaluated = evaluate(
        model=trained.outputs["model"],
        test=parts.outputs["test"],
        train=parts.outputs["train"],
        model_registry=model_registry,
        min_accuracy=min_accuracy,
        min_macro_f1=min_macro_f1,
        min_baseline_lift=min_baseline_lift,
        max_champion_regression=max_champion_regression,
        max_final_loss_change=max_final_loss_change,
    )
    # Evaluation reads the champion from the registry: its result is only valid for this moment.
    evaluated.set_caching_options(False)
    registered = register(
        model=trained.outputs["model"],
        evaluation=evaluated.outputs["evaluation"],
        model_registry=model_registry,
        feature_service=feature_service,
        data_hash=ingested.outputs["data_hash"],
        promote=promote,
    )
    registered.set_caching_options(False)
    return registered.outputs["summary"]


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(training_pipeline, str(path))
    return path
