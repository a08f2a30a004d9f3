"""Proof that the k8s tier runs against a real API server, not a stand-in.

Each test checks a behaviour only a real kube-apiserver (with KServe's webhooks registered) has: its
release version, namespace finalization, admission by KServe's webhooks and CRD schema types, RBAC,
Pod Security admission; and is written so it would fail if the behaviour were off. What the
controllers reconcile is proved in test_controllers.py.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
    constants,
)
from kubernetes import client

from tests.k8s.cluster import Cluster, api_error_body, pinned_versions

STORAGE_URI = "gs://kfserving-examples/models/sklearn/1.0/model"


def _isvc_manifest(name: str, predictor: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {} if predictor is None else {"predictor": predictor}
    return {
        "apiVersion": constants.KSERVE_V1BETA1,
        "kind": constants.KSERVE_KIND_INFERENCESERVICE,
        "metadata": {"name": name},
        "spec": spec,
    }


def test_apiserver_reports_the_pinned_release(k8s: Cluster) -> None:
    version = client.VersionApi(k8s.api_client).get_code()
    pinned = pinned_versions()["KUBERNETES_VERSION"]
    assert version.git_version == pinned
    assert (version.major, version.minor) == ("1", pinned.split(".")[1])
    # kubectl is built from the same release, so client and server agree.
    versions = json.loads(k8s.kubectl("version", "--output", "json"))
    assert versions["clientVersion"]["gitVersion"] == versions["serverVersion"]["gitVersion"] == pinned


def test_namespace_lifecycle(k8s: Cluster) -> None:
    core = client.CoreV1Api(k8s.api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert created.status.phase == "Active"
    assert name in {ns.metadata.name for ns in core.list_namespace().items}
    # An object with a finalizer nobody removes holds the namespace in Terminating.
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="held", finalizers=["shipyard.test/hold"]))
    )

    core.delete_namespace(name)
    # Terminating is the apiserver's part of deletion, and it must refuse new objects from now on.
    assert core.read_namespace(name).status.phase == "Terminating"
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    assert refused.value.status == 403
    assert "being terminated" in api_error_body(refused.value)["message"]

    # The namespace controller (kube-controller-manager) finishes the deletion once nothing holds it.
    core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
    k8s.wait_for_deletion("Namespace", name, timeout_s=60)


@pytest.mark.parametrize(
    ("predictor", "status", "message"),
    [
        # KServe's defaulting webhook decodes the object before the CRD schema is checked.
        pytest.param(
            {"minReplicas": "two", "model": {"modelFormat": {"name": "sklearn"}}},
            400,
            "cannot unmarshal string into Go struct field"
            " PredictorSpec.spec.predictor.ComponentExtensionSpec.minReplicas of type int32",
            id="wrong-type",
        ),
        # KServe v0.20's defaulter panics on a missing predictor (the webhook recovers: a 500), so
        # the CRD's own "spec.predictor: Required value" never gets to answer.
        pytest.param(None, 500, "panic: runtime error", id="missing-required-predictor"),
        # Schema-valid: only KServe's validating webhook refuses it.
        pytest.param(
            {"minReplicas": 3, "maxReplicas": 1, "model": {"modelFormat": {"name": "sklearn"}}},
            403,
            "'MinReplicas' cannot be greater than MaxReplicas",
            id="min-over-max-replicas",
        ),
    ],
)
def test_kserve_webhooks_refuse_an_invalid_inference_service(
    k8s: Cluster, namespace: str, predictor: dict[str, Any] | None, status: int, message: str
) -> None:
    custom = client.CustomObjectsApi(k8s.api_client)
    with pytest.raises(client.ApiException) as rejected:
        custom.create_namespaced_custom_object(
            constants.KSERVE_GROUP,
            constants.KSERVE_V1BETA1_VERSION,
            namespace,
            constants.KSERVE_PLURAL_INFERENCESERVICE,
            _isvc_manifest("invalid", predictor),
        )
    body = api_error_body(rejected.value)
    assert rejected.value.status == status, body
    assert body["message"].startswith("admission webhook"), body
    assert message in body["message"]
    assert k8s.get("InferenceService", "invalid", namespace) is None


def test_server_side_apply_checks_types_against_the_crd_schema(k8s: Cluster, namespace: str) -> None:
    # Server-side apply (kubectl apply --server-side) types the object with the CRD's schema before
    # any webhook sees it; the apiserver reports that as a 500.
    with pytest.raises(client.ApiException) as rejected:
        k8s.apply(
            _isvc_manifest("invalid", {"minReplicas": "two", "model": {"modelFormat": {"name": "sklearn"}}}),
            namespace,
        )
    message = api_error_body(rejected.value)["message"]
    assert ".spec.predictor.minReplicas: expected numeric (int or float), got string" in message


def test_inference_service_round_trips_through_kserve_client(k8s: Cluster, namespace: str) -> None:
    kserve = KServeClient(config_file=str(k8s.kubeconfig))
    isvc = V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1,
        kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=client.V1ObjectMeta(name="iris", namespace=namespace, labels={"app": "shipyard"}),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                min_replicas=1,
                model=V1beta1ModelSpec(
                    model_format=V1beta1ModelFormat(name="sklearn"), storage_uri=STORAGE_URI
                ),
            )
        ),
    )
    created = kserve.create(isvc, namespace=namespace)
    fetched = kserve.get("iris", namespace=namespace)

    assert fetched["metadata"]["uid"] == created["metadata"]["uid"]
    assert fetched["metadata"]["labels"] == {"app": "shipyard"}
    predictor = fetched["spec"]["predictor"]
    assert predictor["minReplicas"] == 1
    assert predictor["model"]["modelFormat"] == {"name": "sklearn"}
    assert predictor["model"]["storageUri"] == STORAGE_URI

    kserve.delete("iris", namespace=namespace)
    with pytest.raises(client.ApiException) as gone:
        client.CustomObjectsApi(k8s.api_client).get_namespaced_custom_object(
            constants.KSERVE_GROUP,
            constants.KSERVE_V1BETA1_VERSION,
            namespace,
            constants.KSERVE_PLURAL_INFERENCESERVICE,
            "iris",
        )
    assert gone.value.status == 404


def _can_list_pods(k8s: Cluster, namespace: str, user: str) -> bool:
    review = client.AuthorizationV1Api(k8s.api_client).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=[
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb="list", resource="pods"
                ),
            )
        )
    )
    return bool(review.status.allowed)


def test_rbac_needs_a_role_binding_for_a_service_account(k8s: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(k8s.api_client)
    rbac = client.RbacAuthorizationV1Api(k8s.api_client)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata={"name": "reader"}))
    user = f"system:serviceaccount:{namespace}:reader"
    # TokenRequest: the token controller that would fill legacy token Secrets is not running.
    token = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token
    as_reader = k8s.client_for_token(token)

    whoami = client.AuthenticationV1Api(as_reader).create_self_subject_review(client.V1SelfSubjectReview())
    assert whoami.status.user_info.username == user

    assert not _can_list_pods(k8s, namespace, user)
    with pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(as_reader).list_namespaced_pod(namespace)
    assert denied.value.status == 403  # authenticated (not 401) but not authorized

    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader-reads-pods"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )
    # The RBAC authorizer reads bindings from a watch cache; give it a moment to see the new one.
    deadline = time.monotonic() + 10
    while not _can_list_pods(k8s, namespace, user):
        assert time.monotonic() < deadline, "RoleBinding did not take effect within 10s"
        time.sleep(0.1)
    assert client.CoreV1Api(as_reader).list_namespaced_pod(namespace).items == []


def _pod(name: str, security_context: client.V1SecurityContext, **pod_security: Any) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main", image="registry.k8s.io/pause:3.10", security_context=security_context
                )
            ],
            security_context=client.V1PodSecurityContext(**pod_security),
        ),
    )


PRIVILEGED = client.V1SecurityContext(privileged=True)
RESTRICTED = client.V1SecurityContext(
    allow_privilege_escalation=False,
    capabilities=client.V1Capabilities(drop=["ALL"]),
    run_as_non_root=True,
    run_as_user=65532,
    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
)


def test_pod_security_admission_enforces_the_namespace_level(k8s: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(k8s.api_client)
    # Control: without a Pod Security label the privileged Pod is admitted, so the rejection below
    # is the namespace's enforce level at work and nothing else.
    core.create_namespaced_pod(namespace, _pod("privileged", PRIVILEGED))

    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    with pytest.raises(client.ApiException) as rejected:
        core.create_namespaced_pod(namespace, _pod("privileged-again", PRIVILEGED))
    assert rejected.value.status == 403
    message = api_error_body(rejected.value)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message

    admitted = core.create_namespaced_pod(namespace, _pod("compliant", RESTRICTED))
    assert admitted.metadata.name == "compliant"


def test_helm_installs_a_chart_into_the_cluster(k8s: Cluster, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    # .Capabilities.KubeVersion is read from the live server, so it proves helm talked to this one.
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    k8s.helm("install", "demo", str(chart), "--namespace", namespace)

    config_map = client.CoreV1Api(k8s.api_client).read_namespaced_config_map("demo-probe", namespace)
    assert config_map.data == {"kubeVersion": pinned_versions()["KUBERNETES_VERSION"]}
    releases = json.loads(k8s.helm("list", "--namespace", namespace, "--output", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
