"""Pipeline runs on a cluster: the environment's Kubeflow Pipelines API, through kfp's own client.

Locally pipelines run with kfp.local; an environment with `kfp.host` runs them in its Kubeflow
Pipelines instead. Two things need that API: continuous training submits the training pipeline when
monitoring decides `retrain` (`submit_training`), and `shipyard triage` reads the last runs to answer
"pipeline bug?" (`recent_runs`). A thin layer over `kfp.Client`, so the requests are the ones the
Kubeflow UI and SDK make, and every failure is one `PipelineRunError` line naming the host.

The run carries the compiled package itself (`settings.kfp.training_package`, by default the
committed `pipelines/training.yaml`: the file a release record hashes), not a pipeline uploaded to
KFP beforehand, so what runs is exactly what the checkout or image holds; the window and the
environment arrive as the pipeline's own parameters (`shipyard.settings.pipeline_arguments`), with
`promote` off: the candidate goes on only through the release flow.

What kfp.Client (2.17) does that matters here:

* Constructing it reads ~/.config/kfp/context.json and, unless a namespace is set, asks the API's
  healthz whether it is multi-user (in a pod of a multi-user install it then writes the pod's
  namespace into that file). It has no request timeout, and it retries a healthz HTTP error five
  times five seconds apart; a refused connection surfaces as a raw urllib3 error. So `client` first
  probes healthz once, with a timeout, and says in one line that the host is unreachable.
* `create_run_from_pipeline_package` looks the experiment up by name and creates it when missing,
  and prints links to stdout; the links are swallowed here (`shipyard monitor run --json` prints
  JSON only), the run's URL is in the result.
* Every construction warns (FutureWarning) that it needs KFP >= 2.0.0-beta.2; silenced.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from shipyard.errors import PipelineRunError
from shipyard.settings import Settings

if TYPE_CHECKING:
    from typing import TextIO

    from shipyard.monitoring import MonitoringSummary
    from shipyard.retraining import Retraining, TrainingWindow

__all__ = [
    "MONITORING_PIPELINE",
    "TRAINING_PIPELINE",
    "FailedTask",
    "RunSummary",
    "ScheduledRun",
    "SubmittedRun",
    "client",
    "experiment_name",
    "recent_runs",
    "run_url",
    "schedule_monitoring",
    "schedule_name",
    "submit_retraining",
    "submit_training",
]

# pipelineInfo.name of the compiled pipelines (pipelines/training.py, pipelines/monitoring.py); CI uploads
# the training pipeline as `shipyard-training-<env>` (hack/ci/kfp_train.py), which counts as training.
TRAINING_PIPELINE = "shipyard-training"
MONITORING_PIPELINE = "shipyard-monitoring"
PROBE_TIMEOUT_S = 10.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the API's finished_at of a run that has not finished


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubmittedRun(_Model):
    """A training run the API accepted: where to follow it and what it was given."""

    run_id: str
    name: str
    experiment: str
    url: str
    package: str  # the compiled pipeline it carries
    parameters: dict[str, Any]


class ScheduledRun(_Model):
    """The environment's monitoring schedule as the API accepted it."""

    recurring_run_id: str
    name: str
    experiment: str
    cron: str
    url: str
    package_sha256: str  # of the compiled package it runs (the file is compiled for the occasion)
    replaced: list[str]  # the recurring runs of the same name it replaced (deleted after it was created)


class FailedTask(_Model):
    """A task of a run that failed where the failure happened (not a DAG that failed because of it)."""

    name: str
    error: str | None  # KFP's API usually leaves it empty: the pod's log has the reason
    pods: list[str]


class RunSummary(_Model):
    """One run as the API reports it, newest first from `recent_runs`."""

    run_id: str
    name: str
    pipeline: str | None  # pipelineInfo.name of its spec, or the uploaded pipeline's display name
    state: str  # PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELING, CANCELED, PAUSED
    created_at: str
    finished_at: str | None
    error: str | None
    failed_tasks: list[FailedTask]
    url: str

    def is_pipeline(self, name: str) -> bool:
        """Whether it is a run of `name` (TRAINING_PIPELINE, ...), also as uploaded per environment."""
        return self.pipeline is not None and (self.pipeline == name or self.pipeline.startswith(f"{name}-"))


def experiment_name(settings: Settings) -> str:
    """The experiment an environment's runs are grouped in."""
    return settings.kfp.experiment or f"shipyard-{settings.environment}"


def _host(settings: Settings) -> str:
    host = settings.kfp.host
    if not host:
        raise PipelineRunError(
            f"environment {settings.environment} has no Kubeflow Pipelines API (settings kfp.host is not "
            "set): its pipelines run locally with kfp.local"
        )
    return host.rstrip("/")


def run_url(settings: Settings, run_id: str) -> str:
    """The run's page in the Kubeflow Pipelines UI (KF_PIPELINES_UI_ENDPOINT, as kfp uses, else the host)."""
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or _host(settings)
    return f"{ui.rstrip('/')}/#/runs/details/{run_id}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _probe(host: str) -> None:
    """One healthz request with a timeout: an unreachable API is one line, fast. An HTTP error means
    something answers (e.g. a proxy asking for credentials): the client goes on and reports the rest."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as kfp: no proxy unless given
    try:
        with opener.open(f"{host}/apis/v2beta1/healthz", timeout=PROBE_TIMEOUT_S) as answer:
            answer.read()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise PipelineRunError(
            f"the Kubeflow Pipelines API at {host} is unreachable: {_one_line(reason)}"
        ) from exc


@contextmanager
def _calling(host: str, what: str) -> Iterator[None]:
    """Around one kfp call: its stdout links and warnings swallowed, its failures one line."""
    import kfp_server_api  # type: ignore[import-untyped]
    import urllib3

    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            yield
    except kfp_server_api.ApiException as exc:
        if not exc.status:  # no HTTP answer (kfp_server_api reports TLS failures so)
            raise PipelineRunError(
                f"the Kubeflow Pipelines API at {host} is unreachable: {_one_line(exc.reason)}"
            ) from exc
        try:
            message = json.loads(exc.body)["message"]
        except (TypeError, ValueError, KeyError):
            message = exc.body or exc.reason
        raise PipelineRunError(
            f"Kubeflow Pipelines at {host} refused to {what} (HTTP {exc.status}): {_one_line(message)}"
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise PipelineRunError(
            f"the Kubeflow Pipelines API at {host} is unreachable: {_one_line(exc)}"
        ) from exc
    except (ValueError, TimeoutError) as exc:  # kfp's own (two experiments of one name, healthz retries)
        raise PipelineRunError(f"Kubeflow Pipelines at {host}: cannot {what}: {_one_line(exc)}") from exc


def client(settings: Settings) -> Any:
    """`kfp.Client` for the environment's API (`kfp.host`, `kfp.namespace`), once it answers."""
    host = _host(settings)
    _probe(host)
    # In a pipeline step (the retrain component) kfp runs with _KFP_RUNTIME=true and skips importing
    # its compile-time modules; importing the client from there then meets a circular import in
    # kfp.dsl (2.17) unless the component factory is loaded first, as `import kfp` normally does.
    import kfp.dsl.component_factory  # noqa: F401
    from kfp import client as kfp_client

    with _calling(host, "connect"):
        return kfp_client.Client(host=host, namespace=settings.kfp.namespace)


def submit_training(
    settings: Settings,
    root: Path,
    window: TrainingWindow,
    run_name: str,
    champion: Mapping[str, str] | None = None,
) -> SubmittedRun:
    """Submit the committed training pipeline on `window` with `promote` off; return the accepted run.

    `root` is the checkout or image root `settings.kfp.training_package` is relative to; `champion`
    the current champion as pipeline inputs (`champion_uri`, `champion_version`), which its gate
    compares the candidate against.
    """
    host = _host(settings)
    package = root / settings.kfp.training_package
    if not package.is_file():
        raise PipelineRunError(
            f"no training pipeline package {package} (settings kfp.training_package, relative to {root}); "
            "`make compile` writes it"
        )
    from shipyard.retraining import retraining_arguments

    parameters = retraining_arguments(settings, window, champion)
    experiment = experiment_name(settings)
    kfp = client(settings)
    with _calling(host, f"create the run {run_name!r} of {package.name}"):
        result = kfp.create_run_from_pipeline_package(
            pipeline_file=str(package),
            arguments=parameters,
            run_name=run_name,
            experiment_name=experiment,
            namespace=settings.kfp.namespace,
            pipeline_root=settings.pipeline_root if "://" in settings.pipeline_root else None,
        )
    run_id = str(result.run_id)
    return SubmittedRun(
        run_id=run_id,
        name=run_name,
        experiment=experiment,
        url=run_url(settings, run_id),
        package=str(package),
        parameters=parameters,
    )


def submit_retraining(
    settings: Settings, summary: MonitoringSummary, root: Path, cache: Path, say: TextIO
) -> Retraining:
    """Continuous training on the environment's Kubeflow Pipelines, for a monitoring `summary`.

    A `retrain` decision submits one run of the committed training package (`root`, see
    `submit_training`) on the newer window (`shipyard.retraining.training_window`) with the current
    champion as its gate's comparison (checked in `cache` first); any other decision submits nothing.
    Nothing trains here: the run trains, gates and registers its candidate, never promoted. The same
    call serves `shipyard monitor run --retrain` and the monitoring pipeline's own retrain step.
    """
    from shipyard.registry import champion_inputs
    from shipyard.retraining import Retraining, submitted, training_window

    if summary.decision != "retrain":
        return Retraining(triggered=False, message=f"decision {summary.decision}: nothing to retrain")
    window = training_window(
        summary.window.end,
        summary.window.events_to,
        summary.window.labels_as_of,
        settings.monitoring.retrain_window_days,
    )
    name = f"retraining of {summary.model.name} {summary.model.version}: events to {window.end}"
    say.write(
        f"retraining: submitting {settings.kfp.training_package} to {settings.kfp.host} on events "
        f"{window.start or 'from the first'} .. {window.end} with labels as of {window.labels_as_of}; the "
        "run registers its candidate, never promotes it\n"
    )
    champion = champion_inputs(settings.model_registry, cache, say)
    run = submit_training(settings, root, window, name, champion=champion)
    say.write(f"retraining: run {run.run_id} submitted: {run.url}\n")
    return submitted(settings.environment, window, run.run_id, run.url, run.experiment)


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    stamp = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    stamp = stamp.astimezone(UTC)
    return None if stamp == EPOCH else stamp.isoformat()


def _spec_name(spec: Any) -> str | None:
    """pipelineInfo.name of a run's spec (a bare PipelineSpec, or {pipeline_spec, platform_spec})."""
    if not isinstance(spec, Mapping):
        return None
    inner = spec.get("pipeline_spec", spec)
    info = inner.get("pipelineInfo") if isinstance(inner, Mapping) else None
    name = info.get("name") if isinstance(info, Mapping) else None
    return str(name) if name else None


def _error(status: Any) -> str | None:
    message = getattr(status, "message", None) if status is not None else None
    return _one_line(message) if message else None


def _failed_tasks(run: Any) -> list[FailedTask]:
    """FAILED tasks that are not the parent of another FAILED task: where the failure happened."""
    details = getattr(run.run_details, "task_details", None) if run.run_details is not None else None
    failed = [t for t in details or [] if t.state == "FAILED"]
    parents = {t.parent_task_id for t in failed if t.parent_task_id}
    return [
        FailedTask(
            name=str(t.display_name or t.task_id),
            error=_error(t.error),
            pods=[str(c.pod_name) for c in t.child_tasks or [] if c.pod_name],
        )
        for t in failed
        if t.task_id not in parents
    ]


def recent_runs(settings: Settings, limit: int = 10) -> list[RunSummary]:
    """The environment's experiment's last `limit` runs, newest first ([] when it has none yet)."""
    host = _host(settings)
    kfp = client(settings)
    name = experiment_name(settings)
    with _calling(host, f"find the experiment {name}"):
        try:
            experiment = kfp.get_experiment(experiment_name=name, namespace=settings.kfp.namespace)
        except ValueError as exc:
            if str(exc).startswith("No experiment is found"):
                return []
            raise
    with _calling(host, f"list the runs of experiment {name}"):
        listed = kfp.list_runs(
            experiment_id=experiment.experiment_id, page_size=limit, sort_by="created_at desc"
        )
    pipelines: dict[str, str | None] = {}

    def pipeline_of(run: Any) -> str | None:
        from_spec = _spec_name(run.pipeline_spec)
        reference = run.pipeline_version_reference
        if from_spec or reference is None or not reference.pipeline_id:
            return from_spec
        if reference.pipeline_id not in pipelines:  # a run of an uploaded pipeline (CI's) carries no spec
            try:
                with _calling(host, f"get the pipeline {reference.pipeline_id}"):
                    pipelines[reference.pipeline_id] = kfp.get_pipeline(reference.pipeline_id).display_name
            except PipelineRunError:
                pipelines[reference.pipeline_id] = None
        return pipelines[reference.pipeline_id]

    summaries = [
        RunSummary(
            run_id=str(run.run_id),
            name=str(run.display_name or run.run_id),
            pipeline=pipeline_of(run),
            state=str(run.state or "RUNTIME_STATE_UNSPECIFIED"),
            created_at=_iso(run.created_at) or "",
            finished_at=_iso(run.finished_at),
            error=_error(run.error),
            failed_tasks=_failed_tasks(run),
            url=run_url(settings, str(run.run_id)),
        )
        for run in listed.runs or []
    ]
    return sorted(summaries, key=lambda r: r.created_at, reverse=True)


def schedule_name(settings: Settings) -> str:
    """The one monitoring schedule of an environment is found again by this name."""
    return f"{MONITORING_PIPELINE}-{settings.environment}"


def schedule_monitoring(settings: Settings, package: Path, replace: bool = False) -> ScheduledRun:
    """Schedule the compiled monitoring `package` as the environment's recurring run
    (`kfp.monitoring_schedule`), in its experiment, one at a time and without catch-up: a window
    missed while paused is not worth a burst of runs, the next one covers the present.

    An environment has one monitoring schedule, found by its name. When it exists, `replace` swaps
    it for this package; otherwise it is refused in one line. The new one is created before the old
    are deleted: if anything fails between, there are two schedules for a moment rather than none.
    """
    host = _host(settings)
    name = schedule_name(settings)
    cron = settings.kfp.monitoring_schedule
    kfp = client(settings)
    experiment_label = experiment_name(settings)
    with _calling(host, f"find or create the experiment {experiment_label}"):
        experiment = kfp.create_experiment(name=experiment_label, namespace=settings.kfp.namespace)
    name_filter = json.dumps(
        {"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]}
    )
    with _calling(host, f"list the recurring runs of experiment {experiment_label}"):
        listed = kfp.list_recurring_runs(
            experiment_id=experiment.experiment_id, page_size=100, filter=name_filter
        )
    existing = [r for r in listed.recurring_runs or [] if r.display_name == name]
    if existing and not replace:
        ids = ", ".join(str(r.recurring_run_id) for r in existing)
        raise PipelineRunError(
            f"{name} is already scheduled in experiment {experiment_label} (recurring run {ids}); "
            "`shipyard monitor schedule --replace` replaces it with this package"
        )
    with _calling(host, f"create the recurring run {name}"):
        created = kfp.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=name,
            description=f"Shipyard monitoring of {settings.environment}: drift, data quality, fresh-label "
            "accuracy and age of the served version; a retrain decision submits training.",
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params={},
            pipeline_package_path=str(package),
            pipeline_root=settings.pipeline_root if "://" in settings.pipeline_root else None,
        )
    replaced: list[str] = []
    for old in existing:
        with _calling(
            host,
            f"delete the replaced recurring run {old.recurring_run_id} (the new one is "
            f"{created.recurring_run_id})",
        ):
            kfp.delete_recurring_run(str(old.recurring_run_id))
        replaced.append(str(old.recurring_run_id))
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or host
    return ScheduledRun(
        recurring_run_id=str(created.recurring_run_id),
        name=name,
        experiment=experiment_label,
        cron=cron,
        url=f"{ui.rstrip('/')}/#/recurringrun/details/{created.recurring_run_id}",
        package_sha256=hashlib.sha256(package.read_bytes()).hexdigest(),
        replaced=replaced,
    )
