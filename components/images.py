"""The one place that pins the component image.

The tag is the package version, so the compiled pipeline YAML names the exact release it runs; CI
builds this image from the repository's Dockerfile under that tag.
"""

from importlib import metadata
from typing import Final

__all__ = ["COMPONENT_IMAGE", "IMAGE_REPOSITORY"]

IMAGE_REPOSITORY: Final = "ghcr.io/shipyard-mlops/shipyard"
COMPONENT_IMAGE: Final = f"{IMAGE_REPOSITORY}:{metadata.version('shipyard')}"
