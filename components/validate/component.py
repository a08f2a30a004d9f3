from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.images import COMPONENT_IMAGE

__all__ = ["validate"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate(
    project: str,
    events: Input[Dataset],
    features: Input[Dataset],
    gates: dict,
    report: Output[Markdown],
) -> int:
    """The project's schema and quality rules; writes the report, then fails naming column and rule."""
    from shipyard.params import Gates, parse
    from shipyard.steps import validate_step

    return validate_step(project, events.path, features.path, report.path, parse(Gates, gates, "gates"))
