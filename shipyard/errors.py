"""One exception per failure mode, so the CLI, the pipeline and (later) the server can each map a
failure to one clear message or status without parsing strings."""

from __future__ import annotations


class ShipyardError(Exception):
    """Base class: an expected failure with a message meant for a person, not a stack trace."""


class SettingsError(ShipyardError):
    """A settings file is missing, malformed, or has unknown or invalid keys."""


class SourceDataError(ShipyardError):
    """A source table is missing, unreadable or has the wrong columns or types."""


class DataValidationError(ShipyardError):
    """Source data breaks quality rules beyond the allowed thresholds."""


class RegistryError(ShipyardError):
    """The model registry is unreadable, or a write would break immutability or atomicity."""


class ModelNotFoundError(RegistryError):
    """A requested model version or champion does not exist."""


class ProjectError(ShipyardError):
    """A project spec is invalid, or one of the import paths it names cannot be resolved."""


class RegistryConflictError(RegistryError):
    """A registry write lost the race for the next index snapshot too many times in a row."""


class ReleaseError(ShipyardError):
    """A release record is invalid, points at something that does not match, or a proposal is refused."""


class DeployError(ShipyardError):
    """The cluster could not be made to match a release record (apply failed, not Ready in time)."""


class RolloutError(DeployError):
    """A canary breached its error or latency limits (and was rolled back), or could not be judged."""


class PipelineRunError(ShipyardError):
    """The environment's Kubeflow Pipelines API is not configured, unreachable, or refused a request."""


class ReportError(ShipyardError):
    """A monitoring run could not publish its report and summary where `monitoring.reports` says."""
