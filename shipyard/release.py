"""The release record: one reviewed file per environment that says everything it runs.

`manifests/overlays/<env>/release.yaml` names together the code (git commit and the image digest the
predictor runs), the compiled pipeline that trained the model (its package version and hash), the model
(version, content hash, registry URI), the Feast feature service and a hash of its definition, the
model's input-contract hash, and who promoted it with the evidence they relied on. It is a local-only
KRM object (`config.kubernetes.io/local-config`), so kustomize reads it (the model-version component
copies its model and image into the InferenceService) and never applies it: a promotion pull request
edits this file and nothing else, and whatever deploys reads the record rather than its own inputs.

Why a typed, strict record rather than a free-form ConfigMap: a reviewer approves what the file says,
so every field must mean exactly one thing, unknown keys must fail (a typo would otherwise be silently
ignored by every reader), and every hash is checked against what it points at (`shipyard release
check`) before anything deploys it.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from shipyard.errors import ReleaseError

API_VERSION = "shipyard.io/v1alpha1"
KIND = "Release"
RECORD_FILE = "release.yaml"
LOCAL_CONFIG = {"config.kubernetes.io/local-config": "true"}

SHA256 = r"^[0-9a-f]{64}$"
GIT_SHA = r"^[0-9a-f]{40}$"
# registry/repository[:tag]@sha256:<digest>: a digest pins the bytes; a tag alone could move.
_PART = r"[a-z0-9]+([._-][a-z0-9]+)*"
IMAGE = rf"^{_PART}(:[0-9]+)?(/{_PART})+(:[\w][\w.-]{{0,127}})?@sha256:[0-9a-f]{{64}}$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

HEADER = """\
# The release record of {env}: everything this environment runs, in one reviewed file (see
# docs/promotion.md). Written by `shipyard --env {env} release propose`; checked by `shipyard release
# check`; deployed by `shipyard --env {env} release apply` (kustomize copies spec.model and
# spec.code.image into the InferenceService). Edit it only through a pull request.
"""


class _Record(BaseModel):
    """camelCase keys (a Kubernetes-style object), strict: unknown keys are errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class CodeRef(_Record):
    git_sha: str = Field(pattern=GIT_SHA, description="The commit whose code trained and serves the model.")
    image: str = Field(pattern=IMAGE, description="The component/model-server image, by digest.")


class PipelineRef(_Record):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1, description="The Shipyard package version that compiled it.")
    sha256: str = Field(pattern=SHA256, description="Hash of the compiled package (as data, key order free).")


class ModelRef(_Record):
    name: str = Field(pattern=DNS_LABEL)
    version: str = Field(pattern=r"^v[0-9]+$")
    content_hash: str = Field(pattern=SHA256)
    storage_uri: str = Field(min_length=1, description="<the environment's registry>/versions/<contentHash>.")

    @model_validator(mode="after")
    def _uri_names_the_hash(self) -> ModelRef:
        if not self.storage_uri.rstrip("/").endswith(f"/versions/{self.content_hash}"):
            raise ValueError(f"storageUri must end with /versions/{self.content_hash} (the contentHash)")
        return self


class FeaturesRef(_Record):
    feature_service: str = Field(min_length=1)
    definition_sha256: str = Field(
        pattern=SHA256, description="Hash of the service's features and types in the environment's repo."
    )


class ContractRef(_Record):
    sha256: str = Field(pattern=SHA256, description="Hash of the version's input_contract.json.")


class Evidence(_Record):
    name: str = Field(pattern=DNS_LABEL)
    uri: str = Field(min_length=1, description="Where the evidence is kept (a path in git, or a URL).")
    sha256: str = Field(pattern=SHA256)


class Promotion(_Record):
    by: str = Field(min_length=1, description="Who or what proposed it (a person, a workflow run).")
    at: datetime
    evidence: tuple[Evidence, ...] = ()

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone (e.g. 2026-11-24T10:00:00Z)")
        return value


class ReleaseSpec(_Record):
    environment: str = Field(min_length=1)
    code: CodeRef
    pipeline: PipelineRef
    model: ModelRef
    features: FeaturesRef
    contract: ContractRef
    promotion: Promotion


class Metadata(_Record):
    name: str = Field(pattern=DNS_LABEL)
    annotations: dict[str, str]

    @field_validator("annotations")
    @classmethod
    def _local_only(cls, value: dict[str, str]) -> dict[str, str]:
        if value != LOCAL_CONFIG:
            raise ValueError(
                "must be exactly {config.kubernetes.io/local-config: 'true'}: kustomize reads the record "
                "and must never apply it to the cluster"
            )
        return value


class Release(_Record):
    api_version: Literal["shipyard.io/v1alpha1"]
    kind: Literal["Release"]
    metadata: Metadata
    spec: ReleaseSpec

    @classmethod
    def of(cls, spec: ReleaseSpec) -> Release:
        return cls(
            api_version=API_VERSION,
            kind=KIND,
            metadata=Metadata(name="release", annotations=LOCAL_CONFIG),
            spec=spec,
        )


def record_path(manifests: Path, env: str) -> Path:
    return manifests / "overlays" / env / RECORD_FILE


def load_record(path: Path) -> Release:
    """The record at `path`, validated; every problem is a ReleaseError naming the file and field."""
    if not path.is_file():
        raise ReleaseError(f"{path}: no release record (run `shipyard --env <env> release propose`)")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ReleaseError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ReleaseError(f"{path}: expected a mapping at the top level")
    try:
        return Release.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ReleaseError(f"{path}: {problems}") from exc


def dump_record(record: Release) -> str:
    data = record.model_dump(mode="json")
    out = io.StringIO()
    out.write(HEADER.format(env=record.spec.environment))
    yaml.safe_dump(data, out, sort_keys=False, width=110)
    return out.getvalue()


def write_record(path: Path, record: Release) -> None:
    """Write atomically (temp file + rename): a killed `propose` leaves the old record or the new one."""
    text = dump_record(record)
    if Release.model_validate(yaml.safe_load(text)) != record:  # the file must read back as written
        raise ReleaseError(f"{path}: the record does not survive a YAML round trip")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def predictor_name(model: ModelRef) -> str:
    """The canary predictor's name for a version: readable in `kubectl get deploy` (<isvc>-v7-predictor)."""
    return model.version


def as_dict(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json")
