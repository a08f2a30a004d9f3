"""A second, deliberately different project that keeps the platform honest.

Loan default: another entity (applicant), numeric-only features (no text, no on-demand view), two
classes, request fields that are numbers the model reads directly, its own feature-table timestamp
name, its own model factory, validation rules, Feast repo and generator. It runs through the same
compiled pipeline, registry and model server as the reference project with no platform change;
if making it work ever needs a platform edit, the platform had a use case baked in.
"""

from __future__ import annotations

from shipyard.project import CardText, ProjectSpec, RequestField, Table

__all__ = ["PROJECT"]

PROJECT = ProjectSpec(
    name="loan-default",
    description="Predicts whether a loan application will be repaid, from the application and bureau data.",
    entity_key="applicant_id",
    event_id="application_id",
    timestamp="applied_at",
    label="outcome",
    label_available_at="outcome_known_at",
    classes=("repaid", "defaulted"),
    request=(
        RequestField(name="applicant_id", type="integer", min=1),
        RequestField(name="amount", type="number", min=100, max=1_000_000, description="EUR requested."),
        RequestField(name="term_months", type="integer", min=6, max=120),
        # Passed through and logged so monitoring can join the outcome once it is known; not an input.
        RequestField(name="application_id", type="integer", required=False, min=0),
    ),
    feature_service="loan_default_v1",
    events_table="applications",
    tables={
        "applications": Table(
            file="applications.parquet",
            columns={
                "application_id": "int64",
                "applicant_id": "int64",
                "applied_at": "timestamp",
                "amount": "float64",
                "term_months": "int64",
                "outcome": "string",
                "outcome_known_at": "timestamp",
            },
        ),
        "bureau": Table(
            file="bureau.parquet",
            columns={
                "applicant_id": "int64",
                "reported_at": "timestamp",
                "credit_score": "int64",
                "income": "float64",
                "debt_ratio": "float64",
                "open_loans": "int64",
            },
            feast_source="bureau_source",
            timestamp="reported_at",
        ),
    },
    validation="tests.projects.loan_default.rules:RULES",
    model="tests.projects.loan_default.model:build",
    hyperparameters={"alpha": 1e-3, "degree": 2},
    generator="tests.projects.loan_default.data:generate_data",
    card=CardText(
        title="loan default risk",
        intended_use="Test project: ranks loan applications by default risk.",
        limitations="Synthetic data; exists to prove the platform has no use case baked in.",
        estimator="scaled numerics + degree-2 interactions -> SGD logistic regression",
    ),
    examples=({"amount": 12_000.0, "term_months": 36}, {"amount": 250_000.0, "term_months": 120}),
)
