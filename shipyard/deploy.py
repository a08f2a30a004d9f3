"""Making a cluster match a release record: render the overlay, server-side apply, wait for Ready.

Why kubectl and not a Python client: `kubectl kustomize` is the renderer the overlays are written for
(the record reaches the InferenceService through kustomize replacements), and `kubectl apply
--server-side` is exactly what a platform engineer would run by hand, so "what CI applied" and "what
I can reproduce" are the same command. One field manager (`shipyard-release`) owns what releases
set, so a later apply that drops a field (a finished canary) removes it from the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from shipyard.errors import DeployError
from shipyard.release import Release, load_record, record_path

FIELD_MANAGER = "shipyard-release"
ISVC = "inferenceservice.serving.kserve.io"


class Kubectl:
    """kubectl with one kubeconfig; failures are DeployErrors carrying kubectl's own message."""

    def __init__(self, kubeconfig: str | None = None, binary: str | None = None) -> None:
        found = binary or os.environ.get("KUBECTL") or shutil.which("kubectl")
        if not found:
            raise DeployError("kubectl not found: install it or set KUBECTL=/path/to/kubectl")
        self.binary = found
        self.kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        env = dict(os.environ)
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        try:
            result = subprocess.run(
                [self.binary, *args],
                input=stdin,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeployError(f"kubectl {args[0]} did not answer within {timeout:.0f}s") from exc
        except OSError as exc:  # $KUBECTL names a missing or non-executable file
            raise DeployError(f"cannot run kubectl ({self.binary}): {exc}") from exc
        if result.returncode != 0:
            raise DeployError(
                f"kubectl {' '.join(args[:2])} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def render(self, overlay: Path) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.run("kustomize", str(overlay))) if d]

    def apply(self, docs: list[dict[str, Any]], manager: str = FIELD_MANAGER) -> None:
        self.run(
            "apply",
            "--server-side",
            "--force-conflicts",  # a release owns what it sets, whoever applied it last
            f"--field-manager={manager}",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(docs, sort_keys=False),
        )

    def get(self, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            out = self.run("get", resource, name, "-n", namespace, "-o", "json", "--ignore-not-found")
        except DeployError:
            raise
        if not out.strip():
            return None
        obj: dict[str, Any] = json.loads(out)
        return obj

    def names(self, resource: str, namespace: str, selector: str) -> list[str]:
        out = self.run("get", resource, "-n", namespace, "-l", selector, "-o", "name")
        return [line.split("/", 1)[1] for line in out.split() if "/" in line]


@dataclass(frozen=True)
class Target:
    """What an environment's record renders to: the InferenceService and where it lives."""

    record: Release
    isvc: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.isvc["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.isvc["metadata"].get("namespace", "default"))


def render_target(kubectl: Kubectl, root: Path, manifests: str, env: str) -> Target:
    """The record (validated first: an invalid record never reaches the cluster) and the one
    InferenceService its overlay renders, which must carry the record's model."""
    record = load_record(record_path(root / manifests, env))
    if record.spec.environment != env:
        raise DeployError(f"{env}'s record says environment {record.spec.environment!r}")
    docs = kubectl.render(root / manifests / "overlays" / env)
    isvcs = [d for d in docs if d.get("kind") == "InferenceService"]
    if len(isvcs) != 1 or len(docs) != 1:
        kinds = ", ".join(f"{d.get('kind')}/{d.get('metadata', {}).get('name')}" for d in docs)
        raise DeployError(
            f"overlay {env} must render exactly one InferenceService, got: {kinds or 'nothing'}"
        )
    isvc = isvcs[0]
    model = isvc["spec"]["predictor"]["model"]
    if (
        model.get("storageUri") != record.spec.model.storage_uri
        or model.get("image") != record.spec.code.image
    ):
        raise DeployError(
            f"overlay {env} does not carry its record (storageUri {model.get('storageUri')}, image "
            f"{model.get('image')}): is components/model-version still in its kustomization?"
        )
    return Target(record, isvc)


def conditions_of(isvc: dict[str, Any] | None) -> tuple[bool, str]:
    """The InferenceService's Ready condition, and what is not True when it is not."""
    if isvc is None:
        return False, "the InferenceService does not exist"
    conditions = {c["type"]: c for c in isvc.get("status", {}).get("conditions", [])}
    top = conditions.get("Ready")
    if top and top.get("status") == "True":
        return True, "Ready"
    waiting = [
        f"{c['type']}={c.get('status')}"
        + (f" ({c.get('reason') or c.get('message')})" if c.get("reason") or c.get("message") else "")
        for c in conditions.values()
        if c.get("status") != "True"
    ]
    return False, "; ".join(waiting) or "no conditions yet"


def deployment_name(isvc_name: str, predictor: str | None = None) -> str:
    """KServe's Standard-mode Deployment of a predictor: <isvc>[-<name>]-predictor."""
    return f"{isvc_name}-{predictor}-predictor" if predictor else f"{isvc_name}-predictor"


def runs(deployment: dict[str, Any] | None, model: dict[str, Any]) -> tuple[bool, str]:
    """Whether a predictor Deployment has rolled out exactly `model` (its content hash and image).

    Why not the InferenceService's status.observedGeneration: in Standard mode KServe copies the
    Deployment's observedGeneration there, so it matches the InferenceService's generation only by
    coincidence (a traffic change bumps one and not the other). What runs is the Deployment's."""
    if deployment is None:
        return False, "its Deployment does not exist yet"
    want_hash = env_value(model, "SHIPYARD_CONTENT_HASH")
    containers = deployment["spec"]["template"]["spec"].get("containers", [])
    main = next(
        (c for c in containers if c.get("name") == "kserve-container"), containers[0] if containers else {}
    )
    have_hash = env_value(main, "SHIPYARD_CONTENT_HASH")
    if have_hash != want_hash:
        return False, f"Deployment {deployment['metadata']['name']} runs {have_hash}, not {want_hash}"
    if model.get("image") and main.get("image") != model["image"]:
        return False, f"Deployment {deployment['metadata']['name']} runs image {main.get('image')}"
    status = deployment.get("status", {})
    want = deployment["spec"].get("replicas", 1)
    if status.get("observedGeneration") != deployment["metadata"].get("generation"):
        return False, f"Deployment {deployment['metadata']['name']} not yet observed"
    if status.get("updatedReplicas", 0) < want or status.get("availableReplicas", 0) < want:
        return False, (
            f"Deployment {deployment['metadata']['name']}: {status.get('updatedReplicas', 0)} updated, "
            f"{status.get('availableReplicas', 0)} available of {want}"
        )
    if status.get("replicas", 0) > want:
        return False, f"Deployment {deployment['metadata']['name']}: old pods still terminating"
    return True, "rolled out"


def serving(
    kubectl: Kubectl, target: Target, model: dict[str, Any], predictor: str | None = None
) -> tuple[bool, str]:
    """Ready, with the stable (or the named canary) predictor's Deployment rolled out on `model`."""
    ok, why = conditions_of(kubectl.get(ISVC, target.name, target.namespace))
    if not ok:
        return ok, why
    deployment = kubectl.get("deployment", deployment_name(target.name, predictor), target.namespace)
    return runs(deployment, model)


def wait_until(
    what: str, probe: Callable[[], tuple[bool, str]], timeout: float, interval: float = 1.0
) -> None:
    deadline = time.monotonic() + timeout
    detail = ""
    while True:
        ok, detail = probe()
        if ok:
            return
        if time.monotonic() >= deadline:
            raise DeployError(f"{what}: not done after {timeout:.0f}s: {detail}")
        time.sleep(interval)


def pod_problems(kubectl: Kubectl, namespace: str, selector: str) -> str:
    """Why the predictor's pods are not running: Deployments that cannot create them (admission,
    quota) and pods that cannot start (Unschedulable, image pulls), for a timeout message."""
    reasons = []
    for kind in ("deployments", "pods"):
        try:
            items = json.loads(kubectl.run("get", kind, "-n", namespace, "-l", selector, "-o", "json"))
        except (DeployError, json.JSONDecodeError):
            continue
        for item in items.get("items", []):
            for cond in item.get("status", {}).get("conditions", []):
                failing = cond.get("status") != "True" or cond.get("type") == "ReplicaFailure"
                if failing and cond.get("message"):
                    reasons.append(f"{item['metadata']['name']}: {cond.get('reason')}: {cond['message']}")
    return "; ".join(reasons[:4])


def apply_target(
    kubectl: Kubectl, target: Target, timeout: float, docs: list[dict[str, Any]] | None = None
) -> None:
    """Server-side apply (idempotent: the same record twice changes nothing) and wait for Ready."""
    applied = docs or [target.isvc]
    kubectl.apply(applied)
    model = applied[0]["spec"]["predictor"]["model"]

    def probe() -> tuple[bool, str]:
        return serving(kubectl, target, model, applied[0]["spec"]["predictor"].get("name"))

    try:
        wait_until(f"InferenceService {target.namespace}/{target.name}", probe, timeout)
    except DeployError as exc:
        pods = pod_problems(kubectl, target.namespace, f"serving.kserve.io/inferenceservice={target.name}")
        raise DeployError(f"{exc}" + (f"; pods: {pods}" if pods else "")) from exc


def running_model(isvc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stable predictor's model block as the cluster has it (None: nothing deployed)."""
    if isvc is None:
        return None
    model: dict[str, Any] = isvc.get("spec", {}).get("predictor", {}).get("model", {})
    return model or None


def env_value(model: dict[str, Any], name: str) -> str | None:
    for item in model.get("env", []):
        if item.get("name") == name:
            return str(item.get("value"))
    return None


# -- the record against the cluster (`shipyard status`, `shipyard triage`) ---------------------
class LiveModel(BaseModel):
    """The stable predictor of a live InferenceService: what the cluster was told to serve."""

    model_config = ConfigDict(frozen=True)

    storage_uri: str | None
    content_hash: str | None
    version: str | None
    image: str | None
    canary: list[str]
    ready: bool
    ready_detail: str


def live_model(isvc: Mapping[str, Any] | None) -> LiveModel | None:
    """None when the InferenceService (or its predictor's model) does not exist."""
    if isvc is None:
        return None
    model: dict[str, Any] = isvc.get("spec", {}).get("predictor", {}).get("model", {}) or {}
    if not model:
        return None
    ready, detail = conditions_of(dict(isvc))
    return LiveModel(
        storage_uri=model.get("storageUri"),
        content_hash=env_value(model, "SHIPYARD_CONTENT_HASH"),
        version=env_value(model, "SHIPYARD_MODEL_VERSION"),
        image=model.get("image"),
        canary=[str(c.get("predictor", {}).get("name")) for c in isvc["spec"].get("canary", []) or []],
        ready=ready,
        ready_detail=detail,
    )


def differences(record: Release, live: LiveModel) -> list[tuple[str, str, str | None]]:
    """(field, the record's value, the cluster's) for every field where they differ."""
    spec = record.spec
    pairs = (
        ("storageUri", spec.model.storage_uri, live.storage_uri),
        ("contentHash", spec.model.content_hash, live.content_hash),
        ("model", spec.model.version, live.version),
        ("image", spec.code.image, live.image),
    )
    return [(name, want, have) for name, want, have in pairs if (have or "").rstrip("/") != want.rstrip("/")]
