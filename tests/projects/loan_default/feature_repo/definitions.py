"""Applicant entity, the monthly bureau snapshot view, and the service the loan model reads."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

applicant = Entity(name="applicant", join_keys=["applicant_id"], value_type=ValueType.INT64)

bureau_source = FileSource(
    name="bureau_source",
    path="data/bureau.parquet",
    timestamp_field="reported_at",
)

bureau = FeatureView(
    name="bureau",
    entities=[applicant],
    ttl=timedelta(days=45),
    schema=[
        Field(name="credit_score", dtype=Int64),
        Field(name="income", dtype=Float64),
        Field(name="debt_ratio", dtype=Float64),
        Field(name="open_loans", dtype=Int64),
    ],
    source=bureau_source,
    online=True,
)

loan_default_v1 = FeatureService(name="loan_default_v1", features=[bureau])
