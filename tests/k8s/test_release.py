"""Promotion against the real control plane (apiserver, controller-manager, scheduler, kwok, KServe):
`shipyard release apply` and `rollout` as CI runs them, by the console script in a git checkout.

The rehearsal walks the whole pull-request flow in a temporary repository: a trained model -> propose
staging -> merge -> apply -> staging validation against a real model server -> propose prod -> merge
-> canary rollout, with `shipyard status` matching the records at every step. The canary's metrics
come from real model-server processes serving the two versions on this machine; the traffic between
them follows the trafficPercent KServe reports, as the cluster's router would split it. A canary
whose online store is down (every answer 503) is rolled back and the cluster ends with only the
stable version.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from serving.process import ServerProcess
from shipyard.deploy import Kubectl, render_target
from shipyard.registry import ModelRegistry
from shipyard.rollout import pod_metrics_urls
from tests.integration.serving_stack import Server, Stack, build_stack, start_server
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
from tests.release_checkout import Checkout, another_version, image_registry, make_checkout, write_evidence
from tests.s3server import S3Server

STEP_SECONDS = "3"


@dataclass
class Env:
    k8s: Cluster
    stack: Stack
    checkout: Checkout
    namespaces: dict[str, str]
    kube_env: dict[str, str]

    def shipyard(self, *args: str) -> Any:
        """The CLI as CI runs it; what it printed is echoed (captured by pytest, shown by
        `make promote-demo`, which runs the rehearsal with -s)."""
        result = self.checkout.shipyard(*args, env=self.kube_env)
        print(f"\n$ shipyard {' '.join(args)}\n{result.stdout}{result.stderr}", end="")
        return result

    def isvc(self, env: str) -> dict[str, Any] | None:
        return self.k8s.get("InferenceService", "ticket-router", self.namespaces[env])

    def status(self) -> dict[str, dict[str, Any]]:
        result = self.shipyard("status", "--json")
        assert result.returncode == 0, result.stderr
        return {row["environment"]: row for row in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def release_env(
    k8s: Cluster, s3: S3Server, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Env]:
    require_controllers(k8s)
    request.getfixturevalue("storage_container_crd")  # the chart's ClusterStorageContainer needs it
    base = tmp_path_factory.mktemp("release")
    stack = build_stack(base / "stack")
    namespaces = {env: unique(f"t-{env}") for env in ("staging", "prod")}
    installed = []
    with image_registry(base / "oci") as image:
        checkout = make_checkout(base, stack, image, namespaces, s3)
        # Canary steps short enough for a test; prod's other limits stay as configured.
        prod = yaml.safe_load(checkout.settings_file("prod").read_text())
        prod["release"]["canary"] = {"step_seconds": 3, "min_requests": 10, "ready_timeout_seconds": 120}
        checkout.settings_file("prod").write_text(yaml.safe_dump(prod, sort_keys=False))
        staging = yaml.safe_load(checkout.settings_file("staging").read_text())
        staging["release"]["validation"] = {
            "load_seconds": 3,
            "min_qps": 1.0,
            "holdout_rows": 200,
            "max_p95_seconds": 5,
        }
        checkout.settings_file("staging").write_text(yaml.safe_dump(staging, sort_keys=False))
        checkout.commit("test-sized canary and validation")
        # Helm keeps its release records in a namespace of their own; the chart creates the target.
        home = unique("t-rel")
        k8s.kubectl("create", "namespace", home)
        try:
            for env, namespace in namespaces.items():
                values = scenario_values(
                    env,
                    namespace,
                    metrics={"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
                    feast={"materialize": {"enabled": False}},
                    # The environment's registry, as its settings file names it: the storage
                    # initializer the chart creates accepts exactly that prefix.
                    settings={"model_registry": checkout.registries[env]},
                )
                k8s.helm(
                    "install",
                    f"rel-{env}",
                    str(CHART),
                    "--namespace",
                    home,
                    "-f",
                    str(write_values(base, f"values-{env}", values)),
                    timeout_s=300,
                )
                installed.append((env, namespace))
            yield Env(
                k8s, stack, checkout, namespaces, {"KUBECONFIG": str(k8s.kubeconfig), "KUBECTL": str(KUBECTL)}
            )
        finally:
            for env, namespace in installed:
                k8s.helm("uninstall", f"rel-{env}", "--namespace", home, timeout_s=180)
                delete_namespace(k8s, namespace)
            delete_namespace(k8s, home)
            delete_storage_containers(k8s, [f"{ns}-storage-initializer" for ns in namespaces.values()])


def model_of(isvc: dict[str, Any] | None) -> dict[str, Any]:
    assert isvc is not None
    model: dict[str, Any] = isvc["spec"]["predictor"]["model"]
    return model


def env_of(model: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in model.get("env", [])}


class Router:
    """Sends prediction requests to the stable or the canary server in the proportion KServe reports
    for the InferenceService's canary (what the cluster's router does with the two Services)."""

    def __init__(
        self, env: Env, stable: ServerProcess, canary: ServerProcess, rows: list[dict[str, Any]]
    ) -> None:
        self.env, self.stable, self.canary, self.rows = env, stable, canary, rows
        self.percent = 0
        self.sent = {"stable": 0, "canary": 0}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch), threading.Thread(target=self._send)]

    def __enter__(self) -> Router:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            isvc = self.env.isvc("prod") or {}
            statuses = isvc.get("status", {}).get("canaryStatuses") or []
            self.percent = (
                int(statuses[0].get("trafficPercent", 0)) if statuses and statuses[0].get("ready") else 0
            )

    def _send(self) -> None:
        rng = random.Random(7)
        clients = {
            "stable": httpx.Client(base_url=self.stable.url, timeout=30),
            "canary": httpx.Client(base_url=self.canary.url, timeout=30),
        }
        try:
            while not self._stop.is_set():
                which = "canary" if rng.random() * 100 < self.percent else "stable"
                server = self.canary if which == "canary" else self.stable
                with contextlib.suppress(httpx.HTTPError):
                    clients[which].post(
                        f"/v1/models/{server.config.model_name}:predict",
                        json={"instances": [rng.choice(self.rows)]},
                    )
                self.sent[which] += 1
        finally:
            for c in clients.values():
                c.close()


def request_rows(stack: Stack, n: int = 50) -> list[dict[str, Any]]:
    import pandas as pd

    events = pd.read_parquet(stack.data / "tickets.parquet", columns=["customer_id", "ticket_text"]).tail(n)
    rows: list[dict[str, Any]] = json.loads(events.to_json(orient="records"))
    return rows


@contextlib.contextmanager
def serve_version(
    env: Env, reg: ModelRegistry, version: str, workdir: Path, **overrides: Any
) -> Iterator[Server]:
    """A real model server for one registered version, stopped (by PID) when the block ends."""
    entry = reg.get(version)
    server = start_server(
        env.stack,
        workdir,
        model_dir=reg.fetch(version, workdir / "cache"),
        content_hash=entry.content_hash,
        version_label=version,
        **overrides,
    )
    try:
        yield server
    finally:
        server.stop()


def canary_rollout(
    env: Env, registry: ModelRegistry, stable: str, canary: str, workdir: Path, **canary_overrides: Any
) -> tuple[Any, Router]:
    """`release rollout` for prod with real servers for both versions behind the router; the
    canary's server takes `canary_overrides` (e.g. a broken online store)."""
    with (
        serve_version(env, registry, stable, workdir / f"prod-{stable}") as stable_server,
        serve_version(env, registry, canary, workdir / f"prod-{canary}", **canary_overrides) as canary_server,
        Router(env, stable_server, canary_server, request_rows(env.stack)) as router,
    ):
        result = env.shipyard(
            "--env",
            "prod",
            "release",
            "rollout",
            "--stable-metrics",
            f"{stable_server.url}/metrics",
            "--canary-metrics",
            f"{canary_server.url}/metrics",
        )
    return result, router


def merge(checkout: Checkout, branch: str, message: str) -> None:
    """What merging the promotion PR does to main: the branch's commit, merged without fast-forward."""
    checkout.commit(message)
    checkout.git("checkout", "-q", "main")
    checkout.git("merge", "-q", "--no-ff", branch, "-m", f"Merge {branch}")


def test_rehearsal_of_the_pull_request_flow(release_env: Env, tmp_path: Path) -> None:
    env, checkout, stack = release_env, release_env.checkout, release_env.stack
    v1 = stack.version

    # 1. propose staging (on a PR branch) -> merge -> apply
    checkout.git("checkout", "-q", "-b", "promote/staging-v1")
    proposed = env.shipyard("--env", "staging", "release", "propose", "--model", v1, "--by", "rehearsal")
    assert proposed.returncode == 0, proposed.stderr
    assert env.shipyard("release", "check", "--env", "staging").returncode == 0
    merge(checkout, "promote/staging-v1", f"staging: {v1}")
    assert env.status()["staging"]["drift"] == [f"{env.namespaces['staging']}/ticket-router does not exist"]
    applied = env.shipyard("--env", "staging", "release", "apply", "--timeout", "120")
    assert applied.returncode == 0, applied.stderr
    record = checkout.record("staging")["spec"]
    live = model_of(env.isvc("staging"))
    assert live["storageUri"] == record["model"]["storageUri"]
    assert live["image"] == record["code"]["image"] == checkout.image
    assert env_of(live)["SHIPYARD_CONTENT_HASH"] == record["model"]["contentHash"]
    assert env.status()["staging"]["drift"] == []

    # apply is idempotent: the same record again changes nothing in the cluster.
    generation = env.isvc("staging")["metadata"]["generation"]  # type: ignore[index]
    assert env.shipyard("--env", "staging", "release", "apply", "--timeout", "60").returncode == 0
    assert env.isvc("staging")["metadata"]["generation"] == generation  # type: ignore[index]

    # 2. staging validation against a real server running staging's version -> evidence
    with serve_version(env, checkout.registry("staging"), v1, tmp_path / "staging-server") as server:
        evidence = checkout.root / "evidence" / "staging" / v1 / "staging-validation.json"
        validated = env.shipyard(
            "--env", "staging", "release", "validate", "--url", server.url, "--out", str(evidence)
        )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    doc = json.loads(evidence.read_text())
    assert doc["passed"] and {c["name"] for c in doc["checks"]} == {"smoke", "load", "holdout-accuracy"}

    # 3. propose prod -> merge -> rollout (nothing runs in prod yet: deployed directly)
    checkout.git("checkout", "-q", "-b", "promote/prod-v1")
    body = tmp_path / "pr.md"
    proposed = env.shipyard(
        "--env",
        "prod",
        "release",
        "propose",
        "--model",
        v1,
        "--evidence",
        str(evidence),
        "--body-out",
        str(body),
    )
    assert proposed.returncode == 0, proposed.stderr
    assert "Evidence: staging-validation" in body.read_text()
    merge(checkout, "promote/prod-v1", f"prod: {v1}")
    assert env.shipyard("release", "check", "--env", "staging", "--env", "prod").returncode == 0
    first = env.shipyard("--env", "prod", "release", "rollout")
    assert first.returncode == 0, first.stderr
    assert "deploying" in first.stdout
    assert env.status()["prod"]["drift"] == []
    # Without URLs, a rollout inside the cluster reads every predictor pod by its IP.
    kubectl = Kubectl(str(env.k8s.kubeconfig), str(KUBECTL))
    target = render_target(kubectl, checkout.root, "manifests", "prod")
    urls = pod_metrics_urls(kubectl, target, None, 8080)
    deployment = kubectl.get("deployment", "ticket-router-predictor", env.namespaces["prod"])
    assert deployment is not None and len(urls) == deployment["status"]["availableReplicas"] >= 1
    assert all(re.fullmatch(r"http://[0-9.]+:8080/metrics", u) for u in urls), urls

    # 4. a second version through the same flow, now as a canary with real servers behind it
    v2 = another_version(checkout.registry("staging"), v1, "retrained on newer data")
    evidence2 = checkout.root / "evidence" / "staging" / v2 / "staging-validation.json"
    checkout.git("checkout", "-q", "-b", "promote/staging-v2")
    assert env.shipyard("--env", "staging", "release", "propose", "--model", v2).returncode == 0
    merge(checkout, "promote/staging-v2", f"staging: {v2}")
    assert env.shipyard("--env", "staging", "release", "apply", "--timeout", "120").returncode == 0
    with serve_version(env, checkout.registry("staging"), v2, tmp_path / "staging-v2b") as server:
        assert (
            env.shipyard(
                "--env", "staging", "release", "validate", "--url", server.url, "--out", str(evidence2)
            ).returncode
            == 0
        )
    checkout.git("checkout", "-q", "-b", "promote/prod-v2")
    assert (
        env.shipyard(
            "--env", "prod", "release", "propose", "--model", v2, "--evidence", str(evidence2)
        ).returncode
        == 0
    )
    merge(checkout, "promote/prod-v2", f"prod: {v2}")
    drift = env.status()["prod"]["drift"]
    assert any(d.startswith("model: record v2, cluster v1") for d in drift), drift

    prod_registry = checkout.registry("prod")
    rolled, router = canary_rollout(env, prod_registry, v1, v2, tmp_path)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    for percent in (10, 50, 100):
        assert f"canary {v2}: {percent}% of the traffic" in rolled.stdout
    assert router.sent["canary"] > 0 and router.sent["stable"] > 0
    prod_isvc = env.isvc("prod")
    assert prod_isvc is not None and not prod_isvc["spec"].get("canary")
    assert env_of(model_of(prod_isvc))["SHIPYARD_MODEL_VERSION"] == v2
    assert env.status()["prod"]["drift"] == []

    # A rollout killed after its promotion step leaves the canary listed next to the new stable
    # version: status names it, and the next rollout finishes the job instead of starting over.
    leftover = render_target(kubectl, checkout.root, "manifests", "prod").isvc
    leftover["spec"]["canary"] = [
        {"predictor": {"name": v2, "model": leftover["spec"]["predictor"]["model"]}, "trafficPercent": 100}
    ]
    kubectl.apply([leftover])
    assert f"canary in progress: {v2}" in env.status()["prod"]["drift"]
    finished = env.shipyard("--env", "prod", "release", "rollout")
    assert finished.returncode == 0, finished.stderr
    assert "removing the canary an interrupted rollout left" in finished.stdout
    assert env.status()["prod"]["drift"] == []


def test_a_canary_that_errs_is_rolled_back(release_env: Env, tmp_path: Path) -> None:
    """prod runs a version; the next one's server cannot reach its online store (every prediction
    503): the first step breaches the error limit, the canary is removed, prod keeps its version,
    and the command fails naming the breach."""
    env, checkout, stack = release_env, release_env.checkout, release_env.stack
    before = model_of(env.isvc("prod")) if env.isvc("prod") else None
    if before is None:  # run on its own: deploy the trained version first
        evidence = write_evidence(checkout, stack.version, name="seed")
        assert (
            env.shipyard(
                "--env", "prod", "release", "propose", "--model", stack.version, "--evidence", str(evidence)
            ).returncode
            == 0
        )
        checkout.commit("prod: seed")
        assert env.shipyard("--env", "prod", "release", "rollout").returncode == 0
        before = model_of(env.isvc("prod"))
    stable_version = env_of(before)["SHIPYARD_MODEL_VERSION"]
    bad = another_version(checkout.registry("staging"), stack.version, "broken deployment")
    evidence = write_evidence(checkout, bad)
    assert (
        env.shipyard(
            "--env", "prod", "release", "propose", "--model", bad, "--evidence", str(evidence)
        ).returncode
        == 0
    )
    checkout.commit(f"prod: {bad}")

    broken = stack.repo / "feature_store_broken.yaml"
    config = yaml.safe_load((stack.repo / stack.yaml_name).read_text())
    config["online_store"] = {
        "type": "redis",
        "connection_string": "127.0.0.1:9,socket_connect_timeout=0.2,socket_timeout=0.2",
    }
    broken.write_text(yaml.safe_dump(config))
    rolled, _ = canary_rollout(
        env, checkout.registry("prod"), stable_version, bad, tmp_path, feature_store_yaml=broken.name
    )
    assert rolled.returncode == 1, rolled.stdout + rolled.stderr
    assert "rolled back" in rolled.stderr and "canary error ratio" in rolled.stderr
    assert "Traceback" not in rolled.stderr
    live = env.isvc("prod")
    assert not live["spec"].get("canary")  # type: ignore[index]
    assert model_of(live)["storageUri"] == before["storageUri"]
    drift = env.status()["prod"]["drift"]
    assert any(d.startswith(f"model: record {bad}, cluster {stable_version}") for d in drift), drift


def test_apply_fails_cleanly_when_pods_never_become_ready(release_env: Env) -> None:
    """An unschedulable resource request: apply waits its timeout and says why, then the record is
    restored and applied again."""
    env, checkout = release_env, release_env.checkout
    predictor = checkout.root / "manifests" / "overlays" / "staging" / "predictor.yaml"
    original = predictor.read_text()
    if (
        env.isvc("staging") is None
        or env.shipyard("release", "check", "--env", "staging", "--offline").returncode
    ):
        assert (
            env.shipyard("--env", "staging", "release", "propose", "--model", env.stack.version).returncode
            == 0
        )
    doc = yaml.safe_load(original)
    doc["spec"]["predictor"]["model"] = {
        "resources": {"requests": {"cpu": "900", "memory": "1Gi"}, "limits": {"cpu": "900", "memory": "2Gi"}}
    }
    predictor.write_text(yaml.safe_dump(doc))
    try:
        result = env.shipyard("--env", "staging", "release", "apply", "--timeout", "20")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "not done after 20s" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        predictor.write_text(original)
    assert env.shipyard("--env", "staging", "release", "apply", "--timeout", "180").returncode == 0
