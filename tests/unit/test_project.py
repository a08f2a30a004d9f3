"""The project spec: strict, self-consistent, and its import paths fail early with their name."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from shipyard.errors import ProjectError
from shipyard.project import ProjectSpec, import_callable, import_object, load_project
from shipyard.training import ModelInputs
from ticket_routing import PROJECT


def _spec(**changes: Any) -> dict[str, Any]:
    raw = PROJECT.model_dump()
    raw.update(changes)
    return raw


def test_reference_project_loads_by_package_name() -> None:
    spec = load_project("ticket_routing")
    assert spec is PROJECT
    assert spec.feature_tables.keys() == {"customer_profile", "customer_activity"}
    assert [f.name for f in spec.model_request_fields] == ["ticket_text"]
    assert spec.text_fields == ("ticket_text",)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"surprise": 1}, "surprise"),
        ({"name": "Ticket_Router"}, "name"),
        ({"classes": ("a", "a")}, "classes must be unique"),
        ({"entity_key": "account_id"}, "entity key 'account_id' must be an integer request field"),
        ({"events_table": "orders"}, "events_table: 'orders' is not one of tables"),
        ({"baselines": {"x": "not a path"}}, "x: 'not a path' is not an import path"),
        ({"model": "ticket_routing.model.build"}, "model"),
    ],
)
def test_bad_specs_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ProjectSpec.model_validate(_spec(**changes))


def test_feature_table_needs_its_feast_source_and_keys() -> None:
    tables = PROJECT.model_dump()["tables"]
    tables["customer_profile"]["feast_source"] = None
    with pytest.raises(ValidationError, match="tables.customer_profile.feast_source: required"):
        ProjectSpec.model_validate(_spec(tables=tables))
    tables = PROJECT.model_dump()["tables"]
    del tables["customer_activity"]["columns"]["customer_id"]
    with pytest.raises(ValidationError, match="tables.customer_activity.columns: missing 'customer_id'"):
        ProjectSpec.model_validate(_spec(tables=tables))


def test_import_paths_fail_with_their_name() -> None:
    with pytest.raises(
        ProjectError, match="cannot import module 'no_such_pkg.mod': No module named 'no_such_pkg'"
    ):
        import_object("no_such_pkg.mod:x")
    with pytest.raises(ProjectError, match="ticket_routing.model has no attribute 'buld'"):
        import_object("ticket_routing.model:buld")
    with pytest.raises(ProjectError, match="is not callable"):
        import_callable("ticket_routing:PROJECT", "model factory")
    with pytest.raises(ProjectError, match="is a tuple, not a ProjectSpec"):
        load_project("ticket_routing.schema:DEPARTMENTS")


def test_model_inputs_are_derived_from_the_training_set_not_declared() -> None:
    frame = pd.DataFrame(
        {
            "ticket_id": ["a"],
            "customer_id": [1],
            "event_timestamp": pd.to_datetime(["2025-01-01"], utc=True),
            "ticket_text": ["hi"],
            "department": ["it"],
            "region": pd.Series(["north"], dtype="string"),
            "is_employee": [0],
            "days_since_last_payment": [1.5],
            "new_feature_v2": [3],  # a feature a new feature service adds is read, not dropped
        }
    )
    inputs = ModelInputs.derive(frame, PROJECT)
    assert inputs.text == ("ticket_text",)
    assert inputs.categorical == ("region",)
    assert inputs.numeric == ("is_employee", "days_since_last_payment", "new_feature_v2")
    assert ModelInputs.from_json(inputs.to_json()) == inputs
