"""Typed, strict per-environment settings.

One YAML file per environment (local, dev, staging, prod) carries every difference between them, so
business logic never branches on the environment's name. Unknown keys are errors: a typo in a
deployed config must fail loudly, not fall back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.errors import SettingsError
from shipyard.params import Gates, TrainParams
from shipyard.project import ProjectSpec, load_project

ENVIRONMENTS = ("local", "dev", "staging", "prod")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Settings(_Strict):
    """Where object storage is; credentials are never here, only in the environment (a Secret)."""

    endpoint_url: str | None = Field(None, description="e.g. http://minio.minio:9000; None = AWS.")
    region: str = "us-east-1"


class SecretRef(_Strict):
    """An environment variable filled from a Kubernetes Secret key when deployed (never a value)."""

    secret: str = Field(pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
    key: str


class RequestLogSettings(_Strict):
    """What the model server's request log keeps, and for how long (see docs/serving.md)."""

    directory: str | None = Field(
        "request_log", description="Relative to the state dir locally; None disables the request log."
    )
    batch: int = Field(256, ge=1)
    flush_seconds: float = Field(1.0, gt=0)
    max_record_bytes: int = Field(
        65_536,
        ge=4096,
        description="Cap on one record (one JSON line): longer text fields are truncated with a marker, "
        "then trailing rows are dropped; the record says so (truncated, rows_omitted).",
    )
    text: Literal["raw", "sha256"] = Field(
        "raw",
        description="How the contract's `text` request fields are stored: as sent, or as sha256:<hex> "
        "of their UTF-8 bytes.",
    )
    retention_days: float | None = Field(
        None, gt=0, description="Delete whole log files whose last write is older than this; None keeps them."
    )
    retention_bytes: int | None = Field(
        None,
        ge=1_048_576,
        description="Keep the log directory under about this size by deleting whole files, oldest first; "
        "the file being written rolls over at a quarter of it. None: no size limit.",
    )
    upload: str | None = Field(
        None,
        pattern=r"^(s3|file)://.+",
        description="Object storage for the log (s3:// or file:// URI, e.g. "
        "s3://shipyard-request-logs/staging): every closed log file is copied there under a name no other "
        "pod or restart can take, then deleted from the directory, which becomes a spool. Monitoring reads "
        "it there. None: the log stays local.",
    )
    rollover_seconds: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="With `upload`: the file being written is closed and shipped at least this often, so "
        "monitoring lags the requests by about this much.",
    )


class ServingSettings(_Strict):
    """How `shipyard serve` runs the model server (a pod's ServingRuntime passes the same flags)."""

    host: str = Field("127.0.0.1", description="Listen address; 0.0.0.0 inside a pod.")
    port: int = Field(8080, ge=1, le=65535)
    threads: int = Field(1, ge=1, le=64)
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes behind the one port (one per core the pod gets); metrics are "
        "aggregated across them.",
    )
    batch_max_rows: int = Field(
        64,
        ge=1,
        le=4096,
        description="Adaptive batching: at most this many rows of concurrent requests are scored together "
        "(one feature lookup, one predict). 1 turns batching off.",
    )
    batch_max_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="Adaptive batching: how long a queued request may wait for requests that are still being "
        "read and validated. A lone request never waits; 0 never waits at all.",
    )
    feature_lookup: bool = True
    max_body_bytes: int = Field(1_048_576, ge=1024)
    grace_period_seconds: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="On SIGTERM: how long requests in flight may take to finish (keep it below the pod's "
        "terminationGracePeriodSeconds).",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="A request's headers must arrive within this (slow clients: 408)."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="A request's body must arrive within this (slow clients: 408)."
    )
    enable_model_repository: bool = Field(
        False,
        description="KServe's model repository endpoints (/v2/repository/...: load, unload). Off: anyone "
        "who reaches the port could unload the model.",
    )
    enable_docs: bool = Field(False, description="/openapi.json, /docs and /redoc.")
    request_log: RequestLogSettings = RequestLogSettings()


class MonitoringSettings(_Strict):
    """What the monitoring pipeline reads and the thresholds of its healthy / warn / retrain decision.

    A signal at or past a `*_warn` threshold makes the run `warn`, at or past a `*_retrain` one
    `retrain`; drift and accuracy drops count only when their statistical test also rejects at
    `alpha`, so a small window cannot raise an alarm on noise (see shipyard/monitoring.py).
    """

    request_log: str | None = Field(
        None,
        description="Where the request log is (a directory, file:// or s3:// URI); None: where the server "
        "ships it (serving.request_log.upload), else its own <state_dir>/<serving.request_log.directory>.",
    )
    report_dir: str = Field("monitoring", description="Local runs copy reports here, relative to state_dir.")
    reports: str | None = Field(
        None,
        pattern=r"^(s3://|file://|/)",
        description="Where every monitoring run publishes <version>-<window end>/report.html + summary.json "
        "and latest.html/latest.json (s3://, file:// or an absolute path), for triage and people to read "
        "what scheduled runs found; None: only local runs keep them, under <state_dir>/<report_dir>.",
    )
    window_hours: float = Field(24.0, gt=0, description="Default window: this many hours up to now.")
    min_rows: int = Field(200, ge=1, description="Fewer served rows than this: drift is not judged.")
    min_labelled: int = Field(100, ge=1, description="Fewer labelled rows than this: accuracy is not judged.")
    alpha: float = Field(
        0.01, gt=0, lt=1, description="Significance level; split over the features tested (Bonferroni)."
    )
    psi_warn: float = Field(0.10, gt=0, description="Population stability index of a feature: warn.")
    psi_retrain: float = Field(0.25, gt=0, description="Population stability index of a feature: retrain.")
    prediction_psi_warn: float = Field(0.10, gt=0, description="PSI of served vs holdout class shares.")
    max_oov_increase: float = Field(
        0.10, ge=0, le=1, description="Out-of-vocabulary token rate of text fields above the reference's."
    )
    accuracy_drop_warn: float = Field(0.03, ge=0, le=1, description="Accuracy points below the evaluation.")
    accuracy_drop_retrain: float = Field(0.05, ge=0, le=1)
    macro_f1_drop_warn: float = Field(0.05, ge=0, le=1, description="Macro-F1 points below the evaluation.")
    label_f1_drop_warn: float = Field(
        0.10, ge=0, le=1, description="F1 points one label lost against the evaluation (>= 20 fresh labels)."
    )
    max_violation_rate: float = Field(
        0.01, ge=0, le=1, description="Share of prediction requests rejected by the input contract (4xx)."
    )
    max_missing_increase: float = Field(
        0.05, ge=0, le=1, description="Missing-value rate of a feature above its training rate."
    )
    max_entity_not_found_rate: float = Field(
        0.05, ge=0, le=1, description="Share of served rows whose entity had no online features."
    )
    warn_age_days: float = Field(60.0, gt=0, description="Model age (since registration): warn.")
    max_age_days: float = Field(90.0, gt=0, description="Model age (since registration): retrain.")
    retrain_window_days: float | None = Field(
        None,
        gt=0,
        description="Continuous training (`monitor run --retrain`) trains on the events of this many days up "
        "to the end of the monitored window; None: all events up to it.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringSettings:
        for warn, retrain in (
            ("psi_warn", "psi_retrain"),
            ("accuracy_drop_warn", "accuracy_drop_retrain"),
            ("warn_age_days", "max_age_days"),
        ):
            if getattr(self, warn) > getattr(self, retrain):
                raise ValueError(f"{warn} must not exceed {retrain}")
        return self


class CanaryPolicy(_Strict):
    """How `shipyard release rollout` shifts traffic to a new version and when it rolls back.

    Each step routes `steps[i]` percent of the traffic to the canary (KServe `spec.canary`), waits
    for it to be Ready, observes both predictors for `step_seconds`, and rolls back when the canary
    errs or is slow: a canary is judged against absolute limits and against the stable version
    measured in the same window, so a slow cluster does not fail a good model.
    """

    steps: tuple[int, ...] = Field((10, 50, 100), min_length=1, description="Canary traffic percentages.")
    step_seconds: float = Field(60.0, gt=0, le=3600, description="How long each step is observed.")
    min_requests: int = Field(
        50, ge=1, description="The canary must answer at least this many requests per step to be judged."
    )
    max_error_ratio: float = Field(0.01, ge=0, le=1, description="Canary 5xx share above this: roll back.")
    max_latency_ratio: float = Field(
        1.5, ge=1, description="Canary p95 above this times the stable p95 (and above the floor): roll back."
    )
    latency_floor_seconds: float = Field(
        0.05, ge=0, description="A canary p95 below this is never a latency breach (noise at low latency)."
    )
    ready_timeout_seconds: float = Field(600.0, gt=0, description="Wait this long for a step to be Ready.")

    @model_validator(mode="after")
    def _increasing(self) -> CanaryPolicy:
        if any(not 0 < p <= 100 for p in self.steps):
            raise ValueError("steps must be percentages in (0, 100]")
        if list(self.steps) != sorted(set(self.steps)) or self.steps[-1] != 100:
            raise ValueError("steps must increase strictly and end at 100")
        return self


class StagingValidation(_Strict):
    """What `shipyard release validate` requires of a version running in this environment."""

    load_seconds: float = Field(10.0, gt=0, description="Length of the load test.")
    load_concurrency: int = Field(4, ge=1, le=256)
    min_qps: float = Field(5.0, ge=0, description="The load test must sustain at least this.")
    max_p95_seconds: float = Field(1.0, gt=0)
    holdout_rows: int = Field(400, ge=10, description="Fresh labelled rows scored through the server.")
    max_accuracy_drop: float = Field(
        0.05, ge=0, le=1, description="Served accuracy on them may trail the evaluation by this much."
    )


class KfpSettings(_Strict):
    """Where this environment's pipelines run on a cluster: a Kubeflow Pipelines API.

    None of it is a credential: in a pod, kfp's client reads the projected service-account token
    Kubeflow's multi-user mode mounts (KF_PIPELINES_SA_TOKEN_PATH).
    """

    host: str | None = Field(
        None,
        pattern=r"^https?://.+",
        description="The KFP API, e.g. http://ml-pipeline.kubeflow.svc:8888. None: pipelines run locally "
        "(kfp.local), and continuous training trains in-process.",
    )
    namespace: str | None = Field(
        None, description="The Kubeflow profile namespace runs go to; None: KFP's default (single-user)."
    )
    experiment: str | None = Field(None, description="Runs are grouped here; None: shipyard-<environment>.")
    training_package: str = Field(
        "pipelines/training.yaml",
        description="The compiled training pipeline continuous training submits (the file the release "
        "record hashes), relative to the checkout or image root.",
    )
    monitoring_schedule: str = Field(
        "0 0 6 * * *",
        description="When the monitoring pipeline's recurring run fires (`shipyard monitor schedule`): KFP's "
        "cron, six fields with seconds first (second minute hour day-of-month month day-of-week), or "
        "@hourly, @daily, @every 6h...",
    )

    @field_validator("monitoring_schedule")
    @classmethod
    def _kfp_cron(cls, value: str) -> str:
        """KFP parses schedules with robfig/cron's seconds-first parser: a five-field crontab line is
        accepted there but read with seconds first ("0 6 * * *" fires at minute 6 of every hour), so
        it is refused here rather than silently running 24 times a day."""
        fields = value.split()
        if value.startswith("@"):
            descriptors = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
            if value in descriptors or (len(fields) == 2 and fields[0] == "@every"):
                return value
            raise ValueError(
                f"unknown schedule descriptor {value!r}: one of {sorted(descriptors)} or @every <d>"
            )
        if len(fields) != 6:
            raise ValueError(
                f"{value!r} has {len(fields)} fields; KFP's cron has six, seconds first (daily at 06:00 UTC "
                "is '0 0 6 * * *')"
            )
        return value


class ReleaseSettings(_Strict):
    """How this environment is released: where its candidates come from and what it demands."""

    inference_service: str | None = Field(
        None, description="The InferenceService's name; None: the model's name (its version.json)."
    )
    manifests: str = Field("manifests", description="The kustomize tree, relative to the checkout.")
    source: str | None = Field(
        None,
        description="The environment whose registry candidates come from (prod: staging); the version is "
        "copied into this environment's registry, byte for byte. None: this environment's own registry.",
    )
    requires_evidence: tuple[str, ...] = Field(
        (), description="Evidence names a proposal must attach, e.g. staging-validation."
    )
    validation: StagingValidation = StagingValidation()
    canary: CanaryPolicy | None = Field(
        None, description="None: `release apply` replaces the version in place; set: `release rollout`."
    )


class Settings(_Strict):
    """Everything that differs between environments, in one validated object."""

    environment: str
    namespace: str | None = Field(None, description="Kubernetes namespace; None when running locally.")
    project: str = Field(description="The project package (it exposes PROJECT), e.g. my_project.")
    feature_repo: Path = Path("feature_repo")
    feature_store_yaml: str = Field("feature_store.yaml", description="Relative to feature_repo.")
    feature_service: str | None = Field(None, description="None: the project's feature service.")
    data_dir: Path = Field(Path("feature_repo/data"), description="Where the source tables live.")
    data: dict[str, Any] = Field(default_factory=dict, description="Options of the project's generator.")
    state_dir: Path = Field(Path(".shipyard"), description="Local state: request logs, caches.")
    model_registry: str = Field(".shipyard/models", description="A path, file:// or s3:// URI.")
    pipeline_root: str = ".shipyard/pipeline_root"
    s3: S3Settings = S3Settings()
    train: TrainParams = TrainParams()
    gates: Gates = Gates()
    promote: bool = Field(True, description="False: gated candidates wait for a promotion PR.")
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    secrets: dict[str, SecretRef] = Field(
        default_factory=dict, description="Environment variable -> Secret key, for deployed pods."
    )
    release: ReleaseSettings = ReleaseSettings()
    kfp: KfpSettings = KfpSettings()

    def resolve(self, root: Path) -> Settings:
        """Anchor relative local paths at `root` (the project checkout) so cwd does not matter."""

        def anchor(value: str) -> str:
            return value if "://" in value or Path(value).is_absolute() else str(root / value)

        return self.model_copy(
            update={
                "feature_repo": root / self.feature_repo,
                "data_dir": root / self.data_dir,
                "state_dir": root / self.state_dir,
                "model_registry": anchor(self.model_registry),
                "pipeline_root": anchor(self.pipeline_root),
            }
        )

    @property
    def spec(self) -> ProjectSpec:
        return load_project(self.project)

    @property
    def service(self) -> str:
        return self.feature_service or self.spec.feature_service

    def storage_env(self) -> dict[str, str]:
        """What the S3 client in every step and server reads (credentials come from Secrets)."""
        env = {"AWS_DEFAULT_REGION": self.s3.region}
        if self.s3.endpoint_url:
            env["AWS_ENDPOINT_URL_S3"] = self.s3.endpoint_url
        return env


def pipeline_arguments(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The one mapping from an environment's settings to the training pipeline's parameters."""
    args: dict[str, Any] = {
        "project": settings.project,
        "source_dir": str(settings.data_dir),
        "feature_repo": str(settings.feature_repo),
        "feature_store_yaml": settings.feature_store_yaml,
        "feature_service": settings.service,
        "model_registry": settings.model_registry,
        "train_params": settings.train.model_dump(mode="json"),
        "gates": settings.gates.model_dump(mode="json"),
        "promote": settings.promote,
    }
    args.update(overrides)
    return args


def request_log_location(settings: Settings) -> str | None:
    """Where the served model's request log is, for everything that reads it (monitoring, triage):
    `monitoring.request_log`, else where the server ships it (`serving.request_log.upload`), else the
    server's own directory under the state dir. None: no request log is kept."""
    configured = settings.monitoring.request_log
    if configured:
        if "://" in configured or Path(configured).is_absolute():
            return configured
        return str(Path(settings.state_dir) / configured)
    if settings.serving.request_log.upload:
        return settings.serving.request_log.upload
    directory = settings.serving.request_log.directory
    if directory is None:
        return None
    return str(Path(settings.state_dir) / directory)


def report_location(settings: Settings) -> str:
    """Where monitoring summaries and reports are read from (triage) and written to: the published
    location (`monitoring.reports`), else the local runs' <state_dir>/<report_dir>."""
    return settings.monitoring.reports or str(Path(settings.state_dir) / settings.monitoring.report_dir)


def settings_schema() -> dict[str, Any]:
    """The JSON schema of a settings file, for editors, `helm lint` and the chart's ConfigMap."""
    return Settings.model_json_schema()


def environments_dir() -> Path:
    """Where environment files live: $SHIPYARD_HOME/environments, else ./environments (the checkout)."""
    return Path(os.environ.get("SHIPYARD_HOME") or Path.cwd()) / "environments"


def load_settings(env: str | None = None, path: Path | None = None) -> Settings:
    """Settings from `path`, else $SHIPYARD_SETTINGS, else `environments/<env>.yaml` of the checkout.

    The environment is `env`, else $SHIPYARD_ENV, else `local`. A deployment's settings are its own
    file (a Helm ConfigMap mounted at $SHIPYARD_SETTINGS); the package itself ships only the model,
    its defaults and its JSON schema.
    """
    env = env or os.environ.get("SHIPYARD_ENV", "local")
    if path is None and os.environ.get("SHIPYARD_SETTINGS"):
        path = Path(os.environ["SHIPYARD_SETTINGS"])
    if path is None:
        if env not in ENVIRONMENTS:
            raise SettingsError(f"unknown environment {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
        path = environments_dir() / f"{env}.yaml"
        if not path.exists():
            raise SettingsError(
                f"no settings for environment {env!r}: {path} does not exist (run from the checkout, "
                "or set SHIPYARD_HOME or SHIPYARD_SETTINGS)"
            )
    if not path.exists():
        raise SettingsError(f"settings file {path} does not exist")
    text = path.read_text()
    source = str(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: expected a mapping at the top level")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise SettingsError(f"{source}: {problems}") from exc
