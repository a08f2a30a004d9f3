"""The kustomize overlays (manifests/): each environment's InferenceService, the state promotion edits.

`kubectl kustomize` renders exactly one object per environment, whose model version comes from the
environment's release record (release.yaml) alone; it is the InferenceService the Helm chart renders
for the same environment (so the two ways to deploy cannot drift apart); it applies server-side, as
the environment's deployer, with no error or warning; and a promotion is a change of release.yaml
that changes only the version fields. With the real controllers, applying an overlay next to the
chart's platform objects ends in a Ready InferenceService, and a promotion rolls its Deployment.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import Cluster
from tests.k8s.test_chart import (
    CHART,
    ENVIRONMENTS,
    HASH_B,
    REPO,
    SCENARIOS,
    apply_server_side,
    container_env,
    delete_namespace,
    delete_storage_containers,
    diff_server_side,
    docs_of,
    find,
    isvc_ready,
    kubectl,
    load_values,
    merge,
    predictor_deployment,
    render,
    require_controllers,
    rolled_out,
    scenario_values,
    storage_container_crd,  # noqa: F401 (a fixture)
    unique,
    wait_for,
    wait_reconciled,
    write_values,
)

MANIFESTS = REPO / "manifests"
VERSION_FIELDS = {
    ("metadata", "annotations", "shipyard.io/model-version"),
    ("metadata", "annotations", "shipyard.io/content-hash"),
    ("metadata", "annotations", "shipyard.io/git-sha"),
    ("spec", "predictor", "model", "image"),
    ("spec", "predictor", "model", "storageUri"),
    ("spec", "predictor", "model", "env", "SHIPYARD_CONTENT_HASH"),
    ("spec", "predictor", "model", "env", "SHIPYARD_MODEL_VERSION"),
}


def kustomize(k8s: Cluster, overlay: Path) -> list[dict[str, Any]]:
    return docs_of(kubectl(k8s, "kustomize", str(overlay)).stdout)


def model_version(overlay: Path) -> dict[str, str]:
    """The release record's model, image and commit (shipyard.release validates the whole file)."""
    from shipyard.release import load_record

    record = load_record(overlay / "release.yaml")
    return {
        "version": record.spec.model.version,
        "contentHash": record.spec.model.content_hash,
        "storageUri": record.spec.model.storage_uri,
        "image": record.spec.code.image,
        "gitSha": record.spec.code.git_sha,
    }


def flatten(isvc: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """The fields of an InferenceService that say what runs, with env as a name -> value map."""
    out: dict[tuple[str, ...], Any] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif path[-1] == "env" and isinstance(node, list):
            for item in node:
                out[(*path, item["name"])] = item.get("value")
        else:
            out[path] = node

    walk({"metadata": {"annotations": isvc["metadata"].get("annotations", {})}, "spec": isvc["spec"]}, ())
    return out


def in_namespace(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    moved = copy.deepcopy(docs)
    for doc in moved:
        doc["metadata"]["namespace"] = namespace
    return moved


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_renders_the_environment_inference_service(k8s: Cluster, env: str) -> None:
    docs = kustomize(k8s, MANIFESTS / "overlays" / env)
    # Only the InferenceService: the local model-version record is never emitted, and everything else
    # (RBAC, runtime, namespace) belongs to the chart, which the deployer cannot change.
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("InferenceService", "ticket-router")]
    isvc = docs[0]
    assert isvc["metadata"]["namespace"] == f"shipyard-{env}"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert "from-release-yaml" not in yaml.safe_dump(isvc)
    assert isvc["spec"]["predictor"]["storageContainerName"] == f"shipyard-{env}-storage-initializer"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_model_version_record_is_one_version_of_the_environment_registry(k8s: Cluster, env: str) -> None:
    from shipyard.settings import load_settings

    overlay = MANIFESTS / "overlays" / env
    record = model_version(overlay)
    assert re.fullmatch(r"[0-9a-f]{64}", record["contentHash"])
    assert re.fullmatch(r"v[0-9]+", record["version"])
    registry = load_settings(path=REPO / "environments" / f"{env}.yaml").model_registry
    assert record["storageUri"] == f"{registry}/versions/{record['contentHash']}"

    fields = flatten(kustomize(k8s, overlay)[0])
    assert fields[("spec", "predictor", "model", "storageUri")] == record["storageUri"]
    assert fields[("spec", "predictor", "model", "env", "SHIPYARD_CONTENT_HASH")] == record["contentHash"]
    assert fields[("metadata", "annotations", "shipyard.io/content-hash")] == record["contentHash"]
    assert fields[("spec", "predictor", "model", "env", "SHIPYARD_MODEL_VERSION")] == record["version"]
    assert fields[("metadata", "annotations", "shipyard.io/model-version")] == record["version"]
    assert fields[("spec", "predictor", "model", "image")] == record["image"]
    assert fields[("metadata", "annotations", "shipyard.io/git-sha")] == record["gitSha"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_is_the_inference_service_the_chart_renders(k8s: Cluster, env: str, tmp_path: Path) -> None:
    """The chart with the environment's values (and the overlay's model version) renders the same
    InferenceService: same name, namespace, spec and deployment annotations. Labels differ by owner."""
    overlay_isvc = kustomize(k8s, MANIFESTS / "overlays" / env)[0]
    record = model_version(MANIFESTS / "overlays" / env)
    values = merge(
        load_values(SCENARIOS[env]),
        {
            "inferenceService": {"enabled": True},
            "model": {
                "version": record["version"],
                "contentHash": record["contentHash"],
                "image": record["image"],
                "gitSha": record["gitSha"],
            },
        },
    )
    chart_isvc = find(
        render(k8s, f"shipyard-{env}", "shipyard-system", [write_values(tmp_path, env, values)]),
        "InferenceService",
    )
    assert chart_isvc["metadata"]["name"] == overlay_isvc["metadata"]["name"]
    assert chart_isvc["metadata"]["namespace"] == overlay_isvc["metadata"]["namespace"]
    assert chart_isvc["metadata"]["annotations"] == overlay_isvc["metadata"]["annotations"]
    assert chart_isvc["spec"] == overlay_isvc["spec"]


def test_promotion_changes_only_the_version_fields(k8s: Cluster, tmp_path: Path) -> None:
    """What a promotion PR does to prod: a new release.yaml (model, image, commit). The rendered
    object changes in the version fields and nowhere else."""
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests)
    overlay = manifests / "overlays" / "prod"
    before = flatten(kustomize(k8s, overlay)[0])
    record = model_version(overlay)
    text = (overlay / "release.yaml").read_text()
    text = (
        text.replace(record["contentHash"], HASH_B)
        .replace(f"version: {record['version']}", "version: v99")
        .replace(record["image"].split("@")[1], "sha256:" + "e" * 64)
        .replace(record["gitSha"], "f" * 40)
    )
    (overlay / "release.yaml").write_text(text)
    after = flatten(kustomize(k8s, overlay)[0])
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    assert changed == VERSION_FIELDS
    assert (
        after[("spec", "predictor", "model", "storageUri")] == f"s3://shipyard-models/prod/versions/{HASH_B}"
    )
    assert after[("spec", "predictor", "model", "env", "SHIPYARD_MODEL_VERSION")] == "v99"


@pytest.mark.usefixtures("storage_container_crd")
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_overlay_applies_server_side_next_to_the_chart(
    k8s: Cluster, namespace: str, env: str, tmp_path: Path
) -> None:
    """The chart's platform objects (InferenceService off, as in the environment's values), then the
    overlay: no error, no warning, and a second apply changes nothing."""
    target = unique(f"t-{env}")
    values = scenario_values(
        env, target, metrics={"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}
    )
    platform = render(k8s, f"shipyard-{env}", namespace, [write_values(tmp_path, env, values)])
    storage = [d["metadata"]["name"] for d in platform if d["kind"] == "ClusterStorageContainer"]
    try:
        assert (
            apply_server_side(
                k8s, [d for d in platform if "helm.sh/hook" not in d["metadata"].get("annotations", {})]
            )
            == ""
        )
        isvc = in_namespace(kustomize(k8s, MANIFESTS / "overlays" / env), target)
        isvc[0]["spec"]["predictor"]["storageContainerName"] = storage[0]
        assert apply_server_side(k8s, isvc, manager="shipyard-deployer") == ""
        wait_reconciled(k8s, isvc)
        assert diff_server_side(k8s, isvc, manager="shipyard-deployer") == ""
        live = yaml.safe_load(
            kubectl(k8s, "get", "inferenceservice", "ticket-router", "-n", target, "-o", "yaml").stdout
        )
        assert (
            live["spec"]["predictor"]["model"]["storageUri"]
            == model_version(MANIFESTS / "overlays" / env)["storageUri"]
        )
    finally:
        delete_namespace(k8s, target)
        delete_storage_containers(k8s, storage)


@pytest.mark.usefixtures("storage_container_crd")
def test_promotion_rolls_the_predictor_with_the_real_controllers(
    k8s: Cluster, namespace: str, tmp_path: Path
) -> None:
    """staging: the chart's platform, then the overlay -> Ready; a promotion (release.yaml)
    applied the same way rolls the Deployment to the new content hash."""
    require_controllers(k8s)
    target = unique("t-promote")
    values = scenario_values(
        "staging",
        target,
        metrics={"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
        feast={"materialize": {"enabled": False}},
    )
    k8s.helm(
        "install",
        "shipyard-promote",
        str(CHART),
        "--namespace",
        namespace,
        "-f",
        str(write_values(tmp_path, "staging", values)),
        timeout_s=300,
    )
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests)
    overlay = manifests / "overlays" / "staging"
    storage = f"{target}-storage-initializer"
    try:
        isvc = in_namespace(kustomize(k8s, overlay), target)
        isvc[0]["spec"]["predictor"]["storageContainerName"] = storage
        apply_server_side(k8s, isvc, manager="shipyard-deployer")
        wait_for(
            "the InferenceService to become Ready",
            lambda: isvc_ready(k8s, target, "ticket-router"),
            timeout_s=120,
        )

        record = model_version(overlay)
        text = (overlay / "release.yaml").read_text().replace(record["contentHash"], HASH_B)
        (overlay / "release.yaml").write_text(text)
        promoted = in_namespace(kustomize(k8s, overlay), target)
        promoted[0]["spec"]["predictor"]["storageContainerName"] = storage
        apply_server_side(k8s, promoted, manager="shipyard-deployer")
        wait_for(
            "the Deployment to roll out the promoted version",
            lambda: (
                (d := predictor_deployment(k8s, target, "ticket-router")) is not None
                and container_env(d).get("SHIPYARD_CONTENT_HASH") == HASH_B
                and rolled_out(d)
            ),
            timeout_s=120,
        )
        wait_for("Ready again", lambda: isvc_ready(k8s, target, "ticket-router"), timeout_s=120)
    finally:
        k8s.helm("uninstall", "shipyard-promote", "--namespace", namespace, timeout_s=180)
        delete_namespace(k8s, target)
        delete_storage_containers(k8s, [storage])


def test_chart_values_and_overlays_name_the_same_platform_objects(k8s: Cluster, tmp_path: Path) -> None:
    """What the overlay references by name (runtime, ServiceAccount, storage container) is what the
    chart creates for the environment."""
    for env in ENVIRONMENTS:
        isvc = kustomize(k8s, MANIFESTS / "overlays" / env)[0]
        docs = render(k8s, f"shipyard-{env}", "shipyard-system", [SCENARIOS[env]])
        predictor = isvc["spec"]["predictor"]
        assert find(docs, "ServingRuntime")["metadata"]["name"] == predictor["model"]["runtime"]
        assert predictor["serviceAccountName"] in {
            d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"
        }
        assert find(docs, "ClusterStorageContainer")["metadata"]["name"] == predictor["storageContainerName"]
        assert CHART.is_dir()
