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
    clean_events: Output[Dataset],
    clean_features: Output[Dataset],
) -> int:
    """The project's schema and quality rules; writes the report, then fails naming column and rule.
    Passing tables come out cleaned: rows a tolerated finding names are excluded downstream."""
    from shipyard.params import Gates, parse
    from shipyard.steps import validate_step

    excluded = validate_step(
        project,
        events.path,
        features.path,
        report.path,
        parse(Gates, gates, "gates"),
        clean_events.path,
        clean_features.path,
    )
    clean_events.metadata["excluded_rows"] = excluded
    return excluded
