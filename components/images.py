"""The one place that pins the component image.

CI builds this image from the repository's Dockerfile and tags it with the release; the compiled
pipeline YAML records it, so a pipeline version always names the exact code it runs.
"""

from typing import Final

__all__ = ["COMPONENT_IMAGE"]

COMPONENT_IMAGE: Final = "ghcr.io/shipyard-mlops/shipyard:0.1.0"
