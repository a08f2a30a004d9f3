"""Typed, strict per-environment settings.

One YAML file per environment (local, dev, staging, prod) carries every difference between them, so
business logic never branches on the environment's name. Unknown keys are errors: a typo in a
deployed config must fail loudly, not fall back to a default.
"""

from __future__ import annotations

import os
from datetime import date
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.errors import SettingsError
from shipyard.thresholds import Thresholds

ENVIRONMENTS = ("local", "dev", "staging", "prod")


class SyntheticSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(5_000, ge=1)
    tickets: int = Field(20_000, ge=1)
    start: date = date(2025, 1, 1)
    end: date = date(2025, 12, 31)
    seed: int = 20251


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str
    namespace: str | None = Field(None, description="Kubernetes namespace; None when running locally.")
    feature_repo: Path = Path("feature_repo")
    feature_store_yaml: str = Field("feature_store.yaml", description="Relative to feature_repo.")
    feature_service: str = "ticket_routing_v1"
    data_dir: Path = Field(Path("feature_repo/data"), description="Where the source tables live.")
    model_registry: str = Field(".shipyard/models", description="Local path (fsspec URIs later).")
    pipeline_root: str = ".shipyard/pipeline_root"
    seed: int = 7
    synthetic: SyntheticSettings = SyntheticSettings()
    thresholds: Thresholds = Thresholds()

    def resolve(self, root: Path) -> Settings:
        """Anchor relative local paths at `root` (the project checkout) so cwd does not matter."""
        registry = self.model_registry
        if "://" not in registry and not Path(registry).is_absolute():
            registry = str(root / registry)
        pipeline_root = self.pipeline_root
        if "://" not in pipeline_root and not Path(pipeline_root).is_absolute():
            pipeline_root = str(root / pipeline_root)
        return self.model_copy(
            update={
                "feature_repo": root / self.feature_repo,
                "data_dir": root / self.data_dir,
                "model_registry": registry,
                "pipeline_root": pipeline_root,
            }
        )


def load_settings(env: str | None = None, path: Path | None = None) -> Settings:
    """Settings from `path`, else $SHIPYARD_SETTINGS, else the built-in file for the environment.

    The environment is `env`, else $SHIPYARD_ENV, else `local`.
    """
    env = env or os.environ.get("SHIPYARD_ENV", "local")
    if path is None and os.environ.get("SHIPYARD_SETTINGS"):
        path = Path(os.environ["SHIPYARD_SETTINGS"])
    if path is None:
        if env not in ENVIRONMENTS:
            raise SettingsError(f"unknown environment {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
        text = resources.files("shipyard.environments").joinpath(f"{env}.yaml").read_text()
        source = f"built-in settings for {env!r}"
    else:
        if not path.exists():
            raise SettingsError(f"settings file {path} does not exist")
        text = path.read_text()
        source = str(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: expected a mapping at the top level")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise SettingsError(f"{source}: {problems}") from exc
