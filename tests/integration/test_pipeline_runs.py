"""Pipelines on a cluster: continuous training submits the committed training package to the
environment's Kubeflow Pipelines API, and triage reads the runs back (`shipyard.pipeline_runs`).

kfp's own client (`kfp.Client`, as pinned) talks to the v2beta1 stand-in in tests/kfp_api.py (fixture
`kfp_api`; why a stand-in: its docstring), over HTTP on 127.0.0.1. The package is the real compiled
`pipelines/training.yaml`. The continuous-training and triage tests start from the drifted-March replay
the monitoring tests share (`replayed`): a real monitoring run decides `retrain`, and triage reads the
replay's real champion, request log and summaries; only the pipeline runs come from the stand-in.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from pipelines.local_monitor import CHECKOUT
from pipelines.local_run import run_locally
from pipelines.monitoring import compile_monitoring_pipeline, make_monitoring_pipeline, monitoring_arguments
from shipyard.cli import main
from shipyard.cli.monitor import echo_retraining
from shipyard.errors import PipelineRunError
from shipyard.monitor_steps import report_key
from shipyard.monitoring import MonitoringSummary, parse_time
from shipyard.pipeline_runs import (
    MONITORING_PIPELINE,
    TRAINING_PIPELINE,
    ScheduledRun,
    client,
    recent_runs,
    submit_training,
)
from shipyard.records import ledger_dir, read_runs
from shipyard.registry import ModelRegistry
from shipyard.retraining import Retraining, TrainingWindow
from shipyard.settings import KfpSettings, Settings, load_settings, pipeline_arguments
from shipyard.triage import triage
from tests.integration.drift_replay import Replayed
from tests.integration.test_triage import cli, findings, scenario, verdicts
from tests.kfp_api import KfpApi, Task, kfp_api_fixture  # noqa: F401 (the `kfp_api` fixture)

PACKAGE = CHECKOUT / "pipelines" / "training.yaml"
WINDOW = TrainingWindow(
    start="2025-03-01T00:00:00+00:00",
    end="2025-03-31T23:12:50+00:00",
    labels_as_of="2025-04-02T00:00:00+00:00",
    end_from="events",
)


def on_kfp(settings: Settings, host: str, **kfp: Any) -> Settings:
    return settings.model_copy(update={"kfp": KfpSettings(host=host, **kfp)})


def closed_port() -> str:
    """A loopback address nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def package_docs(path: Path = PACKAGE) -> dict[str, Any]:
    """The package as kfp.Client sends a spec with a platform part: {pipeline_spec, platform_spec}."""
    pipeline, platform = yaml.safe_load_all(path.read_text())
    return {"pipeline_spec": pipeline, "platform_spec": platform}


# -- submitting -----------------------------------------------------------------------------------------
def test_a_submitted_run_carries_exactly_the_committed_package_and_the_windows_parameters(
    kfp_api: KfpApi,
) -> None:
    settings = on_kfp(load_settings("staging"), kfp_api.host)
    champion = {"champion_uri": "s3://shipyard-models/staging/versions/" + "a" * 64, "champion_version": "v3"}
    run = submit_training(settings, CHECKOUT, WINDOW, "retraining of router v3", champion=champion)

    stored = kfp_api.run_of(run.run_id)
    # The committed file, as data: nothing recompiled, nothing dropped (its platform part included).
    assert stored["pipeline_spec"] == package_docs()
    expected = pipeline_arguments(
        settings,
        **champion,
        start=WINDOW.start,
        end=WINDOW.end,
        labels_as_of=WINDOW.labels_as_of,
        promote=False,
    )
    assert stored["runtime_config"]["parameters"] == expected == run.parameters
    assert expected["promote"] is False and load_settings("staging").promote is False
    assert expected["model_registry"] == "s3://shipyard-models/staging"  # the environment's, not dev's
    # Artifacts go to the environment's pipeline root, the run to its experiment.
    assert stored["runtime_config"]["pipeline_root"] == "s3://shipyard-pipelines/staging"
    experiment = kfp_api.experiments[stored["experiment_id"]]
    assert experiment["display_name"] == run.experiment == "shipyard-staging"
    assert stored["display_name"] == run.name == "retraining of router v3"
    assert run.url == f"{kfp_api.host}/#/runs/details/{run.run_id}" and run.package == str(PACKAGE)

    # An unbounded window is the pipeline's "" (every event up to `end`); the experiment is reused.
    kfp_api.now += 60
    again = submit_training(
        settings.model_copy(update={"kfp": settings.kfp.model_copy(update={"experiment": None})}),
        CHECKOUT,
        WINDOW.model_copy(update={"start": None}),
        "second",
    )
    assert kfp_api.run_of(again.run_id)["runtime_config"]["parameters"]["start"] == ""
    assert len(kfp_api.experiments) == 1 and len(kfp_api.runs) == 2
    listed = recent_runs(settings)
    assert [(r.name, r.state, r.pipeline) for r in listed] == [
        ("second", "PENDING", TRAINING_PIPELINE),
        ("retraining of router v3", "PENDING", TRAINING_PIPELINE),
    ]
    assert all(r.finished_at is None for r in listed)  # the API's epoch for "not finished"


def test_the_pipeline_names_triage_looks_for_are_the_compiled_ones(tmp_path: Path) -> None:
    assert package_docs()["pipeline_spec"]["pipelineInfo"]["name"] == TRAINING_PIPELINE
    monitoring = compile_monitoring_pipeline(tmp_path / "monitoring.yaml")
    assert next(yaml.safe_load_all(monitoring.read_text()))["pipelineInfo"]["name"] == MONITORING_PIPELINE


def test_a_parameter_the_package_does_not_declare_is_refused_by_the_api_in_one_line(
    kfp_api: KfpApi, tmp_path: Path
) -> None:
    """An older package (before `labels_as_of` existed) submitted by newer code: the API refuses the
    run, and the error says which parameter in one line."""
    pipeline, platform = yaml.safe_load_all(PACKAGE.read_text())
    del pipeline["root"]["inputDefinitions"]["parameters"]["labels_as_of"]
    old = tmp_path / "old" / "training.yaml"
    old.parent.mkdir()
    old.write_text(yaml.safe_dump_all([pipeline, platform], sort_keys=False))
    settings = on_kfp(load_settings("staging"), kfp_api.host, training_package="old/training.yaml")

    with pytest.raises(PipelineRunError) as refused:
        submit_training(settings, tmp_path, WINDOW, "retraining")
    message = str(refused.value)
    assert "\n" not in message and kfp_api.host in message and "HTTP 400" in message, message
    assert message.endswith("parameter(s) provided are not required by pipeline: labels_as_of"), message
    assert kfp_api.runs == {}


def test_the_stand_in_refuses_what_the_real_api_refuses(kfp_api: KfpApi) -> None:
    """A run without a pipeline spec, a field the proto lacks, a value of the wrong type."""

    def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return _post(kfp_api, "/runs", body)

    status, error = post({"display_name": "no spec", "runtime_config": {"parameters": {}}})
    assert status == 500 and error["code"] == 13
    assert "Failed to fetch a template with an empty pipeline spec manifest" in error["message"]
    assert post({"display_name": "x", "pipeline_spec": package_docs(), "priority": 1}) == (
        400,
        {
            "code": 3,
            "message": 'proto: unknown field "priority"',
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.Status",
                    "code": 3,
                    "message": 'proto: unknown field "priority"',
                }
            ],
        },
    )
    status, error = post(
        {
            "display_name": "x",
            "pipeline_spec": package_docs(),
            "runtime_config": {"parameters": {"promote": "no"}},
        }
    )
    assert status == 400 and "input parameter promote requires type bool" in error["message"], error
    assert kfp_api.runs == {}


def test_an_unreachable_or_unset_api_is_one_clear_line(tmp_path: Path) -> None:
    host = closed_port()
    settings = on_kfp(load_settings("staging"), host)
    with pytest.raises(PipelineRunError, match="unreachable") as unreachable:
        submit_training(settings, CHECKOUT, WINDOW, "retraining")
    assert host in str(unreachable.value) and "\n" not in str(unreachable.value)
    with pytest.raises(PipelineRunError, match="unreachable"):
        recent_runs(settings)
    with pytest.raises(PipelineRunError, match=r"environment local has no Kubeflow Pipelines API.*kfp\.host"):
        client(load_settings("local"))
    # The package is checked before the network: the error names the file.
    missing = on_kfp(load_settings("staging"), host, training_package="build/training-staging.yaml")
    with pytest.raises(PipelineRunError, match=str(tmp_path / "build" / "training-staging.yaml")):
        submit_training(missing, tmp_path, WINDOW, "retraining")


# -- continuous training on a cluster environment ------------------------------------------------------
def test_a_retrain_decision_on_a_cluster_environment_submits_one_run_and_trains_nothing_here(
    replayed: Replayed,
    kfp_api: KfpApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`shipyard monitor run --retrain --json` on the drifted window of the replay, with `kfp.host`:
    the monitoring pipeline runs here (kfp.local) and decides retrain; the training pipeline is
    submitted to the API, once, with the window's parameters; no training run happens on this machine
    and no version is registered; the summary, the report and the JSON on stdout say so."""
    monkeypatch.delenv("SHIPYARD_HOME", raising=False)
    settings = on_kfp(
        replayed.settings.model_copy(
            update={"state_dir": tmp_path / "state", "pipeline_root": str(tmp_path / "pipeline_root")}
        ),
        kfp_api.host,
    )
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    reg = ModelRegistry(settings.model_registry)
    before = [(e.version, e.status) for e in reg.versions()]
    w = replayed.drifted.summary.window
    result = CliRunner().invoke(
        main,
        [
            *("--settings", str(settings_file), "monitor", "run", "--retrain", "--json"),
            *("--window-start", w.start, "--window-end", w.end, "--labels-as-of", w.labels_as_of),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = MonitoringSummary.model_validate_json(result.stdout)  # kfp's printed links stay off stdout
    assert summary.decision == "retrain"
    r = summary.retrain
    assert r is not None and r.triggered and r.status == "submitted", r

    assert len(kfp_api.runs) == 1
    ((run_id, stored),) = kfp_api.runs.items()
    assert r.run_id == run_id and r.run_url == f"{kfp_api.host}/#/runs/details/{run_id}"
    assert r.experiment == "shipyard-local" and r.version is None and r.holdout is None
    assert r.next_command == "shipyard --env local triage" and "release propose" in r.message
    assert stored["pipeline_spec"] == package_docs()
    parameters = stored["runtime_config"]["parameters"]
    champion, window = reg.champion(), r.window
    assert champion is not None and champion.version == replayed.stack.version and window is not None
    assert parameters["start"] == "" and parameters["end"] == w.events_to == window.end
    assert parameters["labels_as_of"] == window.labels_as_of and parameters["promote"] is False
    assert parameters["champion_version"] == champion.version
    assert parameters["champion_uri"] == reg.uri(champion.version)

    # Nothing trained here: only the monitoring run is in the ledger and the pipeline root.
    ledger, _ = read_runs(ledger_dir(Path(settings.pipeline_root)))
    assert [run.pipeline for _, run in ledger] == ["monitoring"]
    assert not list(Path(settings.pipeline_root).glob("shipyard-training-*"))
    assert [(e.version, e.status) for e in reg.versions()] == before
    # The summary and the report carry the run.
    state = Path(settings.state_dir) / "monitoring"
    assert MonitoringSummary.model_validate_json((state / "latest.json").read_text()).retrain == r
    page = (state / "latest.html").read_text()
    assert f"Kubeflow Pipelines run {run_id}: submitted" in page and r.run_url in page

    echo_retraining(r)
    shown = capsys.readouterr().out
    assert f"Kubeflow Pipelines run {run_id} (experiment shipyard-local): {r.run_url}" in shown, shown
    assert "trains on the events from the first" in shown and "next: shipyard --env local triage" in shown


def test_a_scheduled_monitoring_run_submits_training_itself_on_a_retrain_decision_only(
    replayed: Replayed, kfp_api: KfpApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitoring pipeline as a cluster runs it on a schedule (the environment's defaults: the
    version is resolved from the log, `retrain` on), here with kfp.local: on the healthy window its
    retrain step does not run; on the drifted one it submits one training run of the package under
    $SHIPYARD_HOME (as in the image) with the window's parameters and writes what it submitted."""
    monkeypatch.setenv("SHIPYARD_HOME", str(CHECKOUT))
    published = tmp_path / "published"  # monitoring.reports: s3://... on a cluster
    settings = on_kfp(
        replayed.settings.model_copy(
            update={
                "state_dir": tmp_path / "state",
                "pipeline_root": str(tmp_path / "pipeline_root"),
                "monitoring": replayed.settings.monitoring.model_copy(update={"reports": str(published)}),
            }
        ),
        kfp_api.host,
    )
    pipeline = make_monitoring_pipeline(settings)
    reg = ModelRegistry(settings.model_registry)
    before = [(e.version, e.status) for e in reg.versions()]

    def scheduled(run: Any, **monitoring: Any) -> Any:
        w = run.summary.window
        arguments = monitoring_arguments(
            settings, window_start=w.start, window_end=w.end, labels_as_of=w.labels_as_of
        )
        arguments["monitoring"] = {**arguments["monitoring"], **monitoring}  # as a run overrides it
        assert arguments["retrain"] is True and arguments["model_uri"] == ""
        return run_locally(pipeline, arguments, Path(settings.pipeline_root), "monitoring", io.StringIO())

    healthy = scheduled(replayed.healthy)
    assert json.loads(Path(healthy.outputs["Output"].path).read_text())["decision"] == "healthy"
    assert kfp_api.runs == {}
    assert not list(Path(settings.pipeline_root).glob("shipyard-monitoring-*/retrain"))

    # The run's own `monitoring` parameter decides the retraining window too, not the settings' copy.
    assert settings.monitoring.retrain_window_days is None
    drifted = scheduled(replayed.drifted, retrain_window_days=10)
    summary = MonitoringSummary.model_validate_json(Path(drifted.outputs["Output"].path).read_text())
    assert summary.decision == "retrain" and summary.model.version == replayed.stack.version
    assert len(kfp_api.runs) == 1
    ((run_id, stored),) = kfp_api.runs.items()
    assert stored["pipeline_spec"] == package_docs()
    parameters = stored["runtime_config"]["parameters"]
    w = summary.window
    assert parameters["end"] == w.events_to and parameters["promote"] is False
    assert parse_time(parameters["end"]) - parse_time(parameters["start"]) == timedelta(days=10)
    assert parameters["champion_version"] == replayed.stack.version
    assert stored["display_name"].startswith(f"retraining of {summary.model.name} {replayed.stack.version}")
    (written,) = Path(settings.pipeline_root).glob("shipyard-monitoring-*/retrain/retraining")
    r = Retraining.model_validate_json(written.read_text())
    assert r.status == "submitted" and r.run_id == run_id and r.experiment == "shipyard-local"
    # Nothing trained or registered on this machine.
    assert [(e.version, e.status) for e in reg.versions()] == before

    # Each run published its report and summary where triage reads them (nothing under the state dir).
    keys = {report_key(replayed.healthy.summary), report_key(summary)}
    assert {p.name for p in published.iterdir()} == keys | {"latest.html", "latest.json"}
    for key in keys:
        assert "<svg" in (published / key / "report.html").read_text()
    latest = MonitoringSummary.model_validate_json((published / "latest.json").read_text())
    assert (
        latest
        == summary
        == MonitoringSummary.model_validate_json(
            (published / report_key(summary) / "summary.json").read_text()
        )
    )
    assert not (Path(settings.state_dir) / settings.monitoring.report_dir).exists()
    report = triage(settings, tmp_path)
    data = findings(report, "data")
    assert any(
        f.startswith("problem") and str(published / report_key(summary) / "summary.json") in f for f in data
    ), data
    assert verdicts(report)["data"] == "problem"


# -- the monitoring schedule ---------------------------------------------------------------------------
def test_monitor_schedule_keeps_one_recurring_run_of_the_environments_monitoring_package(
    kfp_api: KfpApi, tmp_path: Path
) -> None:
    """`shipyard --env staging monitor schedule`: one recurring run in the environment's experiment, of
    the monitoring package compiled for it (the retrain step on), at `kfp.monitoring_schedule`, one at
    a time, no catch-up. Again: refused in one line, the schedule untouched; with --replace: exactly one,
    the new one."""
    settings = on_kfp(load_settings("staging"), kfp_api.host)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings.model_dump(mode="json")))

    def schedule(*extra: str) -> Any:
        return CliRunner().invoke(main, ["--settings", str(settings_file), "monitor", "schedule", *extra])

    first = schedule("--json")
    assert first.exit_code == 0, first.output
    scheduled = ScheduledRun.model_validate_json(first.stdout)
    assert list(kfp_api.recurring_runs) == [scheduled.recurring_run_id] and scheduled.replaced == []
    stored = kfp_api.recurring_runs[scheduled.recurring_run_id]
    assert stored["display_name"] == scheduled.name == "shipyard-monitoring-staging"
    assert kfp_api.experiments[stored["experiment_id"]]["display_name"] == "shipyard-staging"
    assert stored["trigger"] == {"cron_schedule": {"cron": "0 0 6 * * *"}} and scheduled.cron == "0 0 6 * * *"
    assert stored["max_concurrency"] == "1" and stored["no_catchup"] is True and stored["status"] == "ENABLED"
    assert stored["runtime_config"] == {"pipeline_root": settings.pipeline_root}
    compiled = compile_monitoring_pipeline(tmp_path / "monitoring.yaml", settings)
    assert stored["pipeline_spec"] == package_docs(compiled)
    assert scheduled.package_sha256 == hashlib.sha256(compiled.read_bytes()).hexdigest()
    root = stored["pipeline_spec"]["pipeline_spec"]["root"]
    defaults = {k: v.get("defaultValue") for k, v in root["inputDefinitions"]["parameters"].items()}
    assert defaults["retrain"] is True and defaults["model_uri"] == ""
    assert defaults["request_log"] == settings.serving.request_log.upload
    assert scheduled.url == f"{kfp_api.host}/#/recurringrun/details/{scheduled.recurring_run_id}"

    again = schedule()
    assert again.exit_code == 2, again.output
    assert again.output.count("\n") == 1 and "Traceback" not in again.output
    assert (
        f"already scheduled in experiment shipyard-staging (recurring run {scheduled.recurring_run_id})"
        in (again.output)
    )
    assert "--replace" in again.output
    assert list(kfp_api.recurring_runs) == [scheduled.recurring_run_id]

    replaced = schedule("--replace")
    assert replaced.exit_code == 0, replaced.output
    ((new_id, _),) = kfp_api.recurring_runs.items()
    assert new_id != scheduled.recurring_run_id
    assert (
        f"recurring run {new_id}" in replaced.output
        and f"replaced: {scheduled.recurring_run_id}" in replaced.output
    )


def test_a_schedule_kfp_would_misread_is_refused_before_anything_is_sent(kfp_api: KfpApi) -> None:
    """KFP reads cron seconds first: a crontab line would fire at minute 6 of every hour, not 06:00."""
    with pytest.raises(ValidationError, match="KFP's cron has six, seconds first"):
        KfpSettings(host=kfp_api.host, monitoring_schedule="0 6 * * *")
    # And the stand-in refuses what robfig/cron cannot parse, as the real server does.
    status, answer = _post(
        kfp_api,
        "/recurringruns",
        {
            "display_name": "x",
            "max_concurrency": 1,
            "trigger": {"cron_schedule": {"cron": "0 6 *"}},
            "pipeline_spec": package_docs(),
        },
    )
    assert status == 400 and "Expected 5 to 6 fields, found 3" in answer["message"]
    assert kfp_api.recurring_runs == {}


def _post(kfp_api: KfpApi, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{kfp_api.host}/apis/v2beta1{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- triage on a cluster environment -------------------------------------------------------------------
def runs_of_a_day(kfp_api: KfpApi, settings: Settings, tmp_path: Path) -> tuple[str, str]:
    """What a cluster's experiment holds after a day: a monitoring run of the package CI uploads (a run
    of a pipeline version, no spec inline) and a training run submitted by continuous training; both
    succeeded. Returns (monitoring run id, training run id)."""
    kfp = client(settings)
    experiment = kfp.create_experiment("shipyard-local")
    package = compile_monitoring_pipeline(tmp_path / "monitoring.yaml")
    pipeline_id, version_id = kfp_api.upload("shipyard-monitoring-local", package)
    kfp_api.now = int(datetime.now(UTC).timestamp()) - 7200
    monitoring = kfp.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name="monitoring 2025-03-31",
        pipeline_id=pipeline_id,
        version_id=version_id,
    ).run_id
    kfp_api.finish(monitoring, "SUCCEEDED", [Task("collect", "SUCCEEDED"), Task("monitor", "SUCCEEDED")])
    kfp_api.now += 600
    training = submit_training(settings, CHECKOUT, WINDOW, "retraining of router v1").run_id
    kfp_api.finish(training, "SUCCEEDED", [Task("register", "SUCCEEDED")], after_seconds=1200)
    return monitoring, training


def test_triage_reads_the_last_runs_from_the_api_healthy_when_they_succeeded(
    replayed: Replayed, kfp_api: KfpApi, tmp_path: Path
) -> None:
    s = scenario(replayed, tmp_path / "healthy")
    settings = on_kfp(s.settings, kfp_api.host)
    monitoring, training = runs_of_a_day(kfp_api, settings, tmp_path)

    report = triage(settings, s.root)
    assert report.healthy and report.exit_code == 0, report.model_dump_json(indent=2)
    assert verdicts(report)["pipeline"] == "ok"
    pipeline = findings(report, "pipeline")
    assert len(pipeline) == 2, pipeline
    assert pipeline[0].startswith(f"ok training run: {TRAINING_PIPELINE} run 'retraining of router v1'")
    assert f"/#/runs/details/{training}" in pipeline[0]
    # The uploaded pipeline's run carries no spec: its pipeline is named by the API's pipeline record.
    assert pipeline[1].startswith("ok monitoring run: shipyard-monitoring-local run 'monitoring 2025-03-31'")
    assert f"/#/runs/details/{monitoring}" in pipeline[1]


def test_triage_names_the_failed_task_of_the_last_training_run(
    replayed: Replayed, kfp_api: KfpApi, tmp_path: Path
) -> None:
    """The newest training run FAILED in its validate step (the run's root DAG failed with it): triage
    says pipeline bug, names validate (not the DAG) and its pod, and the run's URL is the evidence.
    As on a real server, the API gives no error message for the task."""
    s = scenario(replayed, tmp_path / "failed")
    settings = on_kfp(s.settings, kfp_api.host)
    runs_of_a_day(kfp_api, settings, tmp_path)
    kfp_api.now += 3600
    failed = submit_training(settings, CHECKOUT, WINDOW, "retraining of router v1 (again)").run_id
    pod = "retraining-of-router-v1-again-x7k2p-system-container-impl-3345"
    kfp_api.finish(
        failed,
        "FAILED",
        [
            Task("root", "FAILED"),
            Task("ingest", "SUCCEEDED", parent="root"),
            Task("validate", "FAILED", parent="root", pod=pod),
        ],
    )

    report = triage(settings, s.root)
    assert report.causes == ["pipeline"] and report.exit_code == 1, report.model_dump_json(indent=2)
    pipeline = findings(report, "pipeline")
    problem = next(line for line in pipeline if line.startswith("problem training run"))
    assert "'retraining of router v1 (again)' FAILED at task validate" in problem, problem
    assert pod in problem and "task root" not in problem, problem
    assert problem.endswith(f"[{settings.kfp.host}/#/runs/details/{failed} (run {failed})]"), problem
    assert any(line.startswith("ok monitoring run") for line in pipeline), pipeline

    shown = cli(settings, s.root)
    assert shown.returncode == 1 and "PROBLEM: pipeline bug?" in shown.stdout, shown.stdout + shown.stderr
    assert "FAILED at task validate" in shown.stdout


def test_an_unreachable_api_is_an_unknown_pipeline_answer_not_a_crash(
    replayed: Replayed, tmp_path: Path
) -> None:
    s = scenario(replayed, tmp_path / "unreachable")
    host = closed_port()
    settings = on_kfp(s.settings, host)

    report = triage(settings, s.root)
    assert verdicts(report)["pipeline"] == "unknown" and report.healthy, report.model_dump_json(indent=2)
    (line,) = findings(report, "pipeline")
    assert line.startswith(f"unknown last runs: the Kubeflow Pipelines API at {host} is unreachable"), line
    shown = cli(settings, s.root)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stdout + shown.stderr
    assert "is unreachable" in shown.stdout
