"""`shipyard triage --env staging` against the real control plane (apiserver, controller-manager,
scheduler, kwok, KServe): the record applied with `release apply` is reported as serving the right
model; then an operator points the live InferenceService at another registered version by hand
(`kubectl patch`, around the record), KServe rolls the predictor's Deployment to it, and triage
names the wrong model, field by field, with the kubectl objects and the registry URI as evidence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.serving_stack import Stack, build_stack
from tests.k8s.cluster import KUBECTL, Cluster
from tests.k8s.test_chart import (
    CHART,
    delete_namespace,
    delete_storage_containers,
    require_controllers,
    scenario_values,
    storage_container_crd,  # noqa: F401 (a fixture, requested by name below)
    unique,
    write_values,
)
from tests.release_checkout import Checkout, another_version, make_checkout
from tests.s3server import S3Server

# The predictor pods are kwok's: no image is ever pulled, so any image by digest will do.
IMAGE = "ghcr.io/shipyard-mlops/shipyard@sha256:" + "5" * 64
ISVC = "inferenceservice.serving.kserve.io"


@dataclass
class Staging:
    k8s: Cluster
    stack: Stack
    checkout: Checkout
    namespace: str
    kube_env: dict[str, str]

    def triage(self) -> tuple[int, dict[str, Any]]:
        result = self.checkout.shipyard("triage", "--env", "staging", "--json", env=self.kube_env)
        assert result.returncode in (0, 1), result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        doc: dict[str, Any] = json.loads(result.stdout)
        return result.returncode, doc


def answer(doc: dict[str, Any], question: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in doc["answers"] if a["question"] == question)
    return found


@pytest.fixture(scope="module")
def staging(
    k8s: Cluster, s3: S3Server, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Staging]:
    """A checkout whose staging registry is on MinIO, the chart installed for staging in a fresh
    namespace, and the trained version proposed, committed and applied (Ready, as KServe says)."""
    require_controllers(k8s)
    request.getfixturevalue("storage_container_crd")
    base = tmp_path_factory.mktemp("triage-k8s")
    stack = build_stack(base / "stack", customers=200, tickets=1500)
    namespace = unique("t-triage")
    checkout = make_checkout(base, stack, IMAGE, {"staging": namespace}, s3)
    home = unique("t-tri")
    k8s.kubectl("create", "namespace", home)
    kube_env = {"KUBECONFIG": str(k8s.kubeconfig), "KUBECTL": str(KUBECTL)}
    installed = False
    try:
        values = scenario_values(
            "staging",
            namespace,
            metrics={"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
            feast={"materialize": {"enabled": False}},
            settings={"model_registry": checkout.registries["staging"]},
        )
        k8s.helm(
            "install",
            "triage-staging",
            str(CHART),
            "--namespace",
            home,
            "-f",
            str(write_values(base, "values-staging", values)),
            timeout_s=300,
        )
        installed = True
        proposed = checkout.shipyard(
            "--env", "staging", "release", "propose", "--model", stack.version, "--image", IMAGE, env=kube_env
        )
        assert proposed.returncode == 0, proposed.stdout + proposed.stderr
        checkout.commit(f"staging: {stack.version}")
        applied = checkout.shipyard("--env", "staging", "release", "apply", "--timeout", "180", env=kube_env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        yield Staging(k8s, stack, checkout, namespace, kube_env)
    finally:
        if installed:
            k8s.helm("uninstall", "triage-staging", "--namespace", home, timeout_s=180)
        delete_namespace(k8s, namespace)
        delete_namespace(k8s, home)
        delete_storage_containers(k8s, [f"{namespace}-storage-initializer"])


def test_the_applied_record_is_the_model_that_serves(staging: Staging) -> None:
    code, doc = staging.triage()
    model = answer(doc, "model")
    assert model["verdict"] == "ok", json.dumps(model, indent=2)
    assert code == 0 and doc["healthy"] is True, json.dumps(doc, indent=2)
    checks = {f["check"]: f for f in model["findings"]}
    assert f"get {ISVC} ticket-router" in checks["InferenceService"]["evidence"]
    assert "get deployment ticket-router-predictor" in checks["Deployment"]["evidence"]
    assert checks["registry"]["evidence"].startswith(staging.checkout.registries["staging"])
    pipeline = {f["check"]: f for f in answer(doc, "pipeline")["findings"]}
    assert pipeline["pipeline at HEAD"]["verdict"] == "ok"  # HEAD compiles the recorded pipeline


def test_a_hand_patched_inference_service_is_the_wrong_model(staging: Staging) -> None:
    checkout, k8s, ns = staging.checkout, staging.k8s, staging.namespace
    registry = checkout.registry("staging")
    other = another_version(registry, staging.stack.version, "a hotfix an operator tried by hand")
    entry = registry.get(other)
    isvc = k8s.get("InferenceService", "ticket-router", ns)
    assert isvc is not None
    model = isvc["spec"]["predictor"]["model"]
    env = [
        {**e, "value": entry.content_hash} if e["name"] == "SHIPYARD_CONTENT_HASH" else e
        for e in model.get("env", [])
    ]
    env = [{**e, "value": other} if e["name"] == "SHIPYARD_MODEL_VERSION" else e for e in env]
    patch = {"spec": {"predictor": {"model": {"storageUri": registry.uri(other), "env": env}}}}
    k8s.kubectl("patch", ISVC, "ticket-router", "-n", ns, "--type", "merge", "-p", json.dumps(patch))

    # KServe reconciles the Deployment to what the InferenceService now says.
    deadline = time.monotonic() + 90
    while True:
        deployment = k8s.get("Deployment", "ticket-router-predictor", ns) or {}
        containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        hashes = {
            e.get("value")
            for c in containers
            for e in c.get("env", [])
            if e["name"] == "SHIPYARD_CONTENT_HASH"
        }
        if entry.content_hash in hashes:
            break
        assert time.monotonic() < deadline, f"KServe did not roll the Deployment to {other}: {hashes}"
        time.sleep(1)

    code, doc = staging.triage()
    assert code == 1 and doc["causes"] == ["model"], json.dumps(doc, indent=2)
    findings = {f["check"]: f for f in answer(doc, "model")["findings"]}
    uri = findings["InferenceService storageUri"]
    assert uri["verdict"] == "problem" and registry.uri(other) in uri["message"]
    assert f"{other} in the registry (candidate)" in uri["message"], uri
    assert f"get {ISVC} ticket-router" in uri["evidence"] and "release.yaml" in uri["evidence"]
    assert findings["InferenceService contentHash"]["verdict"] == "problem"
    assert findings["InferenceService model"]["message"].startswith(f"serves model {other}, the record says")
    deployed = findings["Deployment contentHash"]
    assert deployed["verdict"] == "problem" and entry.content_hash in deployed["message"]
    assert "get deployment ticket-router-predictor" in deployed["evidence"]
    # The record's own version is still fine in the registry: the cluster is what is wrong.
    assert findings["registry"]["verdict"] == "ok"

    table = checkout.shipyard("triage", "--env", "staging", env=staging.kube_env)
    assert table.returncode == 1 and "PROBLEM: wrong model deployed?" in table.stdout, table.stdout
