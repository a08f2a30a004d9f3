"""A project: the use case as data.

The platform (this library, the components, the pipelines, the model server) knows entities,
features, labels and models only through a `ProjectSpec`. A project is a Python package that
exposes `PROJECT = ProjectSpec(...)`; settings name it (`project: my_project`) and every
pipeline step receives that name as a parameter, so one compiled pipeline trains any project
whose package is installed in the component image. Behaviour that cannot be data (the model
factory, baselines, validation rules, request-time feature functions, a data generator) is named by
import path, resolved once, and checked for being callable, so a typo fails at load, not mid-run.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.errors import ProjectError

__all__ = [
    "CardText",
    "ColumnType",
    "ProjectSpec",
    "RequestField",
    "Table",
    "import_object",
    "load_project",
]

ColumnType = Literal["int64", "float64", "string", "timestamp", "bool"]
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestField(_Strict):
    """One field a caller sends with each prediction request."""

    name: str = Field(pattern=_IDENT)
    type: Literal["integer", "number", "string", "text", "timestamp"] = Field(
        description="`text` is free text the model reads as a whole; `string` is a category."
    )
    required: bool = True
    min: float | None = None
    max: float | None = None
    max_length: int | None = Field(None, ge=1, description="Upper bound for string/text fields.")
    description: str = ""


class Table(_Strict):
    """A source table: a parquet file in the data directory with required columns and types."""

    file: str = Field(pattern=r"^[\w.-]+\.parquet$")
    columns: dict[str, ColumnType]
    feast_source: str | None = Field(
        None, description="The Feast file source that reads this table (feature tables only)."
    )
    timestamp: str | None = Field(
        None, description="Event-time column of a feature table, when not named like the events'."
    )
    description: str = ""


class CardText(_Strict):
    """What a person reads first on a model card: what it is for and where it is weak."""

    title: str
    intended_use: str
    limitations: str
    estimator: str


class ProjectSpec(_Strict):
    """Everything the platform needs to know about one use case. See the module docstring."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=45,
        description="Model name as served (`/v1/models/<name>`): a DNS-1123 label, as KServe requires.",
    )
    description: str
    entity_key: str = Field(pattern=_IDENT, description="Join key of the Feast entity features hang off.")
    event_id: str = Field(pattern=_IDENT, description="Unique id of a labelled event.")
    timestamp: str = Field(pattern=_IDENT, description="Event time column, used for point-in-time joins.")
    label: str = Field(pattern=_IDENT)
    label_available_at: str | None = Field(
        None, description="When the label became known; training only sees labels known by the cut-off."
    )
    classes: tuple[str, ...] = Field(min_length=2)
    request: tuple[RequestField, ...]
    feature_service: str
    events_table: str = Field(pattern=_IDENT, description="The table (in `tables`) of labelled events.")
    tables: dict[str, Table]
    validation: str = Field(pattern=_IMPORT_PATH, description="-> shipyard.validation.ValidationRules")
    model: str = Field(pattern=_IMPORT_PATH, description="-> (ModelInputs, hyperparameters) -> Pipeline")
    hyperparameters: dict[str, float | int | str | bool] = {}
    baselines: dict[str, str] = Field(
        default_factory=lambda: {"majority": "shipyard.baselines:majority"},
        description="Name -> import path of (train, test, spec) -> predicted labels.",
    )
    on_demand: dict[str, str] = Field(
        default_factory=dict,
        description="Feast on-demand view name -> import path of its in-process twin for serving: "
        "(columns: dict of request field -> values) -> dict of feature -> values.",
    )
    generator: str | None = Field(
        None, pattern=_IMPORT_PATH, description="-> (out_dir, options) -> message; synthetic data."
    )
    card: CardText
    examples: tuple[dict[str, Any], ...] = Field(
        (), description="Example request rows without the entity key, for the serving demo."
    )
    max_batch: int = Field(256, ge=1, le=10_000)

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("classes must be unique")
        return value

    @field_validator("baselines", "on_demand")
    @classmethod
    def _import_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not re.match(_IMPORT_PATH, path):
                raise ValueError(f"{name}: {path!r} is not an import path like 'package.module:name'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProjectSpec:
        names = [f.name for f in self.request]
        if len(set(names)) != len(names):
            raise ValueError("request: field names must be unique")
        key = next((f for f in self.request if f.name == self.entity_key), None)
        if key is None or key.type != "integer":
            raise ValueError(f"request: the entity key {self.entity_key!r} must be an integer request field")
        if self.events_table not in self.tables:
            raise ValueError(f"events_table: {self.events_table!r} is not one of tables")
        events = self.tables[self.events_table]
        for col in (self.event_id, self.timestamp, self.label, self.entity_key, self.label_available_at):
            if col is not None and col not in events.columns:
                raise ValueError(f"tables.{self.events_table}.columns: missing {col!r}")
        for name, table in self.tables.items():
            if name != self.events_table:
                if table.feast_source is None:
                    raise ValueError(f"tables.{name}.feast_source: required for a feature table")
                for col in (self.entity_key, table.timestamp or self.timestamp):
                    if col not in table.columns:
                        raise ValueError(f"tables.{name}.columns: missing {col!r}")
        return self

    # -- derived views ----------------------------------------------------------------------------
    @property
    def feature_tables(self) -> dict[str, Table]:
        return {k: v for k, v in self.tables.items() if k != self.events_table}

    def timestamp_of(self, table: str) -> str:
        return self.tables[table].timestamp or self.timestamp

    @property
    def events(self) -> Table:
        return self.tables[self.events_table]

    @property
    def model_request_fields(self) -> tuple[RequestField, ...]:
        """Request fields the model reads itself (not the entity key, not an event id passed through
        for joining labels later, not the event time)."""
        skip = {self.entity_key, self.event_id}
        return tuple(f for f in self.request if f.name not in skip and f.type != "timestamp")

    @property
    def text_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.request if f.type == "text")

    def field(self, name: str) -> RequestField:
        for f in self.request:
            if f.name == name:
                return f
        raise ProjectError(f"project {self.name}: no request field {name!r}")


def import_object(path: str, what: str = "object") -> Any:
    """`package.module:attr` -> the object, with an error that names the path and the problem."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProjectError(f"{what} {path!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ProjectError(f"{what} {path!r}: {module_name} has no attribute {attr!r}") from None
    return obj


def import_callable(path: str, what: str) -> Callable[..., Any]:
    obj = import_object(path, what)
    if not callable(obj):
        raise ProjectError(f"{what} {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


@cache
def load_project(ref: str) -> ProjectSpec:
    """A project by package name (reads its `PROJECT`) or by `module:attr`."""
    path = ref if ":" in ref else f"{ref}:PROJECT"
    obj = import_object(path, "project")
    if isinstance(obj, Mapping):
        try:
            obj = ProjectSpec.model_validate(obj)
        except ValidationError as exc:
            raise ProjectError(f"project {ref!r}: {_problems(exc)}") from exc
    if not isinstance(obj, ProjectSpec):
        raise ProjectError(f"project {ref!r}: {path} is a {type(obj).__name__}, not a ProjectSpec")
    return obj


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
