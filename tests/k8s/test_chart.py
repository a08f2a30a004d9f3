"""The Helm chart (charts/shipyard) against the real API server, and against the application.

What the API server decides is asked of it: every ci scenario renders, lints and applies server-side
with no error and no warning (Pod Security `warn=restricted` included) in the namespace the chart
creates; bad values fail `helm install` with the schema's message and create nothing. What the
application decides is asked of it: the settings ConfigMap loads with `shipyard.settings`, the chart's
settings schema is the application's, and the predictor's command line parses with the server's own
parser into the configuration `shipyard serve` would derive from the same settings. With the real
controllers (kube-controller-manager, scheduler, kwok, KServe), `helm install` ends in a Ready
InferenceService, `helm upgrade` to another version rolls the Deployment, `helm test` passes and
`helm uninstall` leaves nothing behind; without the chart's storage initializer, Pod Security refuses
the predictor's Pods.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.k8s.cluster import KUBECTL, Cluster, ToolError, api_error_body
from tests.support import require

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "shipyard"
CI_DIR = CHART / "ci"
SCENARIOS = {p.name.removesuffix("-values.yaml"): p for p in sorted(CI_DIR.glob("*-values.yaml"))}
ENVIRONMENTS = ("dev", "staging", "prod")
HASH_A = "a" * 64
HASH_B = "b" * 64
KSERVE_GROUP = "serving.kserve.io"
# Objects in a namespace that are not the chart's (created by the fixture or the control plane).
BASELINE_OBJECTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


# --- helpers shared with test_overlays.py and test_rbac.py -------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def load_values(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


def write_values(directory: Path, name: str, values: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubectl(
    k8s: Cluster, *args: str, stdin: str | None = None, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """kubectl with its stderr (where warnings go) kept; the fixture's k8s.kubectl drops it."""
    home = k8s.workdir / "home"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or k8s.kubeconfig), "KUBECACHEDIR": str(home / "kc")}
    result = subprocess.run(
        [str(KUBECTL), *args], input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise ToolError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def apply_server_side(
    k8s: Cluster,
    docs: list[dict[str, Any]],
    *,
    kubeconfig: Path | None = None,
    manager: str = "shipyard-test",
) -> str:
    """Server-side apply; returns kubectl's stderr (warnings). Fails on any error."""
    text = yaml.safe_dump_all(docs, sort_keys=False)
    result = kubectl(
        k8s,
        "apply",
        "--server-side",
        f"--field-manager={manager}",
        "-f",
        "-",
        stdin=text,
        kubeconfig=kubeconfig,
    )
    return result.stderr


def wait_reconciled(k8s: Cluster, docs: list[dict[str, Any]]) -> None:
    """Wait until KServe's controller has observed each InferenceService's current generation: it
    keeps writing to the object right after an apply, and a diff taken during that is a race, not
    drift between git and the cluster."""

    def reconciled(obj: dict[str, Any]) -> bool:
        return bool(obj.get("status", {}).get("observedGeneration") == obj["metadata"].get("generation"))

    for doc in docs:
        if doc["kind"] == "InferenceService":
            meta = doc["metadata"]
            k8s.wait_for("inferenceservice", meta["name"], meta.get("namespace"), reconciled, timeout_s=60)


def diff_server_side(k8s: Cluster, docs: list[dict[str, Any]], manager: str = "shipyard-test") -> str:
    """What applying `docs` again would change (`kubectl diff --server-side`); "" when nothing.

    Compares against the live objects, whatever controllers wrote into their status meanwhile."""
    text = yaml.safe_dump_all(docs, sort_keys=False)
    result = kubectl(
        k8s, "diff", "--server-side", f"--field-manager={manager}", "-f", "-", stdin=text, check=False
    )
    if result.returncode > 1:
        raise ToolError(f"kubectl diff exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def render(
    k8s: Cluster,
    release: str,
    release_namespace: str,
    values: list[Path],
    *extra: str,
    show_only: str | None = None,
) -> list[dict[str, Any]]:
    """`helm template` (tests included) of the chart, as objects."""
    args = ["template", release, str(CHART), "--namespace", release_namespace]
    for path in values:
        args += ["-f", str(path)]
    if show_only:
        args += ["--show-only", show_only]
    return docs_of(k8s.helm(*args, *extra))


def scenario_values(scenario: str, target: str, **overrides: Any) -> dict[str, Any]:
    """A ci scenario's values moved into namespace `target` (each test gets its own), plus overrides."""
    values = load_values(SCENARIOS[scenario])
    values["settings"]["namespace"] = target
    return merge(values, overrides)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, (
        f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in matches]}"
    )
    return matches[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template the chart renders, by kind/name."""
    specs = {}
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "CronJob":
            specs[f"{kind}/{name}"] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind in ("Job", "Deployment"):
            specs[f"{kind}/{name}"] = doc["spec"]["template"]["spec"]
        elif kind == "Pod":
            specs[f"{kind}/{name}"] = doc["spec"]
    return specs


def crd_served(k8s: Cluster, name: str) -> bool:
    try:
        crd = client.ApiextensionsV1Api(k8s.api_client).read_custom_resource_definition(name)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))


def wait_for(
    what: str, condition: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(interval_s)


CONTROLLERS = ("kube-controller-manager", "kube-scheduler", "kwok", "kserve-manager")


def controllers_running(k8s: Cluster) -> bool:
    """Whether the fixture runs the real controllers (its `logs` names every component it started)."""
    components = getattr(k8s, "logs", {})
    return all(name in components for name in CONTROLLERS)


def require_controllers(k8s: Cluster) -> None:
    require(
        controllers_running(k8s),
        f"the k8s fixture does not run {', '.join(CONTROLLERS)}: an InferenceService cannot become "
        "Ready on a bare apiserver",
    )


@pytest.fixture(scope="session")
def storage_container_crd(k8s: Cluster) -> None:
    """The chart's ClusterStorageContainer needs KServe's CRD (config/crd/full/clusterstoragecontainer)."""
    require(
        crd_served(k8s, f"clusterstoragecontainers.{KSERVE_GROUP}"),
        "the k8s fixture does not install KServe's ClusterStorageContainer CRD: rebuild .tools "
        "(make k8s-tools)",
    )


@pytest.fixture(scope="session")
def monitoring_crds(k8s: Cluster) -> Iterator[None]:
    """Minimal Prometheus Operator CRDs (the fixture installs none): structure only, no schema."""
    extensions = client.ApiextensionsV1Api(k8s.api_client)
    created = []
    for plural, kind in (("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule")):
        name = f"{plural}.monitoring.coreos.com"
        if crd_served(k8s, name):
            continue
        extensions.create_custom_resource_definition(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "scope": "Namespaced",
                    "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    ],
                },
            }
        )
        created.append(name)
    for name in created:
        wait_for(f"CRD {name}", lambda n=name: crd_served(k8s, n))  # type: ignore[misc]
    yield
    for name in created:
        extensions.delete_custom_resource_definition(name)


def needs_monitoring(values: dict[str, Any]) -> bool:
    metrics = values.get("metrics", {})
    return any(metrics.get(k, {}).get("enabled") for k in ("serviceMonitor", "prometheusRule"))


def restricted_namespace(k8s: Cluster, name: str) -> str:
    """A namespace labelled like the chart's (for what the chart does not create itself)."""
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    client.CoreV1Api(k8s.api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    return name


def delete_namespace(k8s: Cluster, name: str) -> None:
    try:
        client.CoreV1Api(k8s.api_client).delete_namespace(name)
    except client.ApiException as error:
        if error.status != 404:
            raise


def delete_storage_containers(k8s: Cluster, names: list[str]) -> None:
    custom = client.CustomObjectsApi(k8s.api_client)
    for name in names:
        try:
            custom.delete_cluster_custom_object(KSERVE_GROUP, "v1alpha1", "clusterstoragecontainers", name)
        except client.ApiException as error:
            if error.status != 404:
                raise


def settings_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and "settings.yaml" in d.get("data", {}))
    settings: dict[str, Any] = yaml.safe_load(config_map["data"]["settings.yaml"])
    return settings


def sync_script() -> Any:
    spec = importlib.util.spec_from_file_location("sync_settings", CHART / "hack" / "sync_settings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the chart on its own -----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict(k8s: Cluster, scenario: str) -> None:
    out = k8s.helm(
        "lint", "--strict", str(CHART), "-f", str(SCENARIOS[scenario]), "--namespace", "shipyard-system"
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_scenarios_cover_every_environment_and_a_minimal_install() -> None:
    assert set(SCENARIOS) >= {*ENVIRONMENTS, "minimal"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_values_carry_the_environment_settings_file(env: str) -> None:
    from shipyard.settings import load_settings

    values = load_values(SCENARIOS[env])
    assert values["settings"] == yaml.safe_load((REPO / "environments" / f"{env}.yaml").read_text()), (
        f"ci/{env}-values.yaml `settings` is not environments/{env}.yaml: "
        "run .venv/bin/python charts/shipyard/hack/sync_settings.py"
    )
    assert load_settings(path=REPO / "environments" / f"{env}.yaml").namespace == f"shipyard-{env}"


def test_values_schema_embeds_the_application_settings_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["settings"] == sync_script().settings_subschema(), (
        "charts/shipyard/values.schema.json is stale: "
        "run .venv/bin/python charts/shipyard/hack/sync_settings.py"
    )


def test_values_schema_allows_no_unknown_keys() -> None:
    """additionalProperties: false on every object, except where the application itself is open."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("additionalProperties", True) is True:
                open_objects.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(schema, "")
    assert schema["additionalProperties"] is False
    # The project's generator options (open in shipyard.settings too) and a V1 request's rows (their
    # fields are the served project's, not the chart's).
    assert open_objects == [
        "/properties/settings/properties/data",
        "/properties/tests/properties/request/properties/instances/items",
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_settings_configmap_is_what_the_application_loads(
    k8s: Cluster, scenario: str, tmp_path: Path
) -> None:
    from shipyard.settings import Settings, load_settings

    values = load_values(SCENARIOS[scenario])
    docs = render(k8s, "shipyard-x", "shipyard-system", [SCENARIOS[scenario]])
    rendered = tmp_path / "settings.yaml"
    config_map = find(docs, "ConfigMap", "shipyard-settings" if scenario in ENVIRONMENTS else None)
    rendered.write_text(config_map["data"]["settings.yaml"])
    loaded = load_settings(path=rendered)
    assert loaded == Settings.model_validate(values["settings"])
    if scenario in ENVIRONMENTS:
        assert loaded == load_settings(path=REPO / "environments" / f"{scenario}.yaml")
    # Every Shipyard pod mounts it where SHIPYARD_SETTINGS points.
    runtime = find(docs, "ServingRuntime")
    pods = {"ServingRuntime": runtime["spec"]["containers"][0]}
    for key, spec in pod_specs(docs).items():
        if not key.startswith("Job/"):
            pods[key] = spec["containers"][0]
    for key, container in pods.items():
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert env["SHIPYARD_SETTINGS"] == "/etc/shipyard/settings.yaml", key
        assert mounts["/etc/shipyard"] == "settings", key


def _hardened(container: dict[str, Any], where: str) -> list[str]:
    problems = []
    sc = container.get("securityContext", {})
    expected = {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for key, value in expected.items():
        if sc.get(key) != value:
            problems.append(f"{where}: securityContext.{key} is {sc.get(key)!r}, expected {value!r}")
    if "/tmp" not in {m["mountPath"] for m in container.get("volumeMounts", [])}:
        problems.append(f"{where}: no /tmp mount")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(kind, {}):
                problems.append(f"{where}: no {kind}.{resource}")
    return problems


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_container_is_hardened(k8s: Cluster, scenario: str) -> None:
    """What Pod Security `restricted` does not check: read-only root + emptyDir /tmp, requests+limits."""
    values = load_values(SCENARIOS[scenario])
    extra = (
        []
        if values.get("inferenceService", {}).get("enabled", True)
        else ["--set", "inferenceService.enabled=true", "--set", f"model.contentHash={HASH_A}"]
    )
    docs = render(k8s, "shipyard-x", "shipyard-system", [SCENARIOS[scenario]], *extra)
    problems: list[str] = []
    for key, spec in pod_specs(docs).items():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert "emptyDir" in volumes.get("tmp", {}), f"{key}: no emptyDir tmp volume"
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec.get("automountServiceAccountToken") is False, f"{key} mounts an API token"
        for container in spec["containers"] + spec.get("initContainers", []):
            problems += _hardened(container, f"{key}/{container['name']}")
    runtime = find(docs, "ServingRuntime")
    assert {v["name"]: v for v in runtime["spec"]["volumes"]}["tmp"]["emptyDir"]
    problems += _hardened(runtime["spec"]["containers"][0], "ServingRuntime")
    storage = find(docs, "ClusterStorageContainer")
    problems += _hardened(storage["spec"]["container"], "ClusterStorageContainer")
    isvc = find(docs, "InferenceService")
    assert isvc["spec"]["predictor"]["securityContext"]["runAsNonRoot"] is True
    assert isvc["spec"]["predictor"]["automountServiceAccountToken"] is False
    resources = isvc["spec"]["predictor"]["model"]["resources"]
    assert {k: sorted(v) for k, v in resources.items()} == {
        "requests": ["cpu", "memory"],
        "limits": ["cpu", "memory"],
    }
    assert problems == []


def test_names_stay_within_63_characters(k8s: Cluster) -> None:
    release = "a-very-long-release-name-that-a-platform-team-might-choose-for-shipyard-prod"
    docs = render(k8s, release[:53], "shipyard-system", [SCENARIOS["minimal"]])
    dns_label = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    for doc in docs:
        name = doc["metadata"]["name"]
        assert dns_label.match(name), f"{doc['kind']} name {name!r} is not a DNS label of at most 63"
        for key, value in doc["metadata"].get("labels", {}).items():
            assert len(value) <= 63, f"{doc['kind']}/{name} label {key}={value!r} is longer than 63"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_network_policies_deny_by_default_and_allow_only_the_flows(k8s: Cluster, scenario: str) -> None:
    values = load_values(SCENARIOS[scenario])
    docs = render(k8s, "shipyard-x", "shipyard-system", [SCENARIOS[scenario]])
    fullname = values.get("fullnameOverride") or "shipyard-x"
    policies = {
        d["metadata"]["name"].removeprefix(f"{fullname}-"): d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
    }
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["dns"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]
    assert dns["egress"][0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    for name, spec in policies.items():
        for rule in spec.get("ingress", []):
            assert rule.get("from") and rule.get("ports"), (
                f"{name}: an ingress rule open to every source or port"
            )
        for rule in spec.get("egress", []):
            assert rule.get("to"), f"{name}: an egress rule open to every destination"

    port = int(values.get("settings", {}).get("serving", {}).get("port", 8080))
    predictor = policies["predictor"]
    assert predictor["podSelector"] == {
        "matchLabels": {
            "serving.kserve.io/inferenceservice": values["model"]["name"],
            "component": "predictor",
        }
    }
    assert [r["ports"] for r in predictor["ingress"]] == [[{"protocol": "TCP", "port": port}]]
    sources = predictor["ingress"][0]["from"]
    network = values.get("networkPolicy", {})
    assert sources[1:] == network.get("predictorClients", []) + network.get("metricsScrapers", [])
    # The helm test pod may call the predictor, and the predictor accepts it.
    smoke = policies["smoke-test"]
    assert sources[0]["podSelector"]["matchLabels"].items() <= {**smoke["podSelector"]["matchLabels"]}.items()
    assert smoke["egress"] == [
        {"to": [{"podSelector": predictor["podSelector"]}], "ports": [{"protocol": "TCP", "port": port}]}
    ]
    egress = network.get("egress", {})
    data = egress.get("objectStorage", []) + egress.get("onlineStore", []) + egress.get("featureRegistry", [])
    assert predictor.get("egress", []) == data
    if scenario in ENVIRONMENTS:
        assert egress["objectStorage"] and egress["onlineStore"] and egress["featureRegistry"]
        assert policies["feast-materialize"]["egress"] == data
        assert policies["pipelines"]["egress"] == data + egress["pipelines"]


# --- the application's view of what the chart renders ------------------------------------------------


def _predictor_argv(runtime: dict[str, Any], isvc: dict[str, Any]) -> list[str]:
    """The predictor's command line as KServe 0.20 and the kubelet build it: the runtime's args, then
    the InferenceService's (concatenated), {{.Name}} from the InferenceService, then $(VAR) from the
    merged env."""
    container = runtime["spec"]["containers"][0]
    model = isvc["spec"]["predictor"]["model"]
    env = {e["name"]: e.get("value", "") for e in container.get("env", []) + model.get("env", [])}
    assert container["command"] == ["python", "-m", "serving"]
    argv = []
    for arg in container["args"] + model.get("args", []):
        arg = arg.replace("{{.Name}}", isvc["metadata"]["name"])
        argv.append(re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], arg))
    return argv


class _FakeRegistry:
    """What serving.server.config_from_settings needs of a registry: the version, already fetched."""

    content_hash = HASH_A

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def get(self, version: str) -> Any:
        return type("Entry", (), {"version": version, "content_hash": self.content_hash})()

    def champion(self) -> Any:
        return self.get("v1")

    def fetch(self, version: str, cache: Path) -> Path:
        return Path("/mnt/models")


SERVING_OPTIONS = {
    "settings": {
        "serving": {
            "threads": 3,
            "max_body_bytes": 2_097_152,
            "feature_lookup": False,
            "grace_period_seconds": 12.5,
            "header_timeout_seconds": 4,
            "body_timeout_seconds": 9,
            "enable_docs": True,
            "request_log": {
                "directory": "/tmp/log",
                "batch": 64,
                "flush_seconds": 0.5,
                "max_record_bytes": 8192,
                "text": "sha256",
                "retention_days": 7,
                "retention_bytes": 1_073_741_824,
            },
        }
    }
}


@pytest.mark.parametrize("case", [*sorted(SCENARIOS), "all-serving-options"])
def test_predictor_command_line_is_what_shipyard_serve_derives(
    k8s: Cluster, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime's flags, parsed by the server's own parser, configure exactly what `shipyard serve`
    derives from the same settings file (serving.server.config_from_settings): no setting is dropped
    on the way into the cluster, and no flag the server does not know is passed."""
    from serving import server
    from shipyard.settings import Settings

    scenario = "prod" if case == "all-serving-options" else case
    values = merge(load_values(SCENARIOS[scenario]), SERVING_OPTIONS if case == "all-serving-options" else {})
    values = merge(
        values, {"inferenceService": {"enabled": True}, "model": {"version": "v1", "contentHash": HASH_A}}
    )
    values_file = write_values(tmp_path, "values", values)
    docs = render(k8s, "shipyard-x", "shipyard-system", [values_file])
    argv = _predictor_argv(find(docs, "ServingRuntime"), find(docs, "InferenceService"))
    got = server.parse_args(argv)

    monkeypatch.setattr("shipyard.registry.ModelRegistry", _FakeRegistry)
    settings = Settings.model_validate(values["settings"])
    expected = server.config_from_settings(settings, "v1")
    assert got.model_name == values["model"]["name"] == settings.spec.name
    # The server's port is the runtime's container port and the probes'; the model directory is where
    # KServe's storage initializer puts storageUri.
    assert dataclasses.replace(got, model_name=expected.model_name) == expected
    container = find(docs, "ServingRuntime")["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == got.port
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": got.port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": got.port}
    # The request log has its own emptyDir, big enough for its retention budget.
    if got.request_log_dir is not None:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in find(docs, "ServingRuntime")["spec"]["volumes"]}
        size = _bytes(volumes[mounts[str(got.request_log_dir)]]["emptyDir"]["sizeLimit"])
        assert size >= (got.request_log_retention_bytes or 0) * 1.25


def _bytes(quantity: str | int) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    text = str(quantity)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(text.removesuffix(suffix)) * factor
    return int(text)


# --- against the API server ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_applies_server_side_with_no_warning(
    k8s: Cluster,
    namespace: str,
    scenario: str,
    tmp_path: Path,
    storage_container_crd: None,
    request: pytest.FixtureRequest,
) -> None:
    """`helm template` of every scenario, applied server-side: no error, and no warning at all, so none
    from Pod Security either (the namespace the chart creates warns on `restricted` for the pod
    templates of workloads); a second apply changes nothing."""
    target = unique("t-chart")
    values = scenario_values(scenario, target)
    if needs_monitoring(values):
        request.getfixturevalue("monitoring_crds")
    docs = render(k8s, f"shipyard-{scenario}", namespace, [write_values(tmp_path, scenario, values)])
    storage = [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterStorageContainer"]
    try:
        warnings = apply_server_side(
            k8s, [d for d in docs if "helm.sh/hook" not in d["metadata"].get("annotations", {})]
        )
        assert warnings == ""
        # The test hook too (helm creates it on `helm test`): a Job, so Pod Security warns on it.
        hooks = [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
        assert hooks and apply_server_side(k8s, hooks) == ""

        ns = client.CoreV1Api(k8s.api_client).read_namespace(target)
        for mode in ("enforce", "audit", "warn"):
            assert ns.metadata.labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        wait_reconciled(k8s, docs)
        assert diff_server_side(k8s, docs) == "", "applying the same render again would change objects"

        # Control: the same apply path reports a pod template that is not `restricted`.
        control = copy.deepcopy(next(d for d in docs if d["kind"] == "Job"))
        control["metadata"] = {"name": "not-restricted", "namespace": target}
        control["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {
            "allowPrivilegeEscalation": True
        }
        assert 'would violate PodSecurity "restricted:latest"' in apply_server_side(k8s, [control])
    finally:
        delete_namespace(k8s, target)
        delete_storage_containers(k8s, storage)


def _kserve_predictor_pod(docs: list[dict[str, Any]], kserve_defaults: dict[str, Any]) -> dict[str, Any]:
    """The predictor Pod KServe 0.20 builds from the chart's objects (a stand-in for the controller,
    used to ask Pod Security on a bare apiserver; the controller tests below do it for real):
    pod fields from the InferenceService's predictor, volumes from the ServingRuntime, the runtime
    container merged with the predictor's model container, and KServe's storage-initializer init
    container (its defaults) merged with the chart's ClusterStorageContainer container."""
    isvc = find(docs, "InferenceService")
    runtime = find(docs, "ServingRuntime")
    storage = find(docs, "ClusterStorageContainer")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    container = copy.deepcopy(runtime["spec"]["containers"][0])
    container["args"] = container["args"] + model.get("args", [])
    container["env"] = (
        container["env"]
        + model.get("env", [])
        + [{"name": "INFERENCE_SERVICE_NAME", "value": isvc["metadata"]["name"]}]
    )
    container["resources"] = model["resources"]
    container["args"] = [a.replace("{{.Name}}", isvc["metadata"]["name"]) for a in container["args"]]
    container["volumeMounts"] = container["volumeMounts"] + [
        {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}
    ]
    init = {**kserve_defaults, **copy.deepcopy(storage["spec"]["container"])}
    init["args"] = [model["storageUri"], "/mnt/models"]
    init["volumeMounts"] = [
        *init.get("volumeMounts", []),
        {"name": "kserve-provision-location", "mountPath": "/mnt/models"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{isvc['metadata']['name']}-predictor-stand-in",
            "namespace": isvc["metadata"]["namespace"],
        },
        "spec": {
            "serviceAccountName": predictor["serviceAccountName"],
            "automountServiceAccountToken": predictor["automountServiceAccountToken"],
            "securityContext": predictor["securityContext"],
            "terminationGracePeriodSeconds": predictor["terminationGracePeriodSeconds"],
            "initContainers": [init],
            "containers": [container],
            "volumes": runtime["spec"]["volumes"] + [{"name": "kserve-provision-location", "emptyDir": {}}],
        },
    }


def test_predictor_pod_is_admitted_by_pod_security(
    k8s: Cluster, namespace: str, tmp_path: Path, storage_container_crd: None
) -> None:
    """Pod Security enforces on Pods only, which the bare apiserver never creates from an
    InferenceService; so the Pod KServe would build is created here (dry run). Control: KServe's own
    storage initializer, without the chart's ClusterStorageContainer, is rejected."""
    target = unique("t-psa")
    values_file = write_values(tmp_path, "values", scenario_values("minimal", target))
    docs = render(k8s, "shipyard-psa", namespace, [values_file])
    storage = [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterStorageContainer"]
    core = client.CoreV1Api(k8s.api_client)
    kserve_defaults = {
        "name": "storage-initializer",
        "image": "kserve/storage-initializer:latest",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "requests": {"cpu": "100m", "memory": "100Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
    }
    try:
        apply_server_side(k8s, docs)
        pod = _kserve_predictor_pod(docs, kserve_defaults)
        admitted = core.create_namespaced_pod(target, pod, dry_run="All")
        assert admitted.spec.init_containers[0].security_context.allow_privilege_escalation is False

        unhardened = copy.deepcopy(pod)
        unhardened["spec"]["initContainers"][0] = {
            **kserve_defaults,
            "args": pod["spec"]["initContainers"][0]["args"],
        }
        with pytest.raises(client.ApiException) as rejected:
            core.create_namespaced_pod(target, unhardened, dry_run="All")
        assert rejected.value.status == 403
        message = api_error_body(rejected.value)["message"]
        assert 'violates PodSecurity "restricted:latest"' in message and "storage-initializer" in message
    finally:
        delete_namespace(k8s, target)
        delete_storage_containers(k8s, storage)


def test_without_the_chart_storage_initializer_restricted_rejects_the_predictor(
    k8s: Cluster, namespace: str, tmp_path: Path
) -> None:
    """Why the chart ships a ClusterStorageContainer, with the real controllers: with KServe's default
    storage initializer (storageInitializer.create=false) the ReplicaSet's Pods are refused by Pod
    Security in the `restricted` namespace, and the InferenceService never becomes Ready."""
    require_controllers(k8s)
    target = unique("t-default-si")
    values = scenario_values(
        "minimal", target, storageInitializer={"create": False}, model={"contentHash": HASH_A}
    )
    try:
        k8s.helm(
            "install",
            "shipyard-default-si",
            str(CHART),
            "--namespace",
            namespace,
            "-f",
            str(write_values(tmp_path, "v", values)),
        )
        isvc = find(
            render(k8s, "shipyard-default-si", namespace, [write_values(tmp_path, "v", values)]),
            "InferenceService",
        )
        assert "storageContainerName" not in isvc["spec"]["predictor"]

        def refused() -> str | None:
            for rs in k8s.list_objects("ReplicaSet", target):
                for c in rs.get("status", {}).get("conditions", []):
                    if c["type"] == "ReplicaFailure" and "violates PodSecurity" in c.get("message", ""):
                        return str(c["message"])
            return None

        message = wait_for("the ReplicaSet to report Pod Security's refusal", refused, timeout_s=60)
        assert "storage-initializer" in message
        assert not isvc_ready(k8s, target, "ticket-router")
    finally:
        k8s.helm("uninstall", "shipyard-default-si", "--namespace", namespace, timeout_s=180)
        delete_namespace(k8s, target)


BAD_VALUES = [
    pytest.param({"replicas": 2}, "additional properties 'replicas' not allowed", id="unknown-top-level-key"),
    pytest.param(
        {"inferenceService": {"replica": 2}},
        "at '/inferenceService': additional properties 'replica' not allowed",
        id="unknown-nested-key",
    ),
    pytest.param(
        {"settings": {"serving": {"treads": 2}}},
        "at '/settings/serving': additional properties 'treads' not allowed",
        id="unknown-settings-key",
    ),
    pytest.param(
        {"inferenceService": {"minReplicas": "two"}},
        "at '/inferenceService/minReplicas': got string, want integer",
        id="wrong-type",
    ),
    pytest.param(
        {"settings": {"promote": "yes"}},
        "at '/settings/promote': got string, want boolean",
        id="wrong-settings-type",
    ),
    pytest.param(
        {"model": {"contentHash": None}},
        "at '/model/contentHash': '' does not match pattern '^[0-9a-f]{64}$'",
        id="missing-content-hash",
    ),
    pytest.param(
        {"model": {"contentHash": "v3"}},
        "at '/model/contentHash': 'v3' does not match pattern",
        id="not-a-content-hash",
    ),
    pytest.param(
        {"inferenceService": {"resources": {"limits": {"memory": "2 GB"}}}},
        "at '/inferenceService/resources/limits/memory'",
        id="not-a-quantity",
    ),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES)
def test_bad_values_fail_helm_install_with_the_schema_message(
    k8s: Cluster, namespace: str, tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    target = unique("t-bad")
    values = scenario_values("minimal", target)
    values = merge(values, override)
    if override.get("model", {}).get("contentHash", "") is None:
        del values["model"]["contentHash"]
    with pytest.raises(ToolError) as failed:
        k8s.helm(
            "install",
            "bad",
            str(CHART),
            "--namespace",
            namespace,
            "-f",
            str(write_values(tmp_path, "bad", values)),
        )
    assert "values don't meet the specifications of the schema(s)" in str(failed.value)
    assert message in str(failed.value)
    # Nothing was created: no release, no namespace.
    assert json.loads(k8s.helm("list", "--all", "--namespace", namespace, "--output", "json")) == []
    with pytest.raises(client.ApiException) as missing:
        client.CoreV1Api(k8s.api_client).read_namespace(target)
    assert missing.value.status == 404


INCONSISTENT_VALUES = [
    pytest.param(
        {"servingRuntime": {"secretEnv": ["FEAST_REDIS_CONNECTION"]}},
        "servingRuntime.secretEnv: FEAST_REDIS_CONNECTION is not in settings.secrets",
        id="credential-not-in-settings",
    ),
    pytest.param(
        {"settings": {"serving": {"host": "127.0.0.1"}}},
        "settings.serving.host: the predictor must listen on the pod's address",
        id="loopback-host",
    ),
    pytest.param(
        {"settings": {"model_registry": ".shipyard/models"}},
        "settings.model_registry: a cluster serves versions from object storage",
        id="local-registry",
    ),
    pytest.param(
        {"settings": {"serving": {"grace_period_seconds": 45}}},
        "must be below servingRuntime.terminationGracePeriodSeconds",
        id="drain-longer-than-grace",
    ),
]


@pytest.mark.parametrize(("override", "message"), INCONSISTENT_VALUES)
def test_inconsistent_values_fail_with_a_message(
    k8s: Cluster, tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    values = merge(scenario_values("minimal", "shipyard-demo"), override)
    with pytest.raises(ToolError) as failed:
        render(k8s, "bad", "shipyard-system", [write_values(tmp_path, "bad", values)])
    assert message in str(failed.value)


def test_namespace_the_release_lives_in_cannot_be_created_by_it(k8s: Cluster, tmp_path: Path) -> None:
    values_file = write_values(tmp_path, "v", scenario_values("minimal", "shipyard-demo"))
    with pytest.raises(ToolError) as failed:
        render(k8s, "demo", "shipyard-demo", [values_file])
    assert "namespace.create: the release must be installed in another namespace than shipyard-demo" in str(
        failed.value
    )
    docs = render(k8s, "demo", "shipyard-demo", [values_file], "--set", "namespace.create=false")
    assert not [d for d in docs if d["kind"] == "Namespace"]
    assert {
        d["metadata"].get("namespace") for d in docs if d["kind"] not in ("ClusterStorageContainer",)
    } == {"shipyard-demo"}


# --- the helm test's check, against a real model server --------------------------------------------


def test_smoke_test_script_passes_on_the_right_version_and_fails_on_another(
    k8s: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The helm test Job's script, run against a real Shipyard server (a small trained stack): it passes
    when the server serves the expected content hash and version, and fails when it serves another."""
    from tests.integration.serving_stack import MODEL, build_stack, known_entities, start_server

    stack = build_stack(tmp_path_factory.mktemp("smoke-stack"), customers=200, tickets=2000)
    server = start_server(stack, tmp_path_factory.mktemp("smoke-server"))
    try:
        instance = {"customer_id": known_entities(stack, 1)[0], "ticket_text": "I cannot log in"}
        values = scenario_values("minimal", "shipyard-demo")
        values["model"].update(version=stack.version, contentHash=stack.content_hash)
        values["tests"] = {"request": {"instances": [instance]}}
        job = find(
            render(
                k8s,
                "demo",
                "shipyard-system",
                [write_values(tmp_path_factory.mktemp("v"), "v", values)],
                show_only="templates/tests/smoke-test.yaml",
            ),
            "Job",
        )
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PREDICTOR_URL"] == f"http://{MODEL}-predictor.shipyard-demo.svc"
        assert json.loads(env["REQUEST"]) == {"instances": [instance]}

        def run(**overrides: str) -> subprocess.CompletedProcess[str]:
            script_env = {**os.environ, **env, "PREDICTOR_URL": server.url, **overrides}
            return subprocess.run(
                [sys.executable, "-c", container["args"][0]],
                env=script_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        ok = run()
        assert ok.returncode == 0, ok.stderr
        assert f"ok: {MODEL} serves {stack.content_hash[:12]}" in ok.stdout
        wrong = run(CONTENT_HASH=HASH_B)
        assert wrong.returncode != 0 and f'not serving content_hash="{HASH_B}"' in wrong.stderr
        relabelled = run(MODEL_VERSION="v999")
        assert relabelled.returncode != 0 and "expected v999" in relabelled.stderr
    finally:
        server.stop()


# --- with the real controllers ---------------------------------------------------------------------


def _isvc(k8s: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(k8s.api_client).get_namespaced_custom_object(
            KSERVE_GROUP, "v1beta1", namespace, "inferenceservices", name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return obj


def isvc_ready(k8s: Cluster, namespace: str, name: str) -> bool:
    obj = _isvc(k8s, namespace, name)
    conditions = (obj or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def predictor_deployment(k8s: Cluster, namespace: str, name: str) -> Any:
    try:
        return client.AppsV1Api(k8s.api_client).read_namespaced_deployment(f"{name}-predictor", namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def rolled_out(deployment: Any) -> bool:
    status = deployment.status
    want = deployment.spec.replicas or 0
    return bool(
        status.observed_generation == deployment.metadata.generation
        and (status.updated_replicas or 0) == want
        and (status.available_replicas or 0) == want
        and (status.replicas or 0) == want
    )


def container_env(deployment: Any) -> dict[str, str]:
    container = next(c for c in deployment.spec.template.spec.containers if c.name == "kserve-container")
    return {e.name: e.value for e in container.env or [] if e.value is not None}


def namespace_objects(k8s: Cluster, namespace: str) -> set[tuple[str, str]]:
    """Every namespaced object there (all listable kinds), as (kind, name)."""
    kinds = kubectl(k8s, "api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in ("events", "events.events.k8s.io")]
    items = json.loads(
        kubectl(k8s, "get", ",".join(kinds), "-n", namespace, "-o", "json", "--ignore-not-found").stdout
        or '{"items": []}'
    )
    return {(i["kind"], i["metadata"]["name"]) for i in items["items"]}


def test_install_upgrade_test_uninstall_with_the_real_controllers(
    k8s: Cluster, tmp_path: Path, storage_container_crd: None
) -> None:
    """helm install -> KServe reconciles the InferenceService -> Deployment -> (kwok) Pods -> Ready;
    helm upgrade to another version rolls the Deployment; helm test passes; helm uninstall leaves no
    object of the release behind (KServe's Deployment/Service/HPA go with their owner)."""
    require_controllers(k8s)
    target = restricted_namespace(k8s, unique("t-life"))
    release = "shipyard-life"
    name = "ticket-router"
    values = scenario_values(
        "minimal", target, namespace={"create": False}, model={"version": "v1", "contentHash": HASH_A}
    )
    values_file = write_values(tmp_path, "v1", values)
    try:
        k8s.helm("install", release, str(CHART), "--namespace", target, "-f", str(values_file), timeout_s=300)
        wait_for("the InferenceService to become Ready", lambda: isvc_ready(k8s, target, name), timeout_s=120)
        first = wait_for("the predictor Deployment", lambda: predictor_deployment(k8s, target, name))
        assert container_env(first)["SHIPYARD_CONTENT_HASH"] == HASH_A
        # KServe's webhook injected the chart's hardened storage initializer into the real Pods, which
        # Pod Security admitted in the `restricted` namespace.
        pods = (
            client.CoreV1Api(k8s.api_client)
            .list_namespaced_pod(target, label_selector=f"serving.kserve.io/inferenceservice={name}")
            .items
        )
        assert pods
        for pod in pods:
            (init,) = [c for c in pod.spec.init_containers or [] if c.name == "storage-initializer"]
            assert init.args == [f"s3://shipyard-models/demo/versions/{HASH_A}", "/mnt/models"]
            assert init.security_context.read_only_root_filesystem is True
            assert init.security_context.capabilities.drop == ["ALL"]
            secret_env = {e.name: e.value_from.secret_key_ref.key for e in init.env if e.value_from}
            assert secret_env == {"AWS_ACCESS_KEY_ID": "access-key", "AWS_SECRET_ACCESS_KEY": "secret-key"}
        # The chart's PodDisruptionBudget selects the pods KServe labelled.
        pdb = k8s.wait_for(
            "PodDisruptionBudget", f"{release}-predictor", target,
            condition=lambda o: o.get("status", {}).get("expectedPods") == len(pods),
        )  # fmt: skip
        assert pdb["status"]["disruptionsAllowed"] == 1
        installed = namespace_objects(k8s, target)
        assert {
            ("InferenceService", name),
            ("ServingRuntime", "shipyard"),
            ("Deployment", f"{name}-predictor"),
            ("Service", f"{name}-predictor"),
            ("ConfigMap", f"{release}-settings"),
            ("ServiceAccount", f"{release}-predictor"),
            ("NetworkPolicy", f"{release}-default-deny"),
        } <= installed

        values_b = write_values(
            tmp_path, "v2", merge(values, {"model": {"version": "v2", "contentHash": HASH_B}})
        )
        k8s.helm("upgrade", release, str(CHART), "--namespace", target, "-f", str(values_b), timeout_s=300)
        rolled = wait_for(
            "the Deployment to roll out v2",
            lambda: (
                (d := predictor_deployment(k8s, target, name)) is not None
                and container_env(d).get("SHIPYARD_CONTENT_HASH") == HASH_B
                and rolled_out(d)
                and d
            ),
            timeout_s=120,
        )
        assert rolled.metadata.generation > first.metadata.generation
        wait_for(
            "the InferenceService to be Ready on v2", lambda: isvc_ready(k8s, target, name), timeout_s=120
        )
        annotations = (_isvc(k8s, target, name) or {})["metadata"]["annotations"]
        assert annotations["shipyard.io/content-hash"] == HASH_B

        def serving() -> set[str]:
            pods = k8s.list_objects(
                "Pod", target, label_selector=f"serving.kserve.io/inferenceservice={name}"
            )
            return {
                e["value"]
                for p in pods
                for e in next(c for c in p["spec"]["containers"] if c["name"] == "kserve-container")["env"]
                if e["name"] == "SHIPYARD_CONTENT_HASH"
            }

        wait_for("only v2 pods", lambda: serving() == {HASH_B}, timeout_s=120)

        out = k8s.helm("test", release, "--namespace", target, "--timeout", "120s", timeout_s=180)
        assert "Phase:          Succeeded" in out

        k8s.helm("uninstall", release, "--namespace", target, "--wait", "--timeout", "120s", timeout_s=180)
        wait_for(
            "every object of the release (and KServe's, by garbage collection) to be gone",
            lambda: not (namespace_objects(k8s, target) - BASELINE_OBJECTS),
            timeout_s=120,
        )
        storage = client.CustomObjectsApi(k8s.api_client).list_cluster_custom_object(
            KSERVE_GROUP, "v1alpha1", "clusterstoragecontainers"
        )
        assert not [
            s
            for s in storage["items"]
            if s["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == release
        ]
    finally:
        delete_namespace(k8s, target)
