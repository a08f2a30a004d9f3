"""Feature views, read top to bottom: slow-moving profile, fast-moving activity, request-time text.

TTLs are a little longer than each snapshot period: a ticket sees the latest snapshot written before
it, and a customer whose snapshots stopped arriving gets missing values rather than stale ones.
"""

from datetime import timedelta

import pandas as pd
from data_sources import customer_activity_source, customer_profile_source, ticket_request
from entities import customer
from feast import FeatureView, Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from ticket_routing.features import TEXT_FEATURES

# Who the customer is: region and segment shift routing (business customers order more hardware),
# employees write to HR.
customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=45),
    schema=[
        Field(name="region", dtype=String),
        Field(name="segment", dtype=String),
        Field(name="is_employee", dtype=Int64),
        Field(name="account_age_days", dtype=Int64),
        Field(name="num_products", dtype=Int64),
    ],
    source=customer_profile_source,
    online=True,
    tags={"owner": "ml-platform", "snapshot": "monthly"},
)

# What the customer is going through right now: open invoices point to accounting, recent orders
# to inventory, failed logins to IT.
customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    ttl=timedelta(days=14),
    schema=[
        Field(name="open_invoices", dtype=Int64),
        Field(name="recent_orders_30d", dtype=Int64),
        Field(name="failed_logins_7d", dtype=Int64),
        Field(name="days_since_last_payment", dtype=Float64),
    ],
    source=customer_activity_source,
    online=True,
    tags={"owner": "ml-platform", "snapshot": "weekly"},
)


# What the ticket says: computed at request time by the same function in training and serving.
# Feast stores this function's source and re-executes it alone, hence the import inside the body.
@on_demand_feature_view(
    sources=[ticket_request],
    schema=[Field(name=name, dtype=Int64) for name in TEXT_FEATURES],
    mode="pandas",
    description="Length, digits and department keyword counts of the ticket text.",
)
def ticket_text(inputs: pd.DataFrame) -> pd.DataFrame:
    from ticket_routing.features import text_features_frame

    return text_features_frame(inputs)
