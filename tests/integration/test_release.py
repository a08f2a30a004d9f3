"""`shipyard release propose` and `check` on a real checkout (a git repository in a temp dir) with
real registries and a trained model: what a promotion PR contains, and every refusal named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shipyard.hashing import file_sha256
from tests.integration.serving_stack import Stack, build_stack
from tests.release_checkout import Checkout, another_version, image_registry, make_checkout, write_evidence


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return build_stack(tmp_path_factory.mktemp("release-stack"))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with image_registry(tmp_path_factory.mktemp("oci")) as ref:
        yield ref


@pytest.fixture
def checkout(stack: Stack, image: str, tmp_path: Path) -> Checkout:
    return make_checkout(tmp_path, stack, image)


def test_propose_staging_writes_a_record_that_check_accepts(checkout: Checkout, stack: Stack) -> None:
    body = checkout.root / "pr.md"
    result = checkout.shipyard(
        "--env",
        "staging",
        "release",
        "propose",
        "--model",
        stack.version,
        "--by",
        "ci",
        "--body-out",
        str(body),
    )
    assert result.returncode == 0, result.stderr
    record = checkout.record("staging")["spec"]
    entry = checkout.registry("staging").get(stack.version)
    assert record["model"]["version"] == stack.version
    assert record["model"]["contentHash"] == entry.content_hash
    assert record["model"]["storageUri"] == f"{checkout.registries['staging']}/versions/{entry.content_hash}"
    assert record["contract"]["sha256"] == file_sha256(stack.model_dir / "input_contract.json")
    assert record["code"]["gitSha"] == checkout.git("rev-parse", "HEAD").strip()
    assert record["promotion"]["by"] == "ci"
    text = body.read_text()
    assert f"Promote ticket-router {stack.version} to staging" in text
    assert "| min_accuracy | yes |" in text and "Model card" in text
    checkout.commit("promote staging")
    check = checkout.shipyard("release", "check", "--env", "staging")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "staging: ok" in check.stdout


def test_check_names_every_hash_that_does_not_match(checkout: Checkout, stack: Stack) -> None:
    assert (
        checkout.shipyard("--env", "staging", "release", "propose", "--model", stack.version).returncode == 0
    )
    path = checkout.root / "manifests" / "overlays" / "staging" / "release.yaml"
    good = path.read_text()
    entry = checkout.registry("staging").get(stack.version)
    cases = {
        "contract": (
            good.replace(
                f"sha256: {file_sha256(stack.model_dir / 'input_contract.json')}", "sha256: " + "a0" * 32
            ),
            "spec.contract.sha256",
        ),
        "model": (good.replace(f"version: {stack.version}", "version: v99"), "v99"),
        "pipeline": (
            good.replace(checkout.record("staging")["spec"]["pipeline"]["sha256"], "b1" * 32),
            "spec.pipeline.sha256",
        ),
        "features": (
            good.replace(checkout.record("staging")["spec"]["features"]["definitionSha256"], "c2" * 32),
            "feature service",
        ),
        "storage": (good.replace(f"/versions/{entry.content_hash}", "/versions/" + "d3" * 32), "storageUri"),
        "unknown key": (good.replace("  contract:\n", "  surprise: 1\n  contract:\n"), "spec.surprise"),
        "evidence outside the repository": (
            good.replace(
                "evidence: []",
                "evidence:\n    - {name: staging-validation, uri: ../outside.json, sha256: "
                + "ab" * 32
                + "}",
            ),
            "points outside the repository",
        ),
    }
    for name, (text, expected) in cases.items():
        path.write_text(text)
        result = checkout.shipyard("release", "check", "--env", "staging")
        assert result.returncode == 1, (name, result.stdout)
        assert expected in result.stdout, (name, result.stdout)
    path.write_text(good)
    assert checkout.shipyard("release", "check", "--env", "staging").returncode == 0


def test_propose_refuses_a_failed_gate(checkout: Checkout, stack: Stack) -> None:
    """Staging's own gates are stricter than the ones the version was trained under."""
    record = checkout.root / "manifests" / "overlays" / "staging" / "release.yaml"
    before = record.read_text()
    gates = yaml.safe_load(checkout.settings_file("staging").read_text()).get("gates", {})
    checkout.edit_settings("staging", gates={**gates, "min_accuracy": 0.999})
    result = checkout.shipyard("--env", "staging", "release", "propose", "--model", stack.version)
    assert result.returncode == 2
    assert "gate min_accuracy fails under staging's gates" in result.stderr
    assert "Traceback" not in result.stderr
    assert record.read_text() == before


def test_prod_requires_staging_evidence_about_the_same_bytes(checkout: Checkout, stack: Stack) -> None:
    before = (checkout.root / "manifests" / "overlays" / "prod" / "release.yaml").read_text()
    missing = checkout.shipyard("--env", "prod", "release", "propose", "--model", stack.version)
    assert missing.returncode == 2 and "prod requires evidence 'staging-validation'" in missing.stderr
    other = another_version(checkout.registry("staging"), stack.version, "retrained")
    wrong = checkout.shipyard(
        "--env",
        "prod",
        "release",
        "propose",
        "--model",
        stack.version,
        "--evidence",
        str(write_evidence(checkout, other)),
    )
    assert wrong.returncode == 2 and f"not {stack.version}" in wrong.stderr
    failed = checkout.shipyard(
        "--env",
        "prod",
        "release",
        "propose",
        "--model",
        stack.version,
        "--evidence",
        str(write_evidence(checkout, stack.version, passed=False)),
    )
    assert failed.returncode == 2 and "did not pass (smoke)" in failed.stderr
    # Nothing was written and nothing was copied into prod's registry by the refusals.
    assert (checkout.root / "manifests" / "overlays" / "prod" / "release.yaml").read_text() == before
    assert checkout.registry("prod").versions() == []

    good = checkout.shipyard(
        "--env",
        "prod",
        "release",
        "propose",
        "--model",
        stack.version,
        "--evidence",
        str(write_evidence(checkout, stack.version)),
    )
    assert good.returncode == 0, good.stderr
    prod = checkout.registry("prod")
    copied = prod.get(stack.version)
    assert copied.content_hash == checkout.registry("staging").get(stack.version).content_hash
    prod.fetch(stack.version)  # verified byte for byte
    record = checkout.record("prod")["spec"]
    assert record["model"]["storageUri"].startswith(str(checkout.registries["prod"]))
    assert record["promotion"]["evidence"][0]["uri"] == f"evidence/{stack.version}.json"
    checkout.commit("promote prod")
    assert checkout.shipyard("release", "check", "--env", "prod").returncode == 0


def test_a_contract_change_needs_a_new_feature_service(checkout: Checkout, stack: Stack) -> None:
    """A version whose contract reads a served feature as another type, under the same feature
    service name as the version the environment runs, is refused."""
    assert (
        checkout.shipyard("--env", "staging", "release", "propose", "--model", stack.version).returncode == 0
    )
    checkout.commit("staging runs v1")
    reg = checkout.registry("staging")
    source = reg.fetch(stack.version)
    work = checkout.root.parent / "changed"
    shutil.copytree(source, work)
    for p in work.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    contract = json.loads((work / "input_contract.json").read_text())
    contract["features"]["region"]["type"] = "integer"
    (work / "input_contract.json").write_text(json.dumps(contract))
    doc = json.loads((work / "version.json").read_text())
    files: dict[str, Path | bytes] = {n: work / n for n in doc["manifest"]}
    from shipyard.registry import COMPUTED_METADATA

    meta = {k: v for k, v in doc.items() if k not in COMPUTED_METADATA}
    meta["input_contract_sha256"] = file_sha256(work / "input_contract.json")
    entry = reg.get(stack.version)
    changed = reg.register(
        files,
        meta,
        fingerprint="changed-contract",
        passed=True,
        promote=False,
        accuracy=entry.accuracy,
        macro_f1=entry.macro_f1,
        feature_service=entry.feature_service,
        reason="test",
        evaluated_against=None,
    ).entry.version
    result = checkout.shipyard("--env", "staging", "release", "propose", "--model", changed)
    assert result.returncode == 2
    assert "the model was trained on integer, the service serves String" in result.stderr
    assert "publish the change as a new feature service" in result.stderr
