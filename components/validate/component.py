from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.images import COMPONENT_IMAGE

__all__ = ["validate"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate(
    tickets: Input[Dataset],
    customer_profile: Input[Dataset],
    customer_activity: Input[Dataset],
    max_violation_rate: float,
    report: Output[Markdown],
) -> int:
    """Schema and quality rules; writes the report, then fails the run naming column and rule."""
    from shipyard.steps import validate_step

    return validate_step(
        tickets.path, customer_profile.path, customer_activity.path, report.path, max_violation_rate
    )
