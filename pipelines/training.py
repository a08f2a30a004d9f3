"""The continuous-training pipeline: ingest -> validate -> (materialize | training set -> split ->
train -> evaluate -> register), for any installed project.

Compiled to `training.yaml` (upload it in the Kubeflow UI) and run unchanged on one machine with
`kfp.local` by `shipyard run`. The compiled defaults are the `dev` environment's settings (object
storage, the image's paths), never a laptop's; `shipyard.settings.pipeline_arguments` is the one
mapping from an environment's settings to these parameters, for local and cluster runs alike.
"""

# No `from __future__ import annotations` here or in components: KFP reads the annotations at runtime.

from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Artifact

from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.materialize.component import materialize
from components.register.component import register
from components.split.component import split
from components.train.component import train
from components.training_set.component import training_set
from components.validate.component import validate
from shipyard.settings import load_settings, pipeline_arguments

__all__ = ["COMPILED", "compile_pipeline", "same_pipeline", "training_pipeline"]

COMPILED = Path(__file__).with_name("training.yaml")
_D = pipeline_arguments(load_settings(path=Path(__file__).resolve().parents[1] / "environments" / "dev.yaml"))


@dsl.pipeline(
    name="shipyard-training",
    description="Feast point-in-time training set, scikit-learn model, gated registration; any project.",
)
def training_pipeline(
    project: str = _D["project"],
    source_dir: str = _D["source_dir"],
    feature_repo: str = _D["feature_repo"],
    feature_store_yaml: str = _D["feature_store_yaml"],
    feature_service: str = _D["feature_service"],
    model_registry: str = _D["model_registry"],
    start: str = "",
    end: str = "",
    labels_as_of: str = "",
    champion_uri: str = "",
    champion_version: str = "",
    train_params: dict = _D["train_params"],
    gates: dict = _D["gates"],
    promote: bool = _D["promote"],
) -> Artifact:
    ingested = ingest(project=project, source_dir=source_dir, start=start, end=end, labels_as_of=labels_as_of)
    # Source tables change under the same parameters: never serve ingest from the cache.
    ingested.set_caching_options(False)
    ingested.set_display_name("ingest")
    checked = validate(
        project=project, events=ingested.outputs["events"], features=ingested.outputs["features"], gates=gates
    )
    # Validate first: only the validated, cleaned tables reach the online store and the training set.
    events, features = checked.outputs["clean_events"], checked.outputs["clean_features"]
    loaded = materialize(
        project=project, features=features, feature_repo=feature_repo, feature_store_yaml=feature_store_yaml
    )
    # The online store changes under the same inputs (another run, a reset): never cache this.
    loaded.set_caching_options(False)
    joined = training_set(
        project=project,
        events=events,
        features=features,
        feature_repo=feature_repo,
        feature_store_yaml=feature_store_yaml,
        feature_service=feature_service,
        gates=gates,
    )
    parts = split(project=project, dataset=joined.outputs["dataset"], train_params=train_params)
    trained = train(
        project=project,
        train=parts.outputs["train"],
        validation=parts.outputs["validation"],
        data_hash=ingested.outputs["data_hash"],
        train_params=train_params,
    )
    # The champion is an input (its content-addressed URI), so evaluation is a pure, cacheable
    # function of what it was given.
    evaluated = evaluate(
        project=project,
        model=trained.outputs["model"],
        test=parts.outputs["test"],
        train=parts.outputs["train"],
        champion_uri=champion_uri,
        champion_version=champion_version,
        gates=gates,
    )
    registered = register(
        project=project,
        model=trained.outputs["model"],
        evaluation=evaluated.outputs["evaluation"],
        model_registry=model_registry,
        feature_service=feature_service,
        data_hash=ingested.outputs["data_hash"],
        promote=promote,
        champion_version=champion_version,
    )
    registered.set_caching_options(False)
    return registered.outputs["summary"]


def same_pipeline(a: str, b: str) -> bool:
    """Compiled YAML equal as data: KFP emits dict parameters (protobuf Structs) in no fixed order."""
    import yaml

    return bool(yaml.safe_load(a) == yaml.safe_load(b))


def compile_pipeline(path: Path = COMPILED) -> Path:
    """Compile to `path`; an existing file that is the same pipeline is left byte for byte as it is,
    so recompiling never produces a diff that changes nothing."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / path.name
        compiler.Compiler().compile(training_pipeline, str(fresh))
        text = fresh.read_text()
    if not (path.exists() and same_pipeline(path.read_text(), text)):
        path.write_text(text)
    return path
