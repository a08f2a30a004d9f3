"""Fixtures for the k8s tier: one real kube-apiserver + etcd per test session.

One per session because the apiserver takes seconds to start and tests isolate themselves by
namespace; every test gets a fresh, uniquely named namespace instead of a fresh cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator

import pytest
from kubernetes import client

from tests.k8s.cluster import Cluster, missing_tools, run_cluster
from tests.support import require

_CLUSTER = pytest.StashKey[Cluster]()


@pytest.fixture(scope="session")
def k8s(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A ready apiserver with the KServe CRDs installed; stopped and wiped after the session."""
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
    """A fresh namespace, deleted afterwards (it stays Terminating: no namespace controller runs).

    Also creates the `default` ServiceAccount, which the missing controller-manager would add and
    without which the ServiceAccount admission plugin rejects every Pod.
    """
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s.api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_service_account(name, client.V1ServiceAccount(metadata={"name": "default"}))
    yield name
    core.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # The apiserver log explains most k8s-tier failures (admission, validation, auth), so a failed
    # test shows its tail right below the traceback.
    report = yield
    cluster = item.config.stash.get(_CLUSTER, None)
    if report.failed and cluster is not None:
        report.sections.append(("kube-apiserver log (last 40 lines)", cluster.log_tail(40)))
    return report
