"""Least privilege, asked of the API server's RBAC authorizer (SubjectAccessReview) and proven with
real ServiceAccount tokens.

The chart is installed for two environments (staging and prod, each in its own namespace). For each
of its ServiceAccounts (pipeline runner, CI deployer, predictor), every verb its flow needs is allowed
in its own namespace; a sample of what it must not do is denied: the predictor reads nothing (no
Secrets), the deployer changes InferenceServices but cannot delete them, read Secrets, change RBAC,
the runtime or a Deployment, the pipeline runner reads only the Secret and ConfigMaps it is named,
and no ServiceAccount of one environment can touch the other's namespace or anything cluster-wide.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.k8s.cluster import Cluster, ToolError
from tests.k8s.test_chart import (
    CHART,
    REPO,
    delete_namespace,
    docs_of,
    kubectl,
    scenario_values,
    storage_container_crd,  # noqa: F401 (a fixture)
    unique,
    write_values,
)

ENVS = ("staging", "prod")
ROLES = ("pipeline-runner", "deployer", "predictor")
ISVC = "ticket-router"


@dataclass(frozen=True)
class Environment:
    name: str
    namespace: str
    release: str

    def user(self, role: str) -> str:
        return f"system:serviceaccount:{self.namespace}:shipyard-{role}"


@dataclass(frozen=True)
class Access:
    verb: str
    resource: str
    group: str = ""
    name: str | None = None
    subresource: str | None = None

    def __str__(self) -> str:
        what = f"{self.group + '/' if self.group else ''}{self.resource}"
        what += f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {what}{' ' + self.name if self.name else ''}"


def can(k8s: Cluster, env: Environment, role: str, namespace: str | None, access: Access) -> bool:
    review = client.AuthorizationV1Api(k8s.api_client).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=env.user(role),
                groups=[
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{env.namespace}",
                    "system:authenticated",
                ],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace,
                    verb=access.verb,
                    group=access.group,
                    resource=access.resource,
                    subresource=access.subresource,
                    name=access.name,
                ),
            )
        )
    )
    return bool(review.status.allowed)


# What each flow needs, in its own namespace.
NEEDED: dict[str, list[Access]] = {
    # KFP v2 on Argo >= 3.4 (emissary): task results, reading pods and logs, the launcher's config
    # and the artifact store's credentials by name, and Shipyard's settings.
    "pipeline-runner": [
        Access("create", "workflowtaskresults", "argoproj.io"),
        Access("patch", "workflowtaskresults", "argoproj.io", "task-1"),
        Access("get", "pods", name="run-1-driver"),
        Access("watch", "pods"),
        Access("get", "pods", name="run-1-impl", subresource="log"),
        Access("get", "configmaps", name="kfp-launcher"),
        Access("get", "configmaps", name="shipyard-settings"),
        Access("get", "secrets", name="shipyard-s3"),
    ],
    # CI's deploy job: `kubectl apply --server-side -k manifests/overlays/<env>` and watching the rollout.
    "deployer": [
        Access("get", "inferenceservices", "serving.kserve.io", ISVC),
        Access("list", "inferenceservices", "serving.kserve.io"),
        Access("watch", "inferenceservices", "serving.kserve.io"),
        Access("create", "inferenceservices", "serving.kserve.io"),
        Access("patch", "inferenceservices", "serving.kserve.io", ISVC),
        Access("update", "inferenceservices", "serving.kserve.io", ISVC),
        Access("get", "servingruntimes", "serving.kserve.io", "shipyard"),
        Access("get", "deployments", "apps", f"{ISVC}-predictor"),
        Access("watch", "deployments", "apps"),
        Access("list", "replicasets", "apps"),
        Access("list", "pods"),
        Access("get", "pods", name="p", subresource="log"),
        Access("list", "events"),
        Access("list", "events", "events.k8s.io"),
        Access("get", "services", name=f"{ISVC}-predictor"),
    ],
    # The model server needs nothing from the API: its credentials come from Secrets through env.
    "predictor": [],
}

# A sample of what each must not do, in its own namespace.
FORBIDDEN: dict[str, list[Access]] = {
    "pipeline-runner": [
        Access("get", "secrets", name="shipyard-feast"),
        Access("list", "secrets"),
        Access("get", "configmaps", name="some-other-config"),
        Access("create", "pods"),
        Access("patch", "pods", name="run-1-driver"),
        Access("create", "pods", name="run-1-driver", subresource="exec"),
        Access("patch", "inferenceservices", "serving.kserve.io", ISVC),
        Access("delete", "workflowtaskresults", "argoproj.io", "task-1"),
    ],
    "deployer": [
        Access("get", "secrets", name="shipyard-s3"),
        Access("list", "secrets"),
        Access("delete", "inferenceservices", "serving.kserve.io", ISVC),
        Access("patch", "servingruntimes", "serving.kserve.io", "shipyard"),
        Access("patch", "deployments", "apps", f"{ISVC}-predictor"),
        Access("create", "pods"),
        Access("create", "pods", name="p", subresource="exec"),
        Access("update", "configmaps", name="shipyard-settings"),
        Access("create", "rolebindings", "rbac.authorization.k8s.io"),
        Access("patch", "roles", "rbac.authorization.k8s.io", "shipyard-deployer"),
        Access("create", "serviceaccounts", name="shipyard-pipeline-runner", subresource="token"),
        Access("delete", "networkpolicies", "networking.k8s.io", "shipyard-default-deny"),
    ],
    "predictor": [
        Access("get", "secrets", name="shipyard-s3"),
        Access("get", "secrets", name="shipyard-feast"),
        Access("list", "secrets"),
        Access("get", "configmaps", name="shipyard-settings"),
        Access("list", "pods"),
        Access("get", "inferenceservices", "serving.kserve.io", ISVC),
        Access("patch", "inferenceservices", "serving.kserve.io", ISVC),
    ],
}

# Nobody may do these, anywhere (None = cluster-scoped).
CLUSTER_WIDE = [
    Access("list", "namespaces"),
    Access("patch", "namespaces", name="shipyard-prod"),
    Access("list", "inferenceservices", "serving.kserve.io"),
    Access("create", "clusterstoragecontainers", "serving.kserve.io"),
    Access("list", "secrets"),
    Access("create", "clusterrolebindings", "rbac.authorization.k8s.io"),
]


@pytest.fixture(scope="module")
def environments(
    k8s: Cluster, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Environment]]:
    """staging and prod installed with their ci values (each moved to a fresh namespace)."""
    request.getfixturevalue("storage_container_crd")
    core = client.CoreV1Api(k8s.api_client)
    system = f"t-system-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=system)))
    directory = tmp_path_factory.mktemp("rbac")
    envs: dict[str, Environment] = {}
    try:
        for name in ENVS:
            env = Environment(name, unique(f"t-{name}"), f"shipyard-{name}-{uuid.uuid4().hex[:4]}")
            values = scenario_values(
                name,
                env.namespace,
                metrics={"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
            )
            k8s.helm(
                "install",
                env.release,
                str(CHART),
                "--namespace",
                system,
                "-f",
                str(write_values(directory, name, values)),
            )
            envs[name] = env
        # The authorizer reads bindings from a watch cache: wait until each environment's are in.
        for env in envs.values():
            for role in ("pipeline-runner", "deployer"):
                deadline = time.monotonic() + 15
                while not can(k8s, env, role, env.namespace, NEEDED[role][0]):
                    assert time.monotonic() < deadline, f"{role}'s RoleBinding did not take effect within 15s"
                    time.sleep(0.1)
        yield envs
    finally:
        for env in envs.values():
            k8s.helm("uninstall", env.release, "--namespace", system, timeout_s=180)
            delete_namespace(k8s, env.namespace)
        delete_namespace(k8s, system)


def _matrix(table: dict[str, list[Access]]) -> list[Any]:
    return [pytest.param(role, access, id=f"{role}:{access}") for role in ROLES for access in table[role]]


@pytest.mark.parametrize("env_name", ENVS)
@pytest.mark.parametrize(("role", "access"), _matrix(NEEDED))
def test_each_flow_is_allowed_what_it_needs(
    k8s: Cluster, environments: dict[str, Environment], env_name: str, role: str, access: Access
) -> None:
    env = environments[env_name]
    assert can(k8s, env, role, env.namespace, access), f"{role} of {env_name} cannot {access}"


@pytest.mark.parametrize("env_name", ENVS)
@pytest.mark.parametrize(("role", "access"), _matrix(FORBIDDEN))
def test_each_flow_is_denied_what_it_must_not_do(
    k8s: Cluster, environments: dict[str, Environment], env_name: str, role: str, access: Access
) -> None:
    env = environments[env_name]
    assert not can(k8s, env, role, env.namespace, access), f"{role} of {env_name} may {access}"


@pytest.mark.parametrize(("source", "target"), [("staging", "prod"), ("prod", "staging")])
@pytest.mark.parametrize("role", ROLES)
def test_no_environment_touches_another(
    k8s: Cluster, environments: dict[str, Environment], source: str, target: str, role: str
) -> None:
    """Everything a ServiceAccount may do at home, it may not do in the other environment."""
    env, other = environments[source], environments[target]
    allowed_elsewhere = [str(a) for a in NEEDED[role] if can(k8s, env, role, other.namespace, a)]
    assert allowed_elsewhere == [], f"{role} of {source} may, in {target}: {allowed_elsewhere}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("access", CLUSTER_WIDE, ids=str)
def test_nothing_cluster_wide(
    k8s: Cluster, environments: dict[str, Environment], role: str, access: Access
) -> None:
    for env in environments.values():
        assert not can(k8s, env, role, None, access), f"{role} of {env.name} may {access} cluster-wide"


# --- the same, with real tokens -----------------------------------------------------------------------


def token_kubeconfig(k8s: Cluster, env: Environment, role: str, directory: Path) -> Path:
    token = (
        client.CoreV1Api(k8s.api_client)
        .create_namespaced_service_account_token(
            f"shipyard-{role}",
            env.namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
            ),
        )
        .status.token
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {
                    "server": k8s.server,
                    "certificate-authority-data": base64.b64encode(k8s.ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": role, "user": {"token": token}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": role, "namespace": env.namespace}}
        ],
        "current-context": "test",
    }
    path = directory / f"{env.name}-{role}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def overlay_in(k8s: Cluster, env: Environment, overlay_env: str) -> str:
    docs = docs_of(kubectl(k8s, "kustomize", str(REPO / "manifests" / "overlays" / overlay_env)).stdout)
    for doc in docs:
        doc["metadata"]["namespace"] = env.namespace
        doc["spec"]["predictor"]["storageContainerName"] = f"{env.namespace}-storage-initializer"
    return yaml.safe_dump_all(docs)


def test_deployer_token_applies_its_overlay_and_nothing_else(
    k8s: Cluster, environments: dict[str, Environment], tmp_path: Path
) -> None:
    """staging's deployer, authenticated by its own token, applies the staging overlay server-side;
    the same apply into prod's namespace, a Secret read and a delete are refused (403)."""
    staging, prod = environments["staging"], environments["prod"]
    as_deployer = token_kubeconfig(k8s, staging, "deployer", tmp_path)
    applied = kubectl(
        k8s, "apply", "--server-side", "--field-manager=ci-deploy", "-f", "-",
        stdin=overlay_in(k8s, staging, "staging"), kubeconfig=as_deployer,
    )  # fmt: skip
    assert (
        applied.stderr == ""
        and f"inferenceservice.serving.kserve.io/{ISVC} serverside-applied" in applied.stdout
    )
    assert kubectl(k8s, "get", "isvc", ISVC, "-o", "name", kubeconfig=as_deployer).stdout.strip() == (
        f"inferenceservice.serving.kserve.io/{ISVC}"
    )

    refused = [
        ["apply", "--server-side", "--field-manager=ci-deploy", "-f", "-"],
        ["get", "secret", "shipyard-s3", "-n", staging.namespace],
        ["delete", "isvc", ISVC, "-n", staging.namespace],
        ["get", "isvc", "-n", prod.namespace],
    ]
    for args in refused:
        stdin = overlay_in(k8s, prod, "prod") if args[0] == "apply" else None
        result = kubectl(k8s, *args, stdin=stdin, kubeconfig=as_deployer, check=False)
        assert result.returncode != 0 and "Forbidden" in result.stderr, (args, result.stderr)
        assert f'User "{staging.user("deployer")}" cannot' in result.stderr


def test_predictor_token_reads_nothing(
    k8s: Cluster, environments: dict[str, Environment], tmp_path: Path
) -> None:
    env = environments["prod"]
    as_predictor = token_kubeconfig(k8s, env, "predictor", tmp_path)
    for args in (
        ["get", "secret", "shipyard-s3"],
        ["get", "configmap", "shipyard-settings"],
        ["get", "pods"],
    ):
        result = kubectl(k8s, *args, kubeconfig=as_predictor, check=False)
        assert result.returncode != 0 and "Forbidden" in result.stderr, (args, result.stderr)


def test_no_service_account_mounts_a_token_it_does_not_need(
    k8s: Cluster, environments: dict[str, Environment]
) -> None:
    """The predictor and the deployer (a CI identity, used with requested tokens) mount none; the
    pipeline runner does (KFP's pods call the API), except in the Feast job, which opts out."""
    core = client.CoreV1Api(k8s.api_client)
    for env in environments.values():
        mounts = {
            role: core.read_namespaced_service_account(
                f"shipyard-{role}", env.namespace
            ).automount_service_account_token
            for role in ROLES
        }
        assert mounts == {"pipeline-runner": None, "deployer": False, "predictor": False}
        roles = client.RbacAuthorizationV1Api(k8s.api_client).list_namespaced_role(env.namespace).items
        assert sorted(r.metadata.name for r in roles) == ["shipyard-deployer", "shipyard-pipeline-runner"]
        with pytest.raises(ToolError):
            k8s.kubectl("get", "role", "shipyard-predictor", "-n", env.namespace)
