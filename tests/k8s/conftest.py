"""Fixtures for the k8s tier: one real control plane (apiserver, controllers, kwok, KServe) per session.

One per session because it takes seconds to start and tests isolate themselves by namespace; every
test gets a fresh, uniquely named namespace instead of a fresh cluster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Iterator

import pytest
from kubernetes import client

from tests.k8s.cluster import Cluster, missing_tools, run_cluster
from tests.support import require

_CLUSTER = pytest.StashKey[Cluster]()


@pytest.fixture(scope="session")
def k8s(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A ready control plane with KServe; stopped and wiped after the session.

    Running: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake nodes
    `k8s.nodes`) and the KServe controller manager with its webhooks, CRDs, inferenceservice-config
    (Standard deployment mode by default) and ClusterServingRuntimes.
    """
    missing = missing_tools()
    require(not missing, f"Kubernetes test tools not built ({', '.join(missing)}): run `make k8s-tools`")
    with run_cluster() as cluster:
        request.config.stash[_CLUSTER] = cluster
        try:
            yield cluster
        finally:
            del request.config.stash[_CLUSTER]


@pytest.fixture
def namespace(k8s: Cluster) -> Iterator[str]:
    """A fresh namespace with its `default` ServiceAccount, deleted (not waited for) afterwards.

    The controller-manager creates the ServiceAccount (without it the ServiceAccount admission
    plugin rejects every Pod), so this waits for it; deletion then really removes the namespace
    and everything in it, through the namespace controller.
    """
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s.api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield name
    core.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # The apiserver log explains most k8s-tier failures (admission, validation, auth), KServe's log
    # why an InferenceService is not reconciled, so a failed test shows their tails below the traceback.
    report = yield
    cluster = item.config.stash.get(_CLUSTER, None)
    if report.failed and cluster is not None:
        report.sections.append(("kube-apiserver log (last 40 lines)", cluster.log_tail(40)))
        if "kserve-manager" in cluster.logs:
            report.sections.append(
                ("kserve-manager log (last 30 lines)", cluster.log_tail(30, "kserve-manager"))
            )
    return report
