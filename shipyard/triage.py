"""`shipyard triage`: when something breaks, four questions answered with evidence.

1. **pipeline bug?** the last training and monitoring runs: on an environment with a Kubeflow Pipelines
   API (`kfp.host`) its experiment's runs (`shipyard.pipeline_runs.recent_runs`: state, the task that
   failed and its pods; an API that cannot be read is `unknown`, with the reason), else the run ledger
   `runs/` beside the pipeline root (`shipyard.records.PipelineRun`: status, failed step, its error
   line); the record's pipeline hash
   against `pipelines/training.yaml` at the record's commit (a mismatch is a problem) and at HEAD (a
   difference is a note: the pipeline changed since, and the next promotion records it).
2. **wrong model deployed?** on a cluster (settings with a `namespace`): what serves (the
   InferenceService's storageUri, the version and content hash it gives the predictor, the
   Deployment's container env and storage initializer) against the release record and the registry
   (the version exists, its files verify, it is not quarantined or rejected). Locally: the champion
   against the version the request log shows answering.
3. **data problem?** contract violations, missing/NaN rates, entities not found and drift on the most
   recent monitoring summary (`<monitoring.reports>/*/summary.json` where scheduled runs publish them,
   else the local runs' `<state_dir>/<monitoring.report_dir>/*/summary.json`), or that there is none,
   or that it ended before the last `monitoring.window_hours`.
4. **stale model?** the served version's age (registry `created_at`) against `monitoring.warn_age_days`
   and `max_age_days`; fresh-label accuracy across the recent summaries of that version.

Every finding names the artifact that proves it (a file, a registry URI, a kubectl object). Verdicts:
`ok`, `note` (worth knowing, not wrong), `unknown` (no evidence to judge), `warn` and `problem`; the
triage is healthy when no finding is `warn` or `problem`. Reading is all it does: nothing here changes
a cluster, a registry or a file. A cluster that cannot be read is a DeployError (the CLI exits 2), not
a finding: without it the second question has no answer.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shipyard.deploy import (
    ISVC,
    Kubectl,
    deployment_name,
    differences,
    env_value,
    live_model,
    render_target,
)
from shipyard.errors import (
    DeployError,
    ModelNotFoundError,
    PipelineRunError,
    RegistryError,
    ReleaseError,
    SettingsError,
    ShipyardError,
)
from shipyard.monitoring import MonitoringSummary, parse_time, read_request_log
from shipyard.pipeline_runs import (
    MONITORING_PIPELINE,
    TRAINING_PIPELINE,
    FailedTask,
    RunSummary,
    experiment_name,
    recent_runs,
)
from shipyard.promotion import PIPELINE_FILE, head_commit, pipeline_ref
from shipyard.records import PipelineRun, ledger_dir, read_runs
from shipyard.registry import ModelRegistry, VersionEntry
from shipyard.release import Release, load_record, record_path
from shipyard.settings import Settings, report_location, request_log_location
from shipyard.storage import TMP_PREFIX, store_for

__all__ = [
    "Answer",
    "Finding",
    "TriageReport",
    "monitoring_summaries",
    "triage",
]

Verdict = Literal["ok", "note", "unknown", "warn", "problem"]
Question = Literal["pipeline", "model", "data", "staleness"]
ORDER: Mapping[str, int] = {"ok": 0, "note": 1, "unknown": 2, "warn": 3, "problem": 4}
TITLES: Mapping[Question, str] = {
    "pipeline": "pipeline bug?",
    "model": "wrong model deployed?",
    "data": "data problem?",
    "staleness": "stale model?",
}
TRAINING_RUNS = ("training", "retraining")
DATA_SIGNALS = ("data_quality", "drift", "text", "prediction")
TREND_WINDOWS = 5  # summaries of the served version the accuracy trend looks back over


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Finding(_Model):
    check: str
    verdict: Verdict
    message: str
    evidence: str  # the artifact that proves it: a path, a registry URI, a kubectl object


class Answer(_Model):
    question: Question
    title: str
    verdict: Verdict
    findings: list[Finding]


class TriageReport(_Model):
    environment: str
    generated_at: str
    healthy: bool
    causes: list[Question]  # the questions answered with a warn or a problem, in order
    answers: list[Answer]

    @property
    def exit_code(self) -> int:
        return 0 if self.healthy else 1


def _answer(question: Question, findings: list[Finding]) -> Answer:
    worst = max(findings, key=lambda f: ORDER[f.verdict]).verdict if findings else "unknown"
    return Answer(question=question, title=TITLES[question], verdict=worst, findings=findings)


def _age(iso: str, now: datetime) -> str:
    seconds = (now - parse_time(iso)).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86_400:.1f} d ago"


# -- what an InferenceService serves (shared with `shipyard status`) --------------------------------
# -- the evidence on disk ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryFile:
    uri: str  # of summary.json: a path locally, s3://... where scheduled runs publish
    summary: MonitoringSummary

    @property
    def report(self) -> str:
        return self.uri.rsplit("/", 1)[0] + "/report.html"

    @property
    def end(self) -> datetime:
        return parse_time(self.summary.window.end)


def monitoring_summaries(settings: Settings) -> tuple[str, list[SummaryFile], list[str]]:
    """Where monitoring runs publish (`shipyard.settings.report_location`), its summaries (oldest window
    end first), and one line per object that is not a readable summary."""
    location = report_location(settings)
    found: list[SummaryFile] = []
    problems: list[str] = []
    try:
        store = store_for(location)
        folders = store.children("")
    except (RegistryError, OSError) as exc:
        return location, [], [f"{location}: cannot list the monitoring reports ({_first_line(exc)})"]
    for folder in folders:
        if folder in ("latest.html", "latest.json") or folder.startswith(TMP_PREFIX):
            continue  # the copies of the newest, and a write in progress
        key = f"{folder}/summary.json"
        try:
            raw = store.read_bytes(key)
            if raw is None:
                continue
            found.append(SummaryFile(store.uri(key), MonitoringSummary.model_validate_json(raw)))
        except (RegistryError, OSError, ValueError) as exc:
            problems.append(f"{store.uri(key)}: not a monitoring summary ({_first_line(exc)})")
    found.sort(key=lambda s: (s.end, s.summary.generated_at))
    return location, found, problems


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- 1. pipeline bug? ------------------------------------------------------------------------------------
def _run_finding(check: str, item: tuple[Path, PipelineRun] | None, ledger: Path, now: datetime) -> Finding:
    if item is None:
        return Finding(
            check=check,
            verdict="note",
            message=f"no {check} recorded in this environment's run ledger",
            evidence=str(ledger),
        )
    path, run = item
    package = (
        f"{run.pipeline_name or run.pipeline} {run.pipeline_sha256[:12]}"
        if run.pipeline_sha256
        else run.pipeline
    )
    if run.status == "succeeded":
        return Finding(
            check=check,
            verdict="ok",
            message=f"{run.pipeline} run succeeded, ended {_age(run.ended_at, now)} ({package})",
            evidence=str(path),
        )
    step = f"step {run.failed_step}" if run.failed_step else "before any step reported"
    return Finding(
        check=check,
        verdict="problem",
        message=f"{run.pipeline} run FAILED at {step}, {_age(run.ended_at, now)}: "
        f"{run.error or 'no error line'} ({package})",
        evidence=f"{path} (log: {run.log})",
    )


KFP_RUNS = 20  # the experiment's newest runs searched for the last training and monitoring run


def _failed_task(task: FailedTask) -> str:
    if task.error:
        return f"task {task.name}: {task.error}"
    # KFP's API leaves a task's error empty; the reason is in the log of the pod that ran it.
    logs = f": see the log of pod {', '.join(task.pods)}" if task.pods else ""
    return f"task {task.name} (the API gives no error message{logs})"


FINISHED = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


def _kfp_run_finding(check: str, run: RunSummary, now: datetime) -> Finding:
    what = f"{run.pipeline or 'pipeline'} run {run.name!r}"
    evidence = f"{run.url} (run {run.run_id})"
    if run.state == "SUCCEEDED":
        ended = f", ended {_age(run.finished_at, now)}" if run.finished_at else ""
        return Finding(check=check, verdict="ok", message=f"{what} succeeded{ended}", evidence=evidence)
    if run.state == "FAILED":
        tasks = "; ".join(_failed_task(t) for t in run.failed_tasks)
        at = f" at {tasks}" if tasks else " before any task reported"
        ended = f", {_age(run.finished_at, now)}" if run.finished_at else ""
        error = f"; run error: {run.error}" if run.error else ""
        return Finding(
            check=check, verdict="problem", message=f"{what} FAILED{at}{ended}{error}", evidence=evidence
        )
    started = f", created {_age(run.created_at, now)}" if run.created_at else ""
    return Finding(check=check, verdict="note", message=f"{what} is {run.state}{started}", evidence=evidence)


def _kfp_findings(check: str, runs: Sequence[RunSummary], where: str, now: datetime) -> list[Finding]:
    """The newest run of one pipeline, and while it has not finished, the last one that has."""
    if not runs:
        return [Finding(check=check, verdict="note", message=f"no {check} in {where}", evidence=where)]
    findings = [_kfp_run_finding(check, runs[0], now)]
    if runs[0].state not in FINISHED:
        finished = next((r for r in runs if r.state in FINISHED), None)
        if finished is not None:
            findings.append(_kfp_run_finding(f"last finished {check}", finished, now))
    return findings


def kfp_run_findings(settings: Settings, now: datetime) -> list[Finding]:
    """The last training and monitoring runs in the environment's Kubeflow Pipelines experiment."""
    where = f"experiment {experiment_name(settings)} at {settings.kfp.host}"
    try:
        runs = recent_runs(settings, limit=KFP_RUNS)
    except PipelineRunError as exc:
        return [
            Finding(check="last runs", verdict="unknown", message=str(exc), evidence=str(settings.kfp.host))
        ]
    return [
        *_kfp_findings("training run", [r for r in runs if r.is_pipeline(TRAINING_PIPELINE)], where, now),
        *_kfp_findings("monitoring run", [r for r in runs if r.is_pipeline(MONITORING_PIPELINE)], where, now),
    ]


def pipeline_findings(settings: Settings, root: Path, record: Release | None, now: datetime) -> list[Finding]:
    findings: list[Finding] = []
    if settings.kfp.host:
        findings += kfp_run_findings(settings, now)
    elif "://" in settings.pipeline_root:
        findings.append(
            Finding(
                check="last runs",
                verdict="unknown",
                message=f"the pipeline root is {settings.pipeline_root}: this environment's runs are in its "
                "Kubeflow Pipelines, not in a local run ledger, and settings kfp.host does not say where",
                evidence=settings.pipeline_root,
            )
        )
    else:
        ledger = ledger_dir(Path(settings.pipeline_root))
        runs, unreadable = read_runs(ledger)
        training = [r for r in runs if r[1].pipeline in TRAINING_RUNS]
        monitoring = [r for r in runs if r[1].pipeline == "monitoring"]
        findings.append(_run_finding("training run", training[-1] if training else None, ledger, now))
        findings.append(_run_finding("monitoring run", monitoring[-1] if monitoring else None, ledger, now))
        findings += [
            Finding(check="run ledger", verdict="note", message=line, evidence=str(ledger))
            for line in unreadable
        ]
    if record is None:
        return findings
    spec = record.spec
    where = f"{record_path(root / settings.release.manifests, spec.environment)} spec.pipeline.sha256"
    try:
        at_commit = pipeline_ref(root, spec.code.git_sha)
    except ReleaseError as exc:
        findings.append(
            Finding(check="record's pipeline", verdict="unknown", message=str(exc), evidence=where)
        )
        return findings
    if at_commit.sha256 != spec.pipeline.sha256:
        findings.append(
            Finding(
                check="record's pipeline",
                verdict="problem",
                message=f"the record says pipeline {spec.pipeline.sha256[:12]}, but {PIPELINE_FILE} at its "
                f"commit {spec.code.git_sha[:12]} hashes to {at_commit.sha256[:12]}",
                evidence=f"{where}; git show {spec.code.git_sha[:12]}:{PIPELINE_FILE}",
            )
        )
        return findings
    try:
        head = head_commit(root)
        at_head = pipeline_ref(root, head)
    except ReleaseError as exc:
        findings.append(
            Finding(check="pipeline at HEAD", verdict="unknown", message=str(exc), evidence=where)
        )
        return findings
    if at_head.sha256 == spec.pipeline.sha256:
        findings.append(
            Finding(
                check="pipeline at HEAD",
                verdict="ok",
                message=f"HEAD ({head[:12]}) compiles the pipeline that trained {spec.model.version} "
                f"({spec.pipeline.sha256[:12]})",
                evidence=f"{where}; git show HEAD:{PIPELINE_FILE}",
            )
        )
    else:
        findings.append(
            Finding(
                check="pipeline at HEAD",
                verdict="note",
                message=f"{PIPELINE_FILE} changed since {spec.code.git_sha[:12]} (record "
                f"{spec.pipeline.sha256[:12]}, HEAD {at_head.sha256[:12]}): {spec.model.version} was trained "
                "by the recorded one; the next promotion records the new one",
                evidence=f"{where}; git diff {spec.code.git_sha[:12]} HEAD -- {PIPELINE_FILE}",
            )
        )
    return findings


# -- 2. wrong model deployed? ------------------------------------------------------------------------------
def _registry_findings(
    settings: Settings, version: str, content_hash: str | None, cache: Path, role: str
) -> list[Finding]:
    """The version exists in the environment's registry, with the expected hash, verifies file by file,
    and is not set aside."""
    reg = ModelRegistry(settings.model_registry)
    try:
        entry = reg.get(version)
    except ModelNotFoundError as exc:
        return [
            Finding(
                check="registry",
                verdict="problem",
                message=f"{role}: {exc}",
                evidence=settings.model_registry,
            )
        ]
    uri = reg.uri(version)
    findings: list[Finding] = []
    if content_hash is not None and entry.content_hash != content_hash:
        findings.append(
            Finding(
                check="registry",
                verdict="problem",
                message=f"{role} {version} has content hash {content_hash[:12]}, the registry's {version} is "
                f"{entry.content_hash[:12]}",
                evidence=uri,
            )
        )
    if entry.status in ("quarantined", "rejected"):
        findings.append(
            Finding(
                check="registry",
                verdict="problem",
                message=f"{role} {version} is {entry.status} in the registry ({entry.reason})",
                evidence=uri,
            )
        )
    try:
        reg.fetch(version, cache)
    except RegistryError as exc:
        findings.append(
            Finding(check="integrity", verdict="problem", message=f"{role} {version}: {exc}", evidence=uri)
        )
    else:
        findings.append(
            Finding(
                check="registry",
                verdict="ok" if not findings else "note",
                message=f"{role} {version} ({entry.content_hash[:12]}) is registered ({entry.status}); every "
                "file matches its recorded hash",
                evidence=uri,
            )
        )
    return findings


def _which(reg: ModelRegistry, content_hash: str | None) -> str:
    if not content_hash:
        return "no content hash"
    for entry in reg.versions():
        if entry.content_hash == content_hash or content_hash.rstrip("/").endswith(entry.content_hash):
            return f"{entry.version} in the registry ({entry.status})"
    return "no version in the registry"


def cluster_model_findings(
    settings: Settings, root: Path, record: Release, kubectl: Kubectl, cache: Path
) -> list[Finding]:
    env = record.spec.environment
    spec = record.spec
    rec_file = record_path(root / settings.release.manifests, env)
    target = render_target(kubectl, root, settings.release.manifests, env)
    isvc_ref = f"kubectl -n {target.namespace} get {ISVC} {target.name} -o yaml"
    live = live_model(kubectl.get(ISVC, target.name, target.namespace))
    findings: list[Finding] = []
    if live is None:
        return [
            Finding(
                check="InferenceService",
                verdict="problem",
                message=f"{target.namespace}/{target.name} does not exist: nothing serves {env}'s record "
                f"(`shipyard --env {env} release apply`)",
                evidence=isvc_ref,
            ),
            *_registry_findings(settings, spec.model.version, spec.model.content_hash, cache, "the record's"),
        ]
    reg = ModelRegistry(settings.model_registry)
    diffs = differences(record, live)
    for name, want, have in diffs:
        extra = ""
        if name in ("storageUri", "contentHash"):
            extra = f" ({have}: {_which(reg, have)})" if have else ""
        findings.append(
            Finding(
                check=f"InferenceService {name}",
                verdict="problem",
                message=f"serves {name} {have}, the record says {want}{extra}",
                evidence=f"{isvc_ref} (spec.predictor.model) vs {rec_file}",
            )
        )
    if not diffs:
        findings.append(
            Finding(
                check="InferenceService",
                verdict="ok",
                message=f"serves the record's {spec.model.version} ({spec.model.content_hash[:12]}) from "
                f"{spec.model.storage_uri} with its image",
                evidence=f"{isvc_ref} vs {rec_file}",
            )
        )
    if live.canary:
        findings.append(
            Finding(
                check="canary",
                verdict="note",
                message=f"a canary is in progress: {', '.join(live.canary)}",
                evidence=f"{isvc_ref} (spec.canary)",
            )
        )
    if not live.ready:
        findings.append(
            Finding(
                check="Ready",
                verdict="warn",
                message=f"{target.namespace}/{target.name} is not Ready: {live.ready_detail}",
                evidence=f"{isvc_ref} (status.conditions)",
            )
        )
    findings += _deployment_findings(kubectl, target.name, target.namespace, record)
    findings += _registry_findings(
        settings, spec.model.version, spec.model.content_hash, cache, "the record's"
    )
    return findings


def _deployment_findings(kubectl: Kubectl, name: str, namespace: str, record: Release) -> list[Finding]:
    """What the predictor's pods actually get: the Deployment's main container env and image, and the
    URI its storage initializer downloads."""
    spec = record.spec
    deploy = deployment_name(name)
    ref = f"kubectl -n {namespace} get deployment {deploy} -o yaml"
    deployment = kubectl.get("deployment", deploy, namespace)
    if deployment is None:
        return [
            Finding(
                check="Deployment",
                verdict="problem",
                message=f"{namespace}/{deploy} does not exist: the predictor runs nowhere",
                evidence=ref,
            )
        ]
    pod = deployment["spec"]["template"]["spec"]
    containers = pod.get("containers", [])
    main = next(
        (c for c in containers if c.get("name") == "kserve-container"), containers[0] if containers else {}
    )
    initializer = next(
        (c for c in pod.get("initContainers", []) if c.get("name") == "storage-initializer"), None
    )
    have = {
        "contentHash": env_value(main, "SHIPYARD_CONTENT_HASH"),
        "model": env_value(main, "SHIPYARD_MODEL_VERSION"),
        "image": main.get("image"),
    }
    want = {"contentHash": spec.model.content_hash, "model": spec.model.version, "image": spec.code.image}
    if initializer is not None and initializer.get("args"):
        have["storageUri"] = str(initializer["args"][0])
        want["storageUri"] = spec.model.storage_uri
    wrong = [k for k in want if (have.get(k) or "").rstrip("/") != want[k].rstrip("/")]
    if not wrong:
        return [
            Finding(
                check="Deployment",
                verdict="ok",
                message=f"the predictor's pods run {spec.model.version} ({spec.model.content_hash[:12]})"
                + (" downloaded from the record's storageUri" if "storageUri" in have else ""),
                evidence=ref,
            )
        ]
    return [
        Finding(
            check=f"Deployment {k}",
            verdict="problem",
            message=f"the predictor's pods run {k} {have.get(k)}, the record says {want[k]}",
            evidence=f"{ref} (spec.template.spec: kserve-container env, storage-initializer args)",
        )
        for k in wrong
    ]


def local_model_findings(
    settings: Settings, now: datetime, cache: Path
) -> tuple[list[Finding], VersionEntry | None]:
    """No cluster: the champion (what `shipyard serve` serves) against the version the request log
    shows answering over the last window. Returns the version that serves (for the age question)."""
    reg = ModelRegistry(settings.model_registry)
    champion = reg.champion()
    findings: list[Finding] = []
    if champion is None:
        findings.append(
            Finding(
                check="champion",
                verdict="unknown",
                message="the registry has no champion (`make run`, or `shipyard models promote <version>`)",
                evidence=settings.model_registry,
            )
        )
    else:
        findings += _registry_findings(
            settings, champion.version, champion.content_hash, cache, "the champion"
        )
    log_uri = request_log_location(settings)
    if log_uri is None:
        findings.append(
            Finding(
                check="request log",
                verdict="unknown",
                message="no request log is kept (serving.request_log.directory is null): what serves is "
                "unknown",
                evidence="settings serving.request_log",
            )
        )
        return findings, champion
    hours = settings.monitoring.window_hours
    log = read_request_log(log_uri, now - timedelta(hours=hours), now + timedelta(seconds=1))
    answered = [r for r in log.records if 200 <= int(r.get("status") or 0) < 300]
    if not answered:
        findings.append(
            Finding(
                check="request log",
                verdict="unknown",
                message=f"no answered requests logged in the last {hours:g} h: nothing shows what serves",
                evidence=log_uri,
            )
        )
        return findings, champion
    counts = Counter(str(r.get("model_version")) for r in answered)
    latest = str(answered[-1].get("model_version"))
    by_label = {e.version: e for e in reg.versions()} | {e.content_hash[:12]: e for e in reg.versions()}
    serving = by_label.get(latest)
    shown = ", ".join(f"{v} ({n} requests)" for v, n in counts.most_common())
    at = str(answered[-1].get("received_at"))
    if champion is not None and latest in (champion.version, champion.content_hash[:12]):
        findings.append(
            Finding(
                check="served version",
                verdict="ok",
                message=f"the request log shows the champion {champion.version} answering (last "
                f"{_age(at, now)}; last {hours:g} h: {shown})",
                evidence=log_uri,
            )
        )
    else:
        which = f"{serving.version} ({serving.status})" if serving else "a version the registry does not hold"
        findings.append(
            Finding(
                check="served version",
                verdict="problem",
                message=f"the request log shows {latest} answering (last {_age(at, now)}): {which}, but the "
                f"champion is {champion.version if champion else 'none'} (last {hours:g} h: {shown})",
                evidence=log_uri,
            )
        )
        if serving is not None and serving.status in ("quarantined", "rejected"):
            findings.append(
                Finding(
                    check="served version",
                    verdict="problem",
                    message=f"{serving.version}, which answers, is {serving.status} ({serving.reason})",
                    evidence=reg.uri(serving.version),
                )
            )
    return findings, serving or champion


# -- 3. data problem? -----------------------------------------------------------------------------------
def data_findings(
    settings: Settings, summaries: Sequence[SummaryFile], directory: str, now: datetime
) -> list[Finding]:
    if not summaries:
        return [
            Finding(
                check="monitoring summary",
                verdict="unknown",
                message="no monitoring summary: served data is not judged (`shipyard monitor run`; on a "
                "cluster, `shipyard monitor schedule` publishes them to monitoring.reports)",
                evidence=directory,
            )
        ]
    latest = summaries[-1]
    s = latest.summary
    evidence = f"{latest.uri} (report: {latest.report})"
    findings: list[Finding] = []
    hours = settings.monitoring.window_hours
    if now - latest.end > timedelta(hours=hours):
        findings.append(
            Finding(
                check="monitoring summary",
                verdict="unknown",
                message=f"the most recent summary's window ended {_age(s.window.end, now)}, before the last "
                f"{hours:g} h: today's data is not judged (`shipyard monitor run`)",
                evidence=evidence,
            )
        )
    severity: Mapping[str, Verdict] = {"retrain": "problem", "warn": "warn", "info": "note"}
    for reason in s.reasons:
        if reason.signal in DATA_SIGNALS:
            verdict: Verdict = "problem" if reason.signal == "data_quality" else severity[reason.severity]
            findings.append(
                Finding(check=reason.signal, verdict=verdict, message=reason.message, evidence=evidence)
            )
        elif reason.signal == "traffic":
            findings.append(
                Finding(check="traffic", verdict="unknown", message=reason.message, evidence=evidence)
            )
    if not any(ORDER[f.verdict] >= ORDER["warn"] for f in findings):
        q = s.data_quality
        worst_missing = max(q.missing, key=lambda m: m.served - m.reference, default=None)
        missing = (
            f"; most missing: {worst_missing.feature} {worst_missing.served:.1%} "
            f"(training {worst_missing.reference:.1%})"
            if worst_missing is not None
            else ""
        )
        not_found = "n/a" if q.entity_not_found_rate is None else f"{q.entity_not_found_rate:.1%}"
        findings.append(
            Finding(
                check="served inputs",
                verdict="ok",
                message=f"{s.model.version}'s window ending {_age(s.window.end, now)}: {s.window.rows} rows, "
                f"{q.violation_rate:.1%} of requests broke the contract, entities not found {not_found}"
                f"{missing}; {len(s.drifted)} of {len(s.drift)} inputs drifted",
                evidence=evidence,
            )
        )
    return findings


# -- 4. stale model? -----------------------------------------------------------------------------------
def staleness_findings(
    settings: Settings,
    version: VersionEntry | None,
    summaries: Sequence[SummaryFile],
    registry_uri: str,
    now: datetime,
) -> list[Finding]:
    cfg = settings.monitoring
    if version is None:
        return [
            Finding(
                check="model age",
                verdict="unknown",
                message="no served version to judge",
                evidence=settings.model_registry,
            )
        ]
    age = (now - parse_time(version.created_at)).total_seconds() / 86_400
    policy = f"warn at {cfg.warn_age_days:g} d, retrain at {cfg.max_age_days:g} d (monitoring policy)"
    verdict: Verdict = "problem" if age >= cfg.max_age_days else "warn" if age >= cfg.warn_age_days else "ok"
    findings = [
        Finding(
            check="model age",
            verdict=verdict,
            message=f"{version.version} was registered {age:.1f} days ago ({version.created_at}); {policy}",
            evidence=f"{registry_uri} (version.json created_at)",
        )
    ]
    mine = [s for s in summaries if s.summary.model.content_hash == version.content_hash][-TREND_WINDOWS:]
    scored = [s for s in mine if s.summary.performance.accuracy is not None]
    if not scored:
        findings.append(
            Finding(
                check="fresh-label accuracy",
                verdict="unknown",
                message=f"no monitoring window of {version.version} had enough fresh labels to judge "
                "accuracy",
                evidence=mine[-1].uri if mine else report_location(settings),
            )
        )
        return findings
    reference = scored[-1].summary.performance.reference_accuracy
    trend = " -> ".join(f"{s.summary.performance.accuracy:.3f}" for s in scored)
    latest = scored[-1]
    accuracy_reasons = [r for r in latest.summary.reasons if r.signal == "accuracy"]
    worst: Verdict = "ok"
    if accuracy_reasons:
        worst = "problem" if any(r.severity == "retrain" for r in accuracy_reasons) else "warn"
    first, last = scored[0].summary.performance.accuracy, latest.summary.performance.accuracy
    assert first is not None and last is not None
    if worst == "ok" and len(scored) > 1 and first - last >= cfg.accuracy_drop_warn:
        worst = "warn"  # each window passed, the trend is still downhill
    detail = "; ".join(r.message for r in accuracy_reasons)
    findings.append(
        Finding(
            check="fresh-label accuracy",
            verdict=worst,
            message=f"{version.version} on fresh labels, last {len(scored)} window(s): {trend} (evaluation "
            f"{reference:.3f})" + (f": {detail}" if detail else ""),
            evidence=", ".join(s.uri for s in scored[-2:]),
        )
    )
    return findings


# -- the whole triage ------------------------------------------------------------------------------------
def triage(
    settings: Settings,
    root: Path,
    kubectl: Kubectl | None = None,
    now: datetime | None = None,
) -> TriageReport:
    """The four answers for `settings`' environment. A cluster environment (settings with a
    `namespace`) needs its release record and kubectl (default: $KUBECTL / $KUBECONFIG)."""
    now = now or datetime.now(UTC)
    env = settings.environment
    cache = Path(settings.state_dir) / "cache" / "models"
    record: Release | None = None
    model_findings: list[Finding]
    served: VersionEntry | None = None
    reg = ModelRegistry(settings.model_registry)
    if settings.namespace:
        path = record_path(root / settings.release.manifests, env)
        record = load_record(path)  # a missing or invalid record is a configuration error
        if record.spec.environment != env:
            raise SettingsError(f"{path}: spec.environment is {record.spec.environment!r}, not {env!r}")
        kubectl = kubectl or Kubectl()
        if shutil.which(kubectl.binary) is None:  # $KUBECTL naming nothing: one line, not a trace
            raise DeployError(f"kubectl {kubectl.binary} does not exist or is not executable (KUBECTL)")
        model_findings = cluster_model_findings(settings, root, record, kubectl, cache)
        try:
            served = reg.get(record.spec.model.version)
        except RegistryError:
            served = None
    else:
        model_findings, served = local_model_findings(settings, now, cache)
    directory, summaries, unreadable = monitoring_summaries(settings)
    data = data_findings(settings, summaries, directory, now)
    data += [
        Finding(check="monitoring summary", verdict="note", message=u, evidence=directory) for u in unreadable
    ]
    try:
        registry_uri = reg.uri(served.version) if served else settings.model_registry
    except ShipyardError:
        registry_uri = settings.model_registry
    answers = [
        _answer("pipeline", pipeline_findings(settings, root, record, now)),
        _answer("model", model_findings),
        _answer("data", data),
        _answer("staleness", staleness_findings(settings, served, summaries, registry_uri, now)),
    ]
    causes = [a.question for a in answers if ORDER[a.verdict] >= ORDER["warn"]]
    return TriageReport(
        environment=env,
        generated_at=now.isoformat(timespec="seconds"),
        healthy=not causes,
        causes=causes,
        answers=answers,
    )
