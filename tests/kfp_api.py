"""A stand-in for the Kubeflow Pipelines v2beta1 REST API, for the tests of `shipyard.pipeline_runs`.

Why a stand-in and not the real server: the KFP API server is Go (github.com/kubeflow/pipelines/backend,
with Argo Workflows and MySQL behind it), and it cannot be built here: `go list -m -versions
github.com/kubeflow/pipelines/backend` and `go list -m -versions github.com/argoproj/argo-workflows/v3`
both answer 403 from the Go module proxy (measured on this machine). So the tests run kfp's own Python
client (`kfp.Client`, the version pinned in pyproject.toml) against this.

Faithful, and only as wide as what that client sends and reads on the paths Shipyard uses
(`kfp/client/client.py`, `kfp_server_api`): the real routes, the real JSON (proto field names in
snake_case, empty fields left out: the server's marshaler has UseProtoNames and no EmitUnpopulated),
errors as grpc-gateway writes a google.rpc.Status (`code`, `message`, `details`) with the HTTP status
of its gRPC code, and the messages the real server's wrapping produces (backend/src/apiserver/server/
run_server.go, resource/resource_manager.go, template/v2_template.go, read at kubeflow/pipelines
7b70c7b). What it refuses, as the real server does:

- a run whose `runtime_config.parameters` names a parameter the pipeline spec's root does not declare
  (400, "parameter(s) provided are not required by pipeline: ..."), a value of the wrong type for its
  declared `parameterType`, or a required parameter with no default left out (400);
- a run with neither `pipeline_spec` nor `pipeline_version_reference` (500: the real server wraps this
  input error in an internal one), an empty `display_name` (500, likewise);
- a request body with a field the proto does not have (400: the server's unmarshaler keeps
  DiscardUnknown off); a sort field the run list cannot sort on (400).

Single-user mode (healthz `multi_user: false`): namespaces are recorded, not enforced. Like the real
server, times have a resolution of seconds, and an unfinished run's `finished_at` is the epoch; the
server's clock is `now` (settable, so tests order runs without sleeping). Like the real server, the
`error` of a run and of its tasks is empty on a failure (toApiRun / toApiPipelineTaskDetail set it only
when the server cannot convert its own records): what failed shows as a task whose state is FAILED.

Recurring runs: create, list (by experiment and name), delete.

Test-only, not HTTP: `finish()` moves a run to a final state with its task details (it stands in for
Argo running the workflow and the persistence agent reporting its nodes back), and `upload()`
registers a pipeline and a version (it stands in for the upload API, which Shipyard's code does not
call; CI's hack/ci/kfp_train.py does, and its runs reference the version instead of carrying the spec).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

__all__ = ["KfpApi", "Task", "kfp_api_fixture"]

PREFIX = "/apis/v2beta1"
# gRPC codes and the HTTP status grpc-gateway answers them with.
INVALID_ARGUMENT, NOT_FOUND, INTERNAL, UNIMPLEMENTED = 3, 5, 13, 12
HTTP_OF = {INVALID_ARGUMENT: 400, NOT_FOUND: 404, INTERNAL: 500, UNIMPLEMENTED: 501}
# The fields of the v2beta1 Run message (backend/api/v2beta1/run.proto): anything else is refused.
RUN_FIELDS = {
    "experiment_id",
    "run_id",
    "display_name",
    "storage_state",
    "description",
    "pipeline_version_id",
    "pipeline_spec",
    "pipeline_version_reference",
    "runtime_config",
    "service_account",
    "created_at",
    "scheduled_at",
    "finished_at",
    "state",
    "error",
    "run_details",
    "recurring_run_id",
    "state_history",
    "plugins_input",
    "plugins_output",
}
# The fields of the v2beta1 RecurringRun message (backend/api/v2beta1/recurring_run.proto).
RECURRING_RUN_FIELDS = {
    "recurring_run_id",
    "display_name",
    "description",
    "pipeline_version_id",
    "pipeline_spec",
    "pipeline_version_reference",
    "runtime_config",
    "service_account",
    "max_concurrency",
    "trigger",
    "mode",
    "created_at",
    "updated_at",
    "status",
    "error",
    "no_catchup",
    "namespace",
    "experiment_id",
    "plugins_input",
}
EXPERIMENT_FIELDS = {
    "experiment_id",
    "display_name",
    "description",
    "created_at",
    "namespace",
    "storage_state",
    "last_run_created_at",
}
# runAPIToModelFieldMap (backend/src/apiserver/model/run.go): what a run list can be sorted on.
RUN_SORT_FIELDS = (
    "run_id",
    "display_name",
    "created_at",
    "finished_at",
    "description",
    "scheduled_at",
    "storage_state",
    "namespace",
    "experiment_id",
    "state",
)
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
DEFAULT_PAGE_SIZE = 20


class ApiError(Exception):
    """An error the real server answers: its gRPC code and its message (the wrapped internal chain)."""

    def __init__(self, code: int, message: str, external: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.external = external or message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.Status",
                    "code": self.code,
                    "message": self.external,
                }
            ],
        }


def invalid_input(message: str) -> str:
    return f"Invalid input error: {message}"


@dataclass(frozen=True)
class Task:
    """One node of a run as the persistence agent reports it (a PipelineTaskDetail)."""

    name: str  # display_name: the task's name in the pipeline (e.g. `validate`), or the DAG's
    state: str  # a RuntimeState: SUCCEEDED, FAILED, SKIPPED, ...
    parent: str | None = None  # the name of the DAG task it runs in
    pod: str | None = None  # the executor pod (child_tasks[].pod_name)
    error: str | None = None  # the real server leaves it empty; a test may set it (the proto has it)


def _timestamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(INVALID_ARGUMENT, invalid_input(f"Invalid package token: {exc}")) from exc


def _root_parameters(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline's own inputs: the root component's inputDefinitions.parameters."""
    pipeline = spec.get("pipeline_spec", spec) if "pipeline_spec" in spec else spec
    root = pipeline.get("root")
    if not isinstance(root, Mapping):
        raise ApiError(
            INVALID_ARGUMENT,
            "Failed to create a new run: Failed to generate the ExecutionSpec: "
            + invalid_input("pipeline spec has no root component"),
        )
    params = (root.get("inputDefinitions") or {}).get("parameters") or {}
    return dict(params)


KINDS: Mapping[str, tuple[str, type | tuple[type, ...]]] = {
    "NUMBER_DOUBLE": ("double or integer", (int, float)),
    "NUMBER_INTEGER": ("double or integer", (int, float)),
    "STRING": ("string", str),
    "BOOLEAN": ("bool", bool),
    "LIST": ("list", list),
    "STRUCT": ("struct", dict),
}


def validate_inputs(spec: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """validatePipelineJobInputs (template/v2_template.go): required ones present, types right, no extras."""
    declared = _root_parameters(spec)
    wrap = "Failed to create a new run: Failed to generate the ExecutionSpec: invalid pipeline job inputs: "

    def refuse(message: str) -> ApiError:
        return ApiError(INVALID_ARGUMENT, wrap + invalid_input(message), message)

    for name, param in declared.items():
        if name not in parameters:
            if not param.get("isOptional") and "defaultValue" not in param:
                raise refuse(
                    f"parameter {name} is not optional, yet has neither default value nor user provided value"
                )
            continue
        ptype = param.get("parameterType", "PARAMETER_TYPE_ENUM_UNSPECIFIED")
        if ptype not in KINDS:
            raise refuse(f"input parameter {name} requires type unknown")
        what, kinds = KINDS[ptype]
        value = parameters[name]
        is_bool = isinstance(value, bool)
        if (ptype == "BOOLEAN" and not is_bool) or (
            ptype != "BOOLEAN" and (is_bool or not isinstance(value, kinds))
        ):
            raise refuse(
                f"input parameter {name} requires type {what}, but the parameter value is not of {what} "
                "value type"
            )
    extra = [name for name in parameters if name not in declared]
    if extra:
        raise refuse(f"parameter(s) provided are not required by pipeline: {', '.join(extra)}")


class KfpApi:
    """The stand-in's state and its HTTP server (127.0.0.1, an ephemeral port, one thread)."""

    def __init__(self, multi_user: bool = False) -> None:
        self.multi_user = multi_user
        self.now = int(time.time())  # the server's clock, in seconds (tests may set it)
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}  # version id -> {pipeline_id, spec}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KfpApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_DELETE(self) -> None:
                self._answer("DELETE")

            def _answer(self, method: str) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                    status, answer = api.handle(method, url.path, query, body)
                except ApiError as exc:
                    status, answer = HTTP_OF[exc.code], exc.body()
                except json.JSONDecodeError as exc:
                    status, answer = 400, ApiError(INVALID_ARGUMENT, f"proto: syntax error: {exc}").body()
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the test output is not the place for an access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kfp-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    # -- test-only: what Argo and the persistence agent, or the upload API, would do -------------------
    def finish(self, run_id: str, state: str, tasks: Sequence[Task] = (), after_seconds: int = 60) -> None:
        """Move a run to a final state with its nodes, as the persistence agent reports a workflow."""
        assert state in FINAL_STATES, state
        with self._lock:
            run = self.runs[run_id]
            finished = self._seconds(run["created_at"]) + after_seconds
            ids = {t.name: str(uuid.uuid4()) for t in tasks}
            details = []
            for t in tasks:
                detail: dict[str, Any] = {
                    "run_id": run_id,
                    "task_id": ids[t.name],
                    "display_name": t.name,
                    "create_time": run["created_at"],
                    "start_time": run["created_at"],
                    "end_time": _timestamp(finished),
                    "state": t.state,
                    "state_history": [{"update_time": _timestamp(finished), "state": t.state}],
                }
                if t.parent is not None:
                    detail["parent_task_id"] = ids[t.parent]
                if t.pod is not None:
                    detail["child_tasks"] = [{"pod_name": t.pod}]
                if t.error is not None:
                    detail["error"] = {"code": 2, "message": t.error}
                details.append(detail)
            run["state"] = state
            run["finished_at"] = _timestamp(finished)
            run["state_history"].append({"update_time": _timestamp(finished), "state": state})
            if details:
                run["run_details"] = {"task_details": details}

    def upload(self, name: str, package: Path) -> tuple[str, str]:
        """A pipeline and one version of it from a compiled package; (pipeline_id, pipeline_version_id)."""
        docs = list(yaml.safe_load_all(package.read_text()))
        spec: dict[str, Any] = (
            docs[0] if len(docs) == 1 else {"pipeline_spec": docs[0], "platform_spec": docs[1]}
        )
        with self._lock:
            pipeline_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
            self.pipelines[pipeline_id] = {
                "pipeline_id": pipeline_id,
                "display_name": name,
                "created_at": _timestamp(self.now),
            }
            self.versions[version_id] = {"pipeline_id": pipeline_id, "spec": spec}
        return pipeline_id, version_id

    # -- the API ----------------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: Mapping[str, str], body: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((method, path))
            if path == f"{PREFIX}/healthz" and method == "GET":
                return 200, {"multi_user": self.multi_user, "pipeline_store": "database"}
            if path == f"{PREFIX}/experiments":
                if method == "GET":
                    return 200, self._list_experiments(query)
                return 200, self._create_experiment(body)
            if path == f"{PREFIX}/runs":
                if method == "GET":
                    return 200, self._list_runs(query)
                return 200, self._create_run(body, query)
            if path == f"{PREFIX}/recurringruns":
                if method == "GET":
                    return 200, self._list_recurring_runs(query)
                return 200, self._create_recurring_run(body)
            match = re.fullmatch(rf"{PREFIX}/recurringruns/([^/:]+)", path)
            if match and method == "DELETE":
                if self.recurring_runs.pop(match[1], None) is None:
                    raise ApiError(
                        NOT_FOUND,
                        f"Failed to delete a recurring run: Failed to delete a job {match[1]}: "
                        f"ResourceNotFoundError: Job {match[1]} not found",
                    )
                return 200, {}
            match = re.fullmatch(rf"{PREFIX}/runs/([^/:]+)", path)
            if match and method == "GET":
                run = self.runs.get(match[1])
                if run is None:
                    raise ApiError(
                        NOT_FOUND,
                        f"Failed to get a run: Failed to fetch run {match[1]}: ResourceNotFoundError: "
                        f"Run {match[1]} not found",
                    )
                return 200, self._public(run)
            match = re.fullmatch(rf"{PREFIX}/pipelines/([^/:]+)", path)
            if match and method == "GET":
                pipeline = self.pipelines.get(match[1])
                if pipeline is None:
                    raise ApiError(
                        NOT_FOUND,
                        f"Failed to get a pipeline: ResourceNotFoundError: Pipeline {match[1]} not found",
                    )
                return 200, dict(pipeline)
            if path.startswith(f"{PREFIX}/"):
                raise ApiError(UNIMPLEMENTED, f"the KFP stand-in does not implement {method} {path}")
            raise ApiError(NOT_FOUND, "Not Found")

    def _seconds(self, stamp: str) -> int:
        return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())

    @staticmethod
    def _name_filter(raw: str | None) -> str | None:
        """The one filter kfp.Client sends on these paths: display_name EQUALS <name>."""
        if not raw:
            return None
        predicates = json.loads(raw).get("predicates", [])
        if (
            len(predicates) == 1
            and predicates[0].get("key") == "display_name"
            and predicates[0].get("operation") in (1, "EQUALS")
        ):
            p = predicates[0]
            return str(p.get("stringValue", p.get("string_value", "")))
        raise ApiError(UNIMPLEMENTED, f"the KFP stand-in does not implement the filter {raw}")

    def _list_experiments(self, query: Mapping[str, str]) -> dict[str, Any]:
        name = self._name_filter(query.get("filter"))
        found = [e for e in self.experiments.values() if name is None or e["display_name"] == name]
        return {"experiments": found, "total_size": len(found)} if found else {}

    def _create_experiment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(body) - EXPERIMENT_FIELDS
        if unknown:
            raise ApiError(INVALID_ARGUMENT, f'proto: unknown field "{sorted(unknown)[0]}"')
        name = str(body.get("display_name") or "")
        if not name:
            raise ApiError(
                INVALID_ARGUMENT,
                "Failed to create an experiment: " + invalid_input("Experiment must have a non-empty name"),
            )
        if any(e["display_name"] == name for e in self.experiments.values()):
            raise ApiError(6, f"Failed to create an experiment: Already exist error: {name}")
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": name,
            "created_at": _timestamp(self.now),
            "storage_state": "AVAILABLE",
            **({"namespace": body["namespace"]} if body.get("namespace") else {}),
            **({"description": body["description"]} if body.get("description") else {}),
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _create_run(self, body: Mapping[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        unknown = set(body) - RUN_FIELDS
        if unknown:
            raise ApiError(INVALID_ARGUMENT, f'proto: unknown field "{sorted(unknown)[0]}"')
        if body.get("plugins_output") is not None:
            raise ApiError(
                INVALID_ARGUMENT,
                "plugins_output is server-owned and populated exclusively via plugin lifecycle hooks",
            )
        if not body.get("display_name"):
            raise ApiError(
                INTERNAL,
                "CreateJob(job.ToV2())Failed to create a run due to conversion error: InternalServerError: "
                "Failed to convert a API run detail to its internal representation: "
                + invalid_input("Run name cannot be empty"),
                "Internal Server Error",
            )
        experiment_id = str(body.get("experiment_id") or query.get("experiment_id") or "")
        if experiment_id and experiment_id not in self.experiments:
            raise ApiError(
                NOT_FOUND,
                "Failed to create a new run: Failed to create a run due to invalid experimentId and "
                f"namespace combination: ResourceNotFoundError: Experiment {experiment_id} not found",
            )
        if not experiment_id:
            experiment_id = self._default_experiment()
        reference = body.get("pipeline_version_reference") or {}
        spec = body.get("pipeline_spec")
        if reference.get("pipeline_version_id"):
            version = self.versions.get(str(reference["pipeline_version_id"]))
            if version is None:
                raise ApiError(
                    INTERNAL,
                    "Failed to create a new run: InternalServerError: Failed to create a run due to error "
                    "fetching manifest: Failed to fetch a template due to error retrieving pipeline version: "
                    f"ResourceNotFoundError: PipelineVersion {reference['pipeline_version_id']} not found",
                    "Internal Server Error",
                )
            spec_for_inputs = version["spec"]
        elif spec:
            spec_for_inputs = spec
        else:
            raise ApiError(
                INTERNAL,
                "Failed to create a new run: InternalServerError: Failed to create a run due to error "
                "fetching manifest: "
                + invalid_input("Failed to fetch a template with an empty pipeline spec manifest"),
                "Internal Server Error",
            )
        runtime = dict(body.get("runtime_config") or {})
        validate_inputs(spec_for_inputs, runtime.get("parameters") or {})
        created = _timestamp(self.now)
        run: dict[str, Any] = {
            "run_id": str(uuid.uuid4()),
            "experiment_id": experiment_id,
            "display_name": body["display_name"],
            "storage_state": "AVAILABLE",
            "created_at": created,
            "scheduled_at": created,
            "finished_at": _timestamp(0),
            "state": "PENDING",
            "state_history": [{"update_time": created, "state": "PENDING"}],
        }
        for key in ("description", "service_account"):
            if body.get(key):
                run[key] = body[key]
        if runtime.get("parameters") or runtime.get("pipeline_root"):
            run["runtime_config"] = {k: v for k, v in runtime.items() if v}
        if reference.get("pipeline_version_id"):
            run["pipeline_version_reference"] = {
                "pipeline_id": self.versions[str(reference["pipeline_version_id"])]["pipeline_id"],
                "pipeline_version_id": reference["pipeline_version_id"],
            }
        else:
            run["pipeline_spec"] = spec
        self.runs[run["run_id"]] = run
        self.experiments[experiment_id]["last_run_created_at"] = created
        return self._public(run)

    def _create_recurring_run(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """What CreateRecurringRun checks (job_server.go, toModelJob in api_converter.go): the name, the
        experiment, max_concurrency in [1, 10], a cron robfig/cron parses (5 or 6 fields, seconds
        first), the pipeline spec and its parameters as for a run."""
        unknown = set(body) - RECURRING_RUN_FIELDS
        if unknown:
            raise ApiError(INVALID_ARGUMENT, f'proto: unknown field "{sorted(unknown)[0]}"')
        name = str(body.get("display_name") or "")
        if not name:
            raise ApiError(
                INVALID_ARGUMENT, invalid_input("Recurring run name is empty. Please specify a valid name")
            )
        experiment_id = str(body.get("experiment_id") or "") or self._default_experiment()
        if experiment_id not in self.experiments:
            raise ApiError(
                NOT_FOUND,
                "Failed to create a recurring run due to invalid experimentId and namespace combination: "
                f"ResourceNotFoundError: Experiment {experiment_id} not found",
            )
        concurrency = int(body.get("max_concurrency") or 0)
        if not 1 <= concurrency <= 10:
            raise ApiError(
                INVALID_ARGUMENT,
                "Failed to create a recurring run due to conversion error: "
                + invalid_input(
                    "Max concurrency of a recurring run must be at least 1 and at most 10. "
                    f"Received {concurrency}"
                ),
            )
        trigger = body.get("trigger") or {}
        cron = (trigger.get("cron_schedule") or {}).get("cron")
        if cron is not None:
            fields = str(cron).split()
            if not str(cron).startswith("@") and not 5 <= len(fields) <= 6:
                raise ApiError(
                    INVALID_ARGUMENT,
                    "Failed to create a recurring run due to conversion error: "
                    + invalid_input(
                        "Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron). "
                        f"Error: Expected 5 to 6 fields, found {len(fields)}: {cron}"
                    ),
                )
        spec = body.get("pipeline_spec")
        if not spec:
            raise ApiError(
                INVALID_ARGUMENT, "the KFP stand-in implements recurring runs of a pipeline spec only"
            )
        runtime = dict(body.get("runtime_config") or {})
        validate_inputs(spec, runtime.get("parameters") or {})
        created = _timestamp(self.now)
        recurring: dict[str, Any] = {
            "recurring_run_id": str(uuid.uuid4()),
            "display_name": name,
            "pipeline_spec": spec,
            "max_concurrency": str(concurrency),  # int64: a string in proto JSON
            "trigger": trigger,
            "mode": body.get("mode") or "MODE_UNSPECIFIED",
            "created_at": created,
            "updated_at": created,
            "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED",
            "experiment_id": experiment_id,
        }
        for key in ("description", "service_account", "no_catchup", "namespace"):
            if body.get(key):
                recurring[key] = body[key]
        if runtime.get("parameters") or runtime.get("pipeline_root"):
            recurring["runtime_config"] = {k: v for k, v in runtime.items() if v}
        self.recurring_runs[recurring["recurring_run_id"]] = recurring
        return self._public(recurring)

    def _list_recurring_runs(self, query: Mapping[str, str]) -> dict[str, Any]:
        found = self._selected(self.recurring_runs.values(), query)
        found.sort(key=lambda r: r["recurring_run_id"])
        size = int(query.get("page_size") or 0) or DEFAULT_PAGE_SIZE
        if len(found) > size:
            raise ApiError(UNIMPLEMENTED, "the KFP stand-in does not page recurring runs")
        # The response's repeated field is `recurringRuns` in the proto itself (not a JSON renaming).
        return {"recurringRuns": [self._public(r) for r in found], "total_size": len(found)} if found else {}

    def _selected(self, items: Iterable[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Runs or recurring runs of the query's experiment (all without one), by its name filter."""
        experiment, name = query.get("experiment_id"), self._name_filter(query.get("filter"))
        return [
            r
            for r in items
            if (experiment is None or r["experiment_id"] == experiment)
            and (name is None or r["display_name"] == name)
        ]

    def _default_experiment(self) -> str:
        for e in self.experiments.values():
            if e["display_name"] == "Default":
                return str(e["experiment_id"])
        return str(self._create_experiment({"display_name": "Default"})["experiment_id"])

    def _list_runs(self, query: Mapping[str, str]) -> dict[str, Any]:
        sort_by = query.get("sort_by", "")
        parts = sort_by.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise ApiError(
                INVALID_ARGUMENT,
                "Failed to list runs: Failed to create list options: "
                + invalid_input(
                    f"Received invalid sort by format '{sort_by}'. Supported format: \"field_name\", "
                    '"field_name desc", or "field_name asc"'
                ),
            )
        key = parts[0] if parts else "run_id"  # by default the key field, as the real server sorts
        if key not in RUN_SORT_FIELDS:
            raise ApiError(
                INVALID_ARGUMENT,
                "Failed to list runs: Failed to create list options: "
                + invalid_input(f"Cannot sort on field {key}. Supported fields {', '.join(RUN_SORT_FIELDS)}"),
            )
        runs = self._selected(self.runs.values(), query)
        # Ties on the sort field are broken by the key field, as the real store's SQL does.
        runs.sort(key=lambda r: r["run_id"])
        runs.sort(key=lambda r: str(r.get(key, "")), reverse=len(parts) == 2 and parts[1] == "desc")
        size = int(query.get("page_size") or 0) or DEFAULT_PAGE_SIZE
        start = _offset(query["page_token"]) if query.get("page_token") else 0
        page = runs[start : start + size]
        answer: dict[str, Any] = {}
        if page:
            answer["runs"] = [self._public(r) for r in page]
        if runs:
            answer["total_size"] = len(runs)
        if start + size < len(runs):
            answer["next_page_token"] = _token(start + size)
        return answer

    @staticmethod
    def _public(run: Mapping[str, Any]) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(run))  # a client never holds the server's state
        return copy

    def run_of(self, run_id: str) -> dict[str, Any]:
        """What the server stored for a run (for assertions)."""
        with self._lock:
            return self._public(self.runs[run_id])


@pytest.fixture(name="kfp_api")
def kfp_api_fixture() -> Iterator[KfpApi]:
    """`kfp_api`: a fresh stand-in KFP API per test, served on 127.0.0.1 from a thread, stopped afterwards.
    A test module imports `kfp_api_fixture` to use it (this module is no conftest)."""
    api = KfpApi().start()
    try:
        yield api
    finally:
        api.stop()
