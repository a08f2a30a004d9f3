"""Proof that real controllers reconcile the test cluster: workloads reach Ready because the
controller-manager, the scheduler, kwok and KServe's controller say so, never because a test wrote a
status. Each test would fail with any of them missing.

Nothing runs inside the Pods (kwok fakes their containers), so Ready here means reconciled and
scheduled, not serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.k8s.cluster import DEFAULT_DEPLOYMENT_MODE, Cluster, condition

STORAGE_URI = "gs://kfserving-examples/models/sklearn/1.0/model"
ISVC_TIMEOUT_S = 60.0


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def _sklearn_isvc(name: str, **predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": STORAGE_URI},
                **predictor,
            }
        },
    }


def _custom_container_isvc(name: str) -> dict[str, Any]:
    # What a platform's own predictor image looks like to KServe: a plain container, no runtime.
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "registry.example.com/shipyard/predictor:1.0",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "256Mi"},
                            "limits": {"cpu": "1", "memory": "1Gi"},
                        },
                    }
                ]
            }
        },
    }


def _pods(k8s: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return k8s.list_objects("Pod", namespace, label_selector=selector)


def _is_owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") for r in refs)


def test_deployment_pods_become_running_and_ready_on_kwok_nodes(k8s: Cluster, namespace: str) -> None:
    k8s.apply(_deployment("web", replicas=3), namespace)

    # The Deployment controller's verdict, from the ReplicaSet's Pods being Ready.
    deployment = k8s.wait_for("Deployment", "web", namespace, "Available", timeout_s=60)
    k8s.wait_for("Deployment", "web", namespace, lambda d: d["status"].get("readyReplicas") == 3)

    (replica_set,) = k8s.list_objects("ReplicaSet", namespace, label_selector="app=web")
    assert _is_owned_by(replica_set, deployment)
    pods = _pods(k8s, namespace, "app=web")
    assert len(pods) == 3
    for pod in pods:
        assert _is_owned_by(pod, replica_set)
        assert pod["spec"]["nodeName"] in k8s.nodes  # the scheduler's binding
        assert pod["status"]["phase"] == "Running"  # kwok's doing: no kubelet runs
        assert (condition(pod, "Ready") or {}).get("status") == "True"
        assert pod["status"]["podIP"]


@pytest.mark.parametrize(
    ("make_isvc", "image"),
    [
        pytest.param(_sklearn_isvc, "kserve/sklearnserver:latest", id="sklearn-runtime"),
        pytest.param(
            _custom_container_isvc, "registry.example.com/shipyard/predictor:1.0", id="custom-container"
        ),
    ],
)
def test_inference_service_becomes_ready_by_kserve(
    k8s: Cluster, namespace: str, make_isvc: Callable[[str], dict[str, Any]], image: str
) -> None:
    k8s.apply(make_isvc("iris"), namespace)

    isvc = k8s.wait_for("InferenceService", "iris", namespace, "Ready", timeout_s=ISVC_TIMEOUT_S)

    # KServe's status, in Standard (raw Deployment) mode: no Knative, no Istio.
    assert (condition(isvc, "PredictorReady") or {}).get("status") == "True"
    assert isvc["status"]["deploymentMode"] == DEFAULT_DEPLOYMENT_MODE
    assert isvc["status"]["url"]
    deployment = k8s.get("Deployment", "iris-predictor", namespace)
    service = k8s.get("Service", "iris-predictor", namespace)
    assert deployment is not None and _is_owned_by(deployment, isvc)
    assert service is not None and _is_owned_by(service, isvc)
    assert service["spec"]["clusterIP"]  # allocated by the apiserver from the Service CIDR
    assert (condition(deployment, "Available") or {}).get("status") == "True"

    pods = _pods(k8s, namespace, "serving.kserve.io/inferenceservice=iris")
    assert pods, "the predictor Deployment has no Pods"
    for pod in pods:
        assert pod["spec"]["nodeName"] in k8s.nodes
        assert (condition(pod, "Ready") or {}).get("status") == "True"
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        assert containers["kserve-container"]["image"] == image
    if make_isvc is _sklearn_isvc:
        # KServe's pod-mutating webhook added the model download from the ClusterStorageContainer.
        init = [c["name"] for c in pods[0]["spec"].get("initContainers") or []]
        assert "storage-initializer" in init
        assert isvc["status"].get("clusterServingRuntimeName") == "kserve-sklearnserver"


def test_unschedulable_inference_service_stays_not_ready(k8s: Cluster, namespace: str) -> None:
    # No node has this label, so the scheduler cannot place the predictor's Pod.
    k8s.apply(_sklearn_isvc("stuck", nodeSelector={"shipyard.test/pool": "nowhere"}), namespace)

    k8s.wait_for("Deployment", "stuck-predictor", namespace, lambda d: True, timeout_s=ISVC_TIMEOUT_S)

    def unschedulable() -> bool:
        pods = _pods(k8s, namespace, "serving.kserve.io/inferenceservice=stuck")
        return bool(pods) and all(
            (condition(p, "PodScheduled") or {}).get("reason") == "Unschedulable" for p in pods
        )

    deadline = time.monotonic() + ISVC_TIMEOUT_S
    while not unschedulable():
        assert time.monotonic() < deadline, "the scheduler never reported the Pod Unschedulable"
        time.sleep(0.2)

    # KServe reports it not Ready, and keeps doing so (the Pod stays Pending).
    k8s.wait_for("InferenceService", "stuck", namespace, "Ready=False", timeout_s=ISVC_TIMEOUT_S)
    time.sleep(3)
    isvc = k8s.get("InferenceService", "stuck", namespace)
    assert (condition(isvc, "Ready") or {}).get("status") == "False"
    assert (condition(isvc, "PredictorReady") or {}).get("status") != "True"
    deployment = k8s.get("Deployment", "stuck-predictor", namespace)
    assert deployment is not None
    assert not deployment["status"].get("readyReplicas")


def test_deleting_an_inference_service_garbage_collects_what_kserve_created(
    k8s: Cluster, namespace: str
) -> None:
    k8s.apply(_sklearn_isvc("doomed"), namespace)
    k8s.wait_for("InferenceService", "doomed", namespace, "Ready", timeout_s=ISVC_TIMEOUT_S)
    pods = _pods(k8s, namespace, "serving.kserve.io/inferenceservice=doomed")
    assert pods
    assert k8s.get("Deployment", "doomed-predictor", namespace) is not None

    k8s.delete("InferenceService", "doomed", namespace)

    # The controller-manager's garbage collector follows the owner references KServe set:
    # InferenceService → Deployment/Service → ReplicaSet → Pods (kwok then lets the Pods go).
    k8s.wait_for_deletion("InferenceService", "doomed", namespace)
    k8s.wait_for_deletion("Deployment", "doomed-predictor", namespace)
    k8s.wait_for_deletion("Service", "doomed-predictor", namespace)
    for pod in pods:
        k8s.wait_for_deletion("Pod", pod["metadata"]["name"], namespace)


def test_cluster_serving_runtimes_are_installed(k8s: Cluster) -> None:
    runtimes = {r["metadata"]["name"]: r for r in k8s.list_objects("ClusterServingRuntime")}
    assert {"kserve-sklearnserver", "kserve-xgbserver", "kserve-mlserver"} <= set(runtimes)
    (container,) = runtimes["kserve-sklearnserver"]["spec"]["containers"]
    assert container["image"] == "kserve/sklearnserver:latest"  # rendered by KServe's kustomization
