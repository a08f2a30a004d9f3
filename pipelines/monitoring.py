"""The monitoring pipeline: collect (request-log window + arrived labels) -> monitor (drift, data
quality, fresh-label accuracy, age -> report, metrics, summary and a healthy / warn / retrain decision).

`make_monitoring_pipeline(settings)` builds it for one environment exactly like
`pipelines.training.make_pipeline`: the settings are the parameter defaults (`monitoring_arguments`,
the one mapping) and every task gets the environment's storage endpoint and Secret-backed
credentials. The served version is a parameter (`model_uri`, its content-addressed directory, and
`model_version`, its label): `shipyard monitor run` resolves it locally; left empty (a scheduled
run), collect resolves it on `model_registry` as the version that served the window.

Continuous training on a cluster: a third step, `retrain`, runs only when the `retrain` parameter is
on (its default where the environment has a Kubeflow Pipelines API, `kfp.host`) and the monitor
step decided `retrain`; it submits the committed training pipeline to that API on the newer window
(`shipyard.pipeline_runs.submit_retraining`). It gets the environment's settings as one parameter
(`environment_settings`), the training pipeline's defaults among them. `shipyard monitor run` turns
it off and submits after the decision itself, so a run from a workstation submits exactly once.
"""

# No `from __future__ import annotations` here or in components: KFP reads the annotations at runtime.

from pathlib import Path
from typing import Any

from kfp import compiler, dsl
from kfp.dsl import Artifact

from components.collect.component import collect
from components.monitor.component import monitor
from components.retrain.component import retrain as retrain_task
from pipelines.training import environment_settings as load_environment
from pipelines.training import task_environment
from shipyard.errors import SettingsError
from shipyard.settings import Settings, request_log_location

__all__ = [
    "compile_monitoring_pipeline",
    "make_monitoring_pipeline",
    "monitoring_arguments",
    "request_log_uri",
]


def request_log_uri(settings: Settings) -> str:
    """Where the served model's request log is (`shipyard.settings.request_log_location`)."""
    location = request_log_location(settings)
    if location is None:
        raise SettingsError(
            "no request log to monitor: serving.request_log.directory is null and neither "
            "monitoring.request_log nor serving.request_log.upload is set"
        )
    return location


def monitoring_arguments(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The one mapping from an environment's settings to the monitoring pipeline's parameters."""
    args: dict[str, Any] = {
        "project": settings.project,
        "request_log": request_log_uri(settings),
        "source_dir": str(settings.data_dir),
        "model_registry": settings.model_registry,
        "model_uri": "",
        "model_version": "",
        "window_start": "",
        "window_end": "",
        "labels_as_of": "",
        # KFP parameters cannot hold null: unset options are left out (their default is None).
        "monitoring": settings.monitoring.model_dump(mode="json", exclude_none=True),
        # Continuous training in the pipeline itself: on where the environment has a KFP API.
        "retrain": bool(settings.kfp.host),
        "environment_settings": settings.model_dump(mode="json", exclude_none=True),
    }
    args.update(overrides)
    return args


def make_monitoring_pipeline(settings: Settings) -> Any:
    """The monitoring pipeline with `settings` as its defaults and environment (see module docstring)."""
    d = monitoring_arguments(settings)
    env = task_environment(settings)

    @dsl.pipeline(
        name="shipyard-monitoring",
        description="Request-log window + arrived labels vs the served version: drift, data quality, "
        "fresh-label accuracy and age; an HTML report and a healthy / warn / retrain decision.",
    )
    def monitoring_pipeline(
        model_uri: str = "",
        model_version: str = "",
        project: str = d["project"],
        request_log: str = d["request_log"],
        source_dir: str = d["source_dir"],
        model_registry: str = d["model_registry"],
        window_start: str = "",
        window_end: str = "",
        labels_as_of: str = "",
        monitoring: dict = d["monitoring"],
        retrain: bool = d["retrain"],
        environment_settings: dict = d["environment_settings"],
    ) -> Artifact:
        collected = env(
            collect(
                project=project,
                request_log=request_log,
                source_dir=source_dir,
                model_uri=model_uri,
                model_version=model_version,
                window_start=window_start,
                window_end=window_end,
                labels_as_of=labels_as_of,
                monitoring=monitoring,
                model_registry=model_registry,
            )
        )
        # The log grows under the same parameters (an empty window end means "now"): never cache.
        collected.set_caching_options(False)
        collected.set_display_name("collect")
        assessed = env(
            monitor(
                project=project,
                rows=collected.outputs["rows"],
                window=collected.outputs["window"],
                model_uri=collected.outputs["model_uri"],
                model_version=collected.outputs["model_version"],
                monitoring=monitoring,
            )
        )
        assessed.set_display_name("monitor")
        # Two conditions, nested: a KFP condition compares one value.
        with dsl.If(retrain == True, name="retrain-on"):  # noqa: E712, SIM117 (KFP conditions, not Python's)
            with dsl.If(assessed.outputs["Output"] == "retrain", name="decision-retrain"):
                submitted = env(
                    retrain_task(
                        summary=assessed.outputs["summary"],
                        environment_settings=environment_settings,
                        monitoring=monitoring,
                    )
                )
                # Each submission is a new run: never answered from the cache.
                submitted.set_caching_options(False)
                submitted.set_display_name("retrain")
        return assessed.outputs["summary"]

    return monitoring_pipeline


def compile_monitoring_pipeline(path: Path, settings: Settings | None = None) -> Path:
    """Compile the monitoring pipeline for `settings` (default: the `dev` environment) to `path`."""
    pipeline = make_monitoring_pipeline(settings or load_environment("dev"))
    compiler.Compiler().compile(pipeline, str(path))
    return path
