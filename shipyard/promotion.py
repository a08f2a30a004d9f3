"""Proposing and checking release records: what a promotion pull request contains and why it is safe.

`propose` turns "deploy v7 to prod" into a record and a PR body, or refuses with the reason: the
candidate must pass the environment's own gates (which may be stricter than the ones it was trained
under), carry the evidence the environment requires (prod: staging's validation of exactly these
bytes), and keep the feature contract the feature service promises. `check` is what the PR workflow
runs on every record: the file is valid, and every hash in it matches what it points at — the
registry's version, the contract inside it, the feature service in the environment's Feast repo, the
pipeline at the named commit, the image in its registry.

Data flows one way: settings and the registry in, a record and a Markdown body out. Nothing here
touches a cluster; `shipyard.deploy` applies a record, `shipyard.rollout` shifts traffic to it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

from shipyard.errors import RegistryError, ReleaseError, ShipyardError
from shipyard.hashing import file_sha256, json_sha256
from shipyard.registry import ModelRegistry, VersionEntry, default_cache_dir
from shipyard.release import (
    CodeRef,
    ContractRef,
    Evidence,
    FeaturesRef,
    ModelRef,
    PipelineRef,
    Promotion,
    Release,
    ReleaseSpec,
    load_record,
    record_path,
)
from shipyard.settings import Settings

CONTRACT_FILE = "input_contract.json"
PIPELINE_FILE = "pipelines/training.yaml"
_FEAST_TYPES = {  # the contract's feature types -> the Feast value types that can carry them
    "string": {"String"},
    "integer": {"Int32", "Int64", "Bool"},
    "number": {"Float32", "Float64", "Int32", "Int64", "Bool"},
}

SettingsFor = Callable[[str], Settings]


# -- facts about one version in one environment -------------------------------------------------
@dataclass(frozen=True)
class VersionFacts:
    """What a registered version says about itself (read from its verified directory)."""

    entry: VersionEntry
    uri: str
    directory: Path
    doc: dict[str, Any]  # version.json
    contract: dict[str, Any]
    contract_sha256: str
    evaluation: dict[str, Any]
    card_markdown: str

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def feature_service(self) -> str:
        return str(self.doc["feature_service"])


def version_facts(registry: ModelRegistry, version: str, cache: Path | None = None) -> VersionFacts:
    entry = registry.get(version)
    directory = registry.fetch(version, cache or default_cache_dir())
    doc = json.loads((directory / "version.json").read_text())
    contract_file = directory / CONTRACT_FILE
    if not contract_file.is_file():
        raise ReleaseError(f"{registry.uri(version)} has no {CONTRACT_FILE}: it predates input contracts")
    contract_sha = file_sha256(contract_file)
    if doc.get("input_contract_sha256") not in (None, contract_sha):
        raise ReleaseError(f"{registry.uri(version)}: {CONTRACT_FILE} does not match version.json's hash")
    evaluation_file = directory / "evaluation.json"
    card_file = directory / "MODEL_CARD.md"
    return VersionFacts(
        entry=entry,
        uri=registry.uri(version),
        directory=directory,
        doc=doc,
        contract=json.loads(contract_file.read_text()),
        contract_sha256=contract_sha,
        evaluation=json.loads(evaluation_file.read_text()) if evaluation_file.is_file() else {},
        card_markdown=card_file.read_text() if card_file.is_file() else "",
    )


# -- the feature service ------------------------------------------------------------------------
def feature_schema(settings: Settings, service: str) -> dict[str, str]:
    """feature name -> Feast type of every feature the service serves, from the environment's repo.

    Read from the repo's definitions (what `feast apply` would register), so the check needs no
    access to the environment's Feast registry database."""
    from feast.repo_operations import parse_repo

    from shipyard.featurestore import _import_feast_for_reading, _repo_on_path

    _import_feast_for_reading()
    repo = Path(settings.feature_repo)
    if not repo.is_dir():
        raise ReleaseError(f"feature repo {repo} does not exist (settings feature_repo)")
    cwd = Path.cwd()
    try:
        os.chdir(repo)  # Feast names repo modules relative to the working directory
        with _repo_on_path(repo):
            parsed = parse_repo(repo)
    except Exception as exc:  # a broken definition file: one line naming the repo, not a trace
        raise ReleaseError(
            f"cannot read the Feast definitions in {repo}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        os.chdir(cwd)
    services = {s.name: s for s in parsed.feature_services}
    if service not in services:
        raise ReleaseError(
            f"feature service {service!r} is not defined in {repo} "
            f"(defined: {', '.join(sorted(services)) or 'none'})"
        )
    views = {v.name: v for v in [*parsed.feature_views, *parsed.on_demand_feature_views]}
    schema: dict[str, str] = {}
    for projection in services[service].feature_view_projections:
        view = views.get(projection.name)
        features = projection.features or (view.features if view is not None else [])
        for feat in features:
            schema[feat.name] = str(feat.dtype).split(".")[-1]
    if not schema:
        raise ReleaseError(f"feature service {service!r} in {repo} serves no features")
    return schema


def definition_sha256(service: str, schema: Mapping[str, str]) -> str:
    return json_sha256({"feature_service": service, "features": dict(schema)})


def contract_features(contract: Mapping[str, Any], served: Mapping[str, str]) -> dict[str, str]:
    """The part of a contract the feature service must honour: name -> type of each feature the model
    reads that the service serves (request-time and on-demand inputs are the model's own business)."""
    features: dict[str, Any] = contract.get("features", {})
    return {name: str(spec["type"]) for name, spec in sorted(features.items()) if name in served}


def compatibility_problems(contract: Mapping[str, Any], served: Mapping[str, str]) -> list[str]:
    """Why the feature service cannot feed the model the contract describes ([] when it can)."""
    problems = []
    for name, want in contract_features(contract, served).items():
        have = served[name]
        if have not in _FEAST_TYPES.get(want, set()):
            problems.append(f"feature {name}: the model was trained on {want}, the service serves {have}")
    inputs = contract.get("inputs", {})
    lookups = set(inputs.get("categorical", [])) | set(inputs.get("numeric", []))
    request = {f["name"] for f in contract.get("request", [])}
    model_inputs = set(contract.get("features", {})) & lookups
    missing = sorted(model_inputs - set(served) - request - _on_demand_outputs(contract))
    if missing:
        problems.append(f"the model reads {', '.join(missing)}, which the feature service does not serve")
    return problems


def _on_demand_outputs(contract: Mapping[str, Any]) -> set[str]:
    """Columns computed at request time from request fields (the project's on-demand twins)."""
    from shipyard.project import import_callable

    outputs: set[str] = set()
    for source, path in contract.get("on_demand", {}).items():
        fn = import_callable(str(path), f"on-demand features of {source}")
        outputs |= set(fn({source: ["a b"]}))  # the twin maps request columns to feature columns
    return outputs


# -- the pipeline, the code and the image ---------------------------------------------------------
def git(root: Path, *args: str) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError as exc:
        raise ReleaseError("git is not installed: the record's commit cannot be resolved") from exc
    if result.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result.stdout


def head_commit(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def pipeline_ref(root: Path, commit: str) -> PipelineRef:
    """The compiled training pipeline committed at `commit`, hashed as data (KFP writes dict keys in
    no fixed order, so two compiles of the same pipeline differ as text but not as data)."""
    try:
        git(root, "cat-file", "-e", f"{commit}^{{commit}}")
    except ReleaseError as exc:
        raise ReleaseError(
            f"commit {commit} is not in {root} (a shallow clone? fetch the full history): {exc}"
        ) from exc
    text = git(root, "show", f"{commit}:{PIPELINE_FILE}")
    try:
        docs = list(yaml.safe_load_all(text))  # the pipeline spec, then the Kubernetes platform spec
    except yaml.YAMLError as exc:
        raise ReleaseError(f"{PIPELINE_FILE} at {commit} is not valid YAML: {exc}") from exc
    head = docs[0] if docs and isinstance(docs[0], dict) else {}
    name = str(head.get("pipelineInfo", {}).get("name", ""))
    if not name:
        raise ReleaseError(f"{PIPELINE_FILE} at {commit} is not a compiled KFP pipeline")
    package = _package_version(root, commit) or str(head.get("sdkVersion", "unknown"))
    return PipelineRef(name=name, version=package, sha256=json_sha256(docs))


def _package_version(root: Path, commit: str) -> str | None:
    import tomllib

    try:
        doc = tomllib.loads(git(root, "show", f"{commit}:pyproject.toml"))
    except (ReleaseError, tomllib.TOMLDecodeError):
        return None
    version = doc.get("project", {}).get("version")
    return str(version) if version else None


def image_exists(image: str, timeout: float = 10.0) -> None:
    """The image digest resolves in its registry (OCI distribution API: HEAD of the manifest).

    Loopback registries are spoken to over plain HTTP (a test or a `crane registry serve`), every
    other registry over HTTPS. A registry that demands a token for reads is reported as such."""
    name, _, digest = image.partition("@")
    host, _, path = name.partition("/")
    repo = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    scheme = "http" if host.split(":")[0] in ("localhost", "127.0.0.1") else "https"
    url = f"{scheme}://{host}/v2/{repo}/manifests/{digest}"
    accept = ", ".join(
        [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ]
    )
    try:
        response = httpx.head(url, headers={"Accept": accept}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ReleaseError(f"image {image}: registry {host} is unreachable ({exc})") from exc
    if response.status_code == 401:
        raise ReleaseError(f"image {image}: registry {host} requires credentials to resolve the digest")
    if response.status_code != 200:
        raise ReleaseError(f"image {image}: not found in {host} (HTTP {response.status_code})")


# -- check ----------------------------------------------------------------------------------------
@dataclass
class CheckResult:
    env: str
    path: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def check_record(
    root: Path, env: str, settings: Settings, *, offline: bool = False, cache: Path | None = None
) -> CheckResult:
    """Every hash in `env`'s record against what it points at; problems are collected, not raised,
    so one run of the PR workflow lists everything wrong at once."""
    path = record_path(root / settings.release.manifests, env)
    result = CheckResult(env, path)
    try:
        record = load_record(path)
    except ReleaseError as exc:
        result.problems.append(str(exc))
        return result
    spec = record.spec
    if spec.environment != env:
        result.problems.append(f"{path}: spec.environment is {spec.environment!r}, but the file is {env}'s")
    registry_uri = settings.model_registry.rstrip("/")
    if not spec.model.storage_uri.startswith(f"{registry_uri}/versions/"):
        result.problems.append(
            f"{path}: spec.model.storageUri {spec.model.storage_uri} is not in {env}'s registry "
            f"{registry_uri}"
        )
    result.checked.append("record schema")

    def attempt(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            result.checked.append(what)
        except ShipyardError as exc:
            result.problems.append(f"{path}: {what}: {exc}")

    def commit() -> None:
        ref = pipeline_ref(root, spec.code.git_sha)
        if ref.sha256 != spec.pipeline.sha256:
            raise ReleaseError(
                f"spec.pipeline.sha256 {spec.pipeline.sha256} but {PIPELINE_FILE} at "
                f"{spec.code.git_sha[:12]} hashes to {ref.sha256}"
            )
        if ref.name != spec.pipeline.name:
            raise ReleaseError(f"spec.pipeline.name {spec.pipeline.name!r}, the package says {ref.name!r}")

    attempt("pipeline at the commit", commit)
    for evidence in spec.promotion.evidence:
        attempt(f"evidence {evidence.name}", partial(_check_evidence, root, evidence))
    if offline:
        return result

    facts: list[VersionFacts] = []

    def model() -> None:
        registry = ModelRegistry(settings.model_registry)
        try:
            got = version_facts(registry, spec.model.version, cache)
        except RegistryError as exc:
            raise ReleaseError(str(exc)) from exc
        if got.entry.content_hash != spec.model.content_hash:
            raise ReleaseError(
                f"spec.model.contentHash {spec.model.content_hash} but {env}'s registry has "
                f"{spec.model.version} = {got.entry.content_hash}"
            )
        if got.uri.rstrip("/") != spec.model.storage_uri.rstrip("/"):
            raise ReleaseError(
                f"spec.model.storageUri {spec.model.storage_uri} but the registry says {got.uri}"
            )
        if got.name != spec.model.name:
            raise ReleaseError(f"spec.model.name {spec.model.name!r} but the version is {got.name!r}")
        if got.contract_sha256 != spec.contract.sha256:
            raise ReleaseError(
                f"spec.contract.sha256 {spec.contract.sha256} but the version's {CONTRACT_FILE} hashes "
                f"to {got.contract_sha256}"
            )
        facts.append(got)

    attempt("model version and contract in the registry", model)

    def features() -> None:
        if facts and facts[0].feature_service != spec.features.feature_service:
            raise ReleaseError(
                f"spec.features.featureService {spec.features.feature_service!r} but the model was "
                f"trained on {facts[0].feature_service!r}"
            )
        served = feature_schema(settings, spec.features.feature_service)
        got = definition_sha256(spec.features.feature_service, served)
        if got != spec.features.definition_sha256:
            raise ReleaseError(
                f"feature service {spec.features.feature_service!r} changed since the record was written "
                f"(definition {got[:12]}, record {spec.features.definition_sha256[:12]}): a change of "
                "features needs a new feature service"
            )
        if facts:
            problems = compatibility_problems(facts[0].contract, served)
            if problems:
                raise ReleaseError("; ".join(problems))

    attempt("feature service and contract compatibility", features)
    attempt("image digest", lambda: image_exists(spec.code.image))
    return result


def _check_evidence(root: Path, evidence: Evidence) -> None:
    if "://" in evidence.uri:
        raise ReleaseError(
            f"evidence {evidence.name}: only files in the repository are supported, not {evidence.uri}"
        )
    file = (root / evidence.uri).resolve()
    if not file.is_relative_to(root.resolve()):
        raise ReleaseError(f"evidence {evidence.name}: {evidence.uri} points outside the repository")
    if not file.is_file():
        raise ReleaseError(f"evidence file {evidence.uri} does not exist")
    if file_sha256(file) != evidence.sha256:
        raise ReleaseError(f"evidence file {evidence.uri} does not hash to {evidence.sha256}")


# -- propose ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proposal:
    record: Release
    path: Path
    body: str
    imported: bool  # the version was copied from the source environment's registry


def regate(facts: VersionFacts, settings: Settings) -> list[tuple[str, bool, str]]:
    """The version's recorded gate values judged against `settings.gates`: (gate, passed, detail)."""
    gates = settings.gates
    limits: dict[str, tuple[float, bool]] = {  # name -> (threshold, higher is better)
        "min_accuracy": (gates.min_accuracy, True),
        "min_macro_f1": (gates.min_macro_f1, True),
        "beats_baseline": (gates.min_baseline_lift, True),
        "loss_converged": (gates.max_final_loss_change, False),
        "not_worse_than_champion": (-gates.max_champion_regression, True),
    }
    recorded = facts.evaluation.get("gates", [])
    if not recorded:
        return [("evaluation", False, "the version has no evaluation.json gates")]
    rows = []
    for gate in recorded:
        name, value = gate["name"], gate.get("value")
        if name not in limits:
            rows.append((name, bool(gate.get("passed")), str(gate.get("detail", ""))))
            continue
        threshold, higher = limits[name]
        ok = value is not None and (value >= threshold if higher else value <= threshold)
        if name == "loss_converged":
            ok = ok and bool(gate.get("passed"))  # it also requires the loss to have fallen
        shown = "n/a" if value is None else f"{value:.4f}"
        rows.append(
            (name, ok, f"{shown} {'>=' if higher else '<='} {threshold:.4f} ({gate.get('detail', '')})")
        )
    return rows


def read_evidence(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReleaseError(f"evidence {path}: not readable JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ReleaseError(f"evidence {path}: expected a JSON object with a name")
    return doc


def propose(
    root: Path,
    env: str,
    version: str,
    settings_for: SettingsFor,
    *,
    by: str,
    image: str,
    git_sha: str | None = None,
    evidence: list[Path] | None = None,
    now: datetime | None = None,
    cache: Path | None = None,
) -> Proposal:
    """A new record for `env` serving `version`, or a ReleaseError saying why not. Writes nothing:
    the caller writes the record (and the version is imported into `env`'s registry only when
    everything else passed, see `import_for`)."""
    settings = settings_for(env)
    source_env = settings.release.source or env
    source = ModelRegistry(settings_for(source_env).model_registry)
    try:
        facts = version_facts(source, version, cache)
    except RegistryError as exc:
        raise ReleaseError(f"{env}: {exc}") from exc
    refusals: list[str] = []
    if facts.entry.status in ("rejected", "quarantined"):
        refusals.append(
            f"{version} is {facts.entry.status} in {source_env}'s registry ({facts.entry.reason})"
        )
    gate_rows = regate(facts, settings)
    refusals += [
        f"gate {name} fails under {env}'s gates: {detail}" for name, ok, detail in gate_rows if not ok
    ]

    attached: list[tuple[Path, dict[str, Any]]] = [(p, read_evidence(p)) for p in evidence or []]
    for name in settings.release.requires_evidence:
        found = [(p, d) for p, d in attached if d["name"] == name]
        if not found:
            refusals.append(
                f"{env} requires evidence {name!r} (e.g. `shipyard --env {source_env} release validate`)"
            )
            continue
        path, doc = found[0]
        model = doc.get("model", {})
        if model.get("contentHash") != facts.entry.content_hash:
            refusals.append(
                f"evidence {path} is about {model.get('version')} ({str(model.get('contentHash'))[:12]}), "
                f"not {version} ({facts.entry.content_hash[:12]})"
            )
        elif doc.get("environment") != source_env:
            refusals.append(f"evidence {path} was taken in {doc.get('environment')!r}, not {source_env}")
        elif doc.get("passed") is not True:
            failed = [c["name"] for c in doc.get("checks", []) if not c.get("passed")]
            refusals.append(f"evidence {path} did not pass ({', '.join(failed) or 'passed is not true'})")

    served = feature_schema(settings, facts.feature_service)
    refusals += compatibility_problems(facts.contract, served)
    current: Release | None = None
    current_facts: VersionFacts | None = None
    path = record_path(root / settings.release.manifests, env)
    if path.exists():
        current = load_record(path)
        if current.spec.model.content_hash == facts.entry.content_hash:
            refusals.append(f"{env} already runs {version} ({facts.entry.content_hash[:12]})")
        try:
            current_facts = version_facts(
                ModelRegistry(settings.model_registry), current.spec.model.version, cache
            )
        except RegistryError:
            current_facts = None  # the body says the old version could not be read
        if current.spec.features.feature_service == facts.feature_service and current_facts is not None:
            before = contract_features(current_facts.contract, served)
            after = contract_features(facts.contract, served)
            if before != after:
                changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
                refusals.append(
                    f"the input contract changes features {', '.join(changed)} but keeps feature service "
                    f"{facts.feature_service!r}: publish the change as a new feature service"
                )
    commit = git_sha or head_commit(root)
    try:
        pipeline = pipeline_ref(root, commit)
    except ReleaseError as exc:
        refusals.append(str(exc))
        pipeline = None
    if refusals:
        raise ReleaseError(f"cannot propose {version} for {env}:\n  - " + "\n  - ".join(refusals))
    assert pipeline is not None

    registry_uri = settings.model_registry.rstrip("/")
    spec = ReleaseSpec(
        environment=env,
        code=CodeRef(git_sha=commit, image=image),
        pipeline=pipeline,
        model=ModelRef(
            name=facts.name,
            version=version,
            content_hash=facts.entry.content_hash,
            storage_uri=f"{registry_uri}/versions/{facts.entry.content_hash}",
        ),
        features=FeaturesRef(
            feature_service=facts.feature_service,
            definition_sha256=definition_sha256(facts.feature_service, served),
        ),
        contract=ContractRef(sha256=facts.contract_sha256),
        promotion=Promotion(
            by=by,
            at=(now or datetime.now(UTC)).replace(microsecond=0),
            evidence=tuple(
                Evidence(name=d["name"], uri=_repo_relative(root, p), sha256=file_sha256(p))
                for p, d in attached
            ),
        ),
    )
    record = Release.of(spec)
    body = pr_body(record, facts, current, current_facts, gate_rows, [d for _, d in attached], source_env)
    return Proposal(record=record, path=path, body=body, imported=source_env != env)


def import_for(env: str, version: str, settings_for: SettingsFor) -> str | None:
    """Copy `version` into `env`'s registry from its source environment's (None: nothing to copy)."""
    settings = settings_for(env)
    if not settings.release.source or settings.release.source == env:
        return None
    target = ModelRegistry(settings.model_registry)
    source = ModelRegistry(settings_for(settings.release.source).model_registry)
    reg = target.import_version(source, version, f"promoted from {settings.release.source}")
    return reg.uri


def _repo_relative(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError as exc:
        raise ReleaseError(
            f"evidence {path} must be a file inside the repository ({root}), so the PR carries it"
        ) from exc


# -- the pull request body -------------------------------------------------------------------------
def pr_body(
    record: Release,
    facts: VersionFacts,
    current: Release | None,
    current_facts: VersionFacts | None,
    gate_rows: list[tuple[str, bool, str]],
    evidence: list[dict[str, Any]],
    source_env: str,
) -> str:
    spec = record.spec
    env = spec.environment
    was = f"{current.spec.model.version}" if current else "nothing"
    lines = [
        f"## Promote {spec.model.name} {spec.model.version} to {env}",
        "",
        f"{env} runs **{was}** today; this PR makes it run **{spec.model.version}** "
        f"(`{spec.model.content_hash[:12]}`), trained by pipeline `{spec.pipeline.name}` at "
        f"`{spec.code.git_sha[:12]}`"
        + (f", copied byte for byte from {source_env}'s registry." if source_env != env else "."),
        "",
        "Merging deploys it: "
        + (
            "a canary rollout (`shipyard --env prod release rollout`)."
            if env == "prod"
            else f"`shipyard --env {env} release apply`."
        ),
        "",
        "### Metrics (test holdout of each version's own evaluation)",
        "",
        "| metric | "
        + (f"{current.spec.model.version} (now) | " if current else "")
        + f"{spec.model.version} | delta |",
        "| --- | " + ("---: | " if current else "") + "---: | ---: |",
    ]
    new = facts.evaluation.get("candidate", {})
    old = current_facts.evaluation.get("candidate", {}) if current_facts else {}

    def row(label: str, a: float | None, b: float | None) -> str:
        delta = f"{b - a:+.3f}" if a is not None and b is not None else ""
        left = (f"{a:.3f} | " if a is not None else "n/a | ") if current else ""
        return f"| {label} | {left}{b:.3f} | {delta} |" if b is not None else f"| {label} | {left}n/a | |"

    lines.append(row("accuracy", old.get("accuracy"), new.get("accuracy")))
    lines.append(row("macro-F1", old.get("macro_f1"), new.get("macro_f1")))
    for label, scores in new.get("per_label", {}).items():
        before = old.get("per_label", {}).get(label, {}).get("f1")
        lines.append(row(f"F1 {label}", before, scores.get("f1")))
    if current and current_facts is None:
        lines += ["", f"({current.spec.model.version}'s evaluation could not be read from {env}'s registry.)"]
    lines += [
        "",
        f"### Gates ({env}'s thresholds)",
        "",
        "| gate | passed | value vs threshold |",
        "| --- | :---: | --- |",
    ]
    lines += [f"| {name} | {'yes' if ok else 'NO'} | {detail} |" for name, ok, detail in gate_rows]
    for doc in evidence:
        lines += ["", f"### Evidence: {doc['name']} ({doc.get('environment', '?')})", ""]
        for check in doc.get("checks", []):
            verdict = "PASS" if check.get("passed") else "FAIL"
            lines.append(f"- {verdict} **{check['name']}**: {check.get('detail', '')}")
    drift = [d for d in evidence if d.get("name") == "monitoring"]
    lines += ["", "### Drift since training", ""]
    if drift:
        lines.append(str(drift[0].get("summary", "")))
    else:
        lines.append(f"No monitoring run was attached (`shipyard --env {source_env} monitor run`).")
    lines += [
        "",
        "### Record",
        "",
        f"- code: `{spec.code.git_sha}`, image `{spec.code.image}`",
        f"- pipeline: `{spec.pipeline.name}` {spec.pipeline.version} sha256 `{spec.pipeline.sha256[:12]}`",
        f"- model: `{spec.model.storage_uri}`",
        f"- features: `{spec.features.feature_service}` definition "
        f"`{spec.features.definition_sha256[:12]}`, contract `{spec.contract.sha256[:12]}`",
        f"- proposed by {spec.promotion.by} at {spec.promotion.at.isoformat()}",
        "",
        "<details><summary>Model card</summary>",
        "",
        facts.card_markdown.strip(),
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)
