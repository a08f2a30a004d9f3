"""Shipyard: continuous training on KFP v2, Feast and KServe, for any project."""

from importlib import metadata

__version__ = metadata.version("shipyard")  # one place: pyproject.toml
