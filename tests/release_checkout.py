"""A throwaway checkout for the promotion tests: a git repository holding the environments, the
overlays and the compiled pipeline, whose environments point at local registries and at a trained
stack's feature repo, so `shipyard release ...` runs exactly as in CI, by its console script, in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipyard.registry import COMPUTED_METADATA, ModelRegistry
from tests.image.engine import CRANE, crane_registry
from tests.integration.serving_stack import Stack
from tests.s3server import S3Server

ROOT = Path(__file__).resolve().parents[1]
SHIPYARD = Path(sys.executable).parent / "shipyard"
DEPLOYED = ("dev", "staging", "prod")


@contextlib.contextmanager
def image_registry(directory: Path) -> Iterator[str]:
    """A real OCI registry on loopback (`crane registry serve`) holding one small image; yields the
    image by digest, so `release check` resolves it like ghcr.io in CI."""
    layer = directory / "layer.tar.gz"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "VERSION").write_text("shipyard test image\n")
    with tarfile.open(layer, "w:gz") as tar:
        tar.add(directory / "VERSION", arcname="VERSION")
    with crane_registry(directory) as address:
        tag = f"{address}/shipyard-mlops/shipyard:test"
        subprocess.run(
            [str(CRANE), "append", "--insecure", "-f", str(layer), "-t", tag], check=True, capture_output=True
        )
        digest = subprocess.run(
            [str(CRANE), "digest", "--insecure", tag], check=True, capture_output=True, text=True
        ).stdout.strip()
        yield f"{address}/shipyard-mlops/shipyard@{digest}"


@dataclass
class Checkout:
    root: Path
    registries: dict[str, str]  # a directory, or s3://bucket/<env> on the test's MinIO
    image: str
    storage_options: dict[str, Any] | None = None
    extra_env: dict[str, str] | None = None

    def registry(self, env: str) -> ModelRegistry:
        return ModelRegistry(self.registries[env], self.storage_options)

    def shipyard(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """The real CLI in the checkout (exit code and output kept for the test to judge)."""
        full_env = {**os.environ, "SHIPYARD_IMAGE": self.image, **(self.extra_env or {}), **(env or {})}
        full_env.pop("SHIPYARD_SETTINGS", None)
        full_env.pop("SHIPYARD_HOME", None)
        return subprocess.run(
            [str(SHIPYARD), *args],
            cwd=self.root,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, capture_output=True, text=True, check=True, timeout=60
        ).stdout

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def record(self, env: str) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load(
            (self.root / "manifests" / "overlays" / env / "release.yaml").read_text()
        )
        return doc

    def settings_file(self, env: str) -> Path:
        return self.root / "environments" / f"{env}.yaml"

    def edit_settings(self, env: str, **changes: Any) -> None:
        path = self.settings_file(env)
        data = yaml.safe_load(path.read_text())
        for key, value in changes.items():
            data[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def make_checkout(
    base: Path, stack: Stack, image: str, namespaces: dict[str, str] | None = None, s3: S3Server | None = None
) -> Checkout:
    """`namespaces` moves each environment's overlay into a test namespace (and the storage
    container the chart creates for it there); `s3` puts the registries on MinIO, as a cluster's
    storage initializer needs them (it downloads s3:// URIs, not paths of this machine)."""
    root = base / "repo"
    root.mkdir(parents=True)
    for name in ("environments", "manifests"):
        shutil.copytree(ROOT / name, root / name)
    (root / "pipelines").mkdir()
    shutil.copy(ROOT / "pipelines" / "training.yaml", root / "pipelines" / "training.yaml")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    if s3 is not None:
        bucket = s3.new_bucket("registry")
        registries = {env: f"s3://{bucket}/{env}" for env in DEPLOYED}
        options: dict[str, Any] | None = s3.storage_options
    else:
        registries = {env: str(base / "registries" / env) for env in DEPLOYED}
        options = None
    # staging's registry starts with the trained version (the one `make run` would have registered).
    ModelRegistry(registries["staging"], options).import_version(
        ModelRegistry(stack.registry), stack.version, "trained by the pipeline"
    )
    for env in DEPLOYED:
        path = root / "environments" / f"{env}.yaml"
        data = yaml.safe_load(path.read_text())
        data.update(
            model_registry=registries[env],
            feature_repo=str(stack.repo),
            feature_store_yaml=stack.yaml_name,
            data_dir=str(stack.data),
            state_dir=str(base / "state" / env),
            s3={"endpoint_url": s3.endpoint_url} if s3 is not None else {},
            secrets={},
            # No Kubeflow Pipelines here (tests/integration/test_pipeline_runs.py has a stand-in), and
            # monitoring publishes beside the registry, where this checkout's storage is.
            kfp={},
            monitoring={"reports": f"{registries[env]}-monitoring"},
        )
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    for env, namespace in (namespaces or {}).items():
        overlay = root / "manifests" / "overlays" / env
        kustomization = overlay / "kustomization.yaml"
        kustomization.write_text(
            kustomization.read_text().replace(f"namespace: shipyard-{env}", f"namespace: {namespace}")
        )
        predictor = overlay / "predictor.yaml"
        predictor.write_text(
            predictor.read_text().replace(
                f"shipyard-{env}-storage-initializer", f"{namespace}-storage-initializer"
            )
        )
    checkout = Checkout(root, registries, image, options, s3.env() if s3 is not None else None)
    checkout.git("init", "-q", "-b", "main")
    checkout.git("config", "user.email", "ci@shipyard.test")
    checkout.git("config", "user.name", "shipyard-ci")
    checkout.commit("the platform")
    return checkout


def another_version(reg: ModelRegistry, version: str, note: str) -> str:
    """A second registered version with the same model and a different training note, so its bytes
    (and content hash) differ. The promotion tests are about moving versions between environments,
    not about model quality; training a second model would only cost time. Returns its label."""
    source = reg.fetch(version)
    doc = json.loads((source / "version.json").read_text())
    manifest: dict[str, str] = doc["manifest"]
    files: dict[str, Path | bytes] = {name: source / name for name in manifest}
    training = json.loads((source / "training.json").read_text())
    files["training.json"] = json.dumps({**training, "note": note}, sort_keys=True).encode()
    metadata = {k: v for k, v in doc.items() if k not in COMPUTED_METADATA}
    entry = reg.get(version)
    registration = reg.register(
        files,
        metadata,
        fingerprint=f"{doc['fingerprint']}-{note}",
        passed=True,
        promote=False,
        accuracy=entry.accuracy,
        macro_f1=entry.macro_f1,
        feature_service=entry.feature_service,
        reason=note,
        evaluated_against=None,
    )
    return registration.entry.version


def write_evidence(checkout: Checkout, version: str, *, passed: bool = True, name: str | None = None) -> Path:
    """A staging-validation evidence file about `version` (as `release validate` writes one), for
    tests about what propose does with evidence rather than about the validation itself."""
    entry = checkout.registry("staging").get(version)
    path = checkout.root / "evidence" / f"{name or version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": "staging-validation",
        "environment": "staging",
        "model": {"version": version, "contentHash": entry.content_hash},
        "passed": passed,
        "checks": [{"name": "smoke", "passed": passed, "detail": "ready"}],
    }
    path.write_text(json.dumps(doc))
    return path
