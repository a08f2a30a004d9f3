"""The continuous-training pipeline: ingest -> validate -> (materialize | training set -> split ->
train -> evaluate -> register), for any installed project.

`make_pipeline(settings)` builds it for one environment: the environment's settings are the
parameter defaults (`shipyard.settings.pipeline_arguments`, the one mapping, for local and cluster
runs alike) and every task gets the object-storage endpoint and the Secret-backed credentials the
settings name (kfp-kubernetes `use_secret_as_env`), so a package uploaded in the Kubeflow UI runs
with no laptop path and no credential in it. The committed `training.yaml` is the `dev` build;
`shipyard pipelines compile --env E` writes any environment's; `shipyard run` runs the local one
with `kfp.local`.
"""

# No `from __future__ import annotations` here or in components: KFP reads the annotations at runtime.

from collections import defaultdict
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact

from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.materialize.component import materialize
from components.register.component import register
from components.split.component import split
from components.train.component import train
from components.training_set.component import training_set
from components.validate.component import validate
from shipyard.settings import Settings, load_settings, pipeline_arguments

__all__ = [
    "COMPILED",
    "compile_pipeline",
    "environment_settings",
    "make_pipeline",
    "same_pipeline",
    "task_environment",
]

COMPILED = Path(__file__).with_name("training.yaml")
ENVIRONMENTS = Path(__file__).resolve().parents[1] / "environments"


def task_environment(settings: Settings) -> Any:
    """What every task's container needs from the environment: storage endpoint, Secret keys."""
    by_secret: dict[str, dict[str, str]] = defaultdict(dict)
    for env_var, ref in sorted(settings.secrets.items()):
        by_secret[ref.secret][ref.key] = env_var
    storage = settings.storage_env()

    def apply(task: Any) -> Any:
        for name, value in sorted(storage.items()):
            task.set_env_variable(name, value)
        for secret, keys in sorted(by_secret.items()):
            kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=keys)
        return task

    return apply


def make_pipeline(settings: Settings) -> Any:
    """The training pipeline with `settings` as its defaults and environment (see module docstring)."""
    d = pipeline_arguments(settings)
    env = task_environment(settings)

    @dsl.pipeline(
        name="shipyard-training",
        description="Feast point-in-time training set, scikit-learn model, gated registration; any project.",
    )
    def training_pipeline(
        project: str = d["project"],
        source_dir: str = d["source_dir"],
        feature_repo: str = d["feature_repo"],
        feature_store_yaml: str = d["feature_store_yaml"],
        feature_service: str = d["feature_service"],
        model_registry: str = d["model_registry"],
        start: str = "",
        end: str = "",
        labels_as_of: str = "",
        champion_uri: str = "",
        champion_version: str = "",
        train_params: dict = d["train_params"],
        gates: dict = d["gates"],
        promote: bool = d["promote"],
    ) -> Artifact:
        ingested = env(
            ingest(project=project, source_dir=source_dir, start=start, end=end, labels_as_of=labels_as_of)
        )
        # Source tables change under the same parameters: never serve ingest from the cache.
        ingested.set_caching_options(False)
        ingested.set_display_name("ingest")
        checked = env(
            validate(
                project=project,
                events=ingested.outputs["events"],
                features=ingested.outputs["features"],
                gates=gates,
            )
        )
        # Validate first: only the validated, cleaned tables reach the online store and the training set.
        events, features = checked.outputs["clean_events"], checked.outputs["clean_features"]
        loaded = env(
            materialize(
                project=project,
                features=features,
                feature_repo=feature_repo,
                feature_store_yaml=feature_store_yaml,
            )
        )
        # The online store changes under the same inputs (another run, a reset): never cache this.
        loaded.set_caching_options(False)
        joined = env(
            training_set(
                project=project,
                events=events,
                features=features,
                feature_repo=feature_repo,
                feature_store_yaml=feature_store_yaml,
                feature_service=feature_service,
                gates=gates,
            )
        )
        parts = env(split(project=project, dataset=joined.outputs["dataset"], train_params=train_params))
        trained = env(
            train(
                project=project,
                train=parts.outputs["train"],
                validation=parts.outputs["validation"],
                data_hash=ingested.outputs["data_hash"],
                train_params=train_params,
            )
        )
        # The champion is an input (its content-addressed URI), so evaluation is a pure, cacheable
        # function of what it was given.
        evaluated = env(
            evaluate(
                project=project,
                model=trained.outputs["model"],
                test=parts.outputs["test"],
                train=parts.outputs["train"],
                champion_uri=champion_uri,
                champion_version=champion_version,
                gates=gates,
            )
        )
        registered = env(
            register(
                project=project,
                model=trained.outputs["model"],
                evaluation=evaluated.outputs["evaluation"],
                model_registry=model_registry,
                feature_service=feature_service,
                data_hash=ingested.outputs["data_hash"],
                promote=promote,
                champion_version=champion_version,
            )
        )
        registered.set_caching_options(False)
        return registered.outputs["summary"]

    return training_pipeline


def same_pipeline(a: str, b: str) -> bool:
    """Compiled YAML equal as data: KFP emits dict parameters (protobuf Structs) in no fixed order.
    A package is two documents: the pipeline spec, then the Kubernetes platform spec."""
    import yaml

    return bool(list(yaml.safe_load_all(a)) == list(yaml.safe_load_all(b)))


def environment_settings(env: str) -> Settings:
    """An environment's settings from the checkout's environments/ folder (compile time)."""
    return load_settings(path=ENVIRONMENTS / f"{env}.yaml")


def compile_pipeline(path: Path = COMPILED, settings: Settings | None = None) -> Path:
    """Compile the pipeline for `settings` (default: the `dev` environment, the committed YAML) to
    `path`; an existing file that is the same pipeline is left byte for byte as it is, so
    recompiling never produces a diff that changes nothing."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / path.name
        pipeline = make_pipeline(settings or environment_settings("dev"))
        compiler.Compiler().compile(pipeline, str(fresh))
        text = fresh.read_text()
    if not (path.exists() and same_pipeline(path.read_text(), text)):
        path.write_text(text)
    return path
