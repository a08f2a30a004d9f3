"""The reference use case's vocabulary, in one place.

The generator, the validation rules, the Feast repo, training and serving all read these names, so a
renamed column or a new department is a one-line change that every layer sees.
"""

from __future__ import annotations

from typing import Final

DEPARTMENTS: Final = ("accounting", "inventory", "hr", "it")
REGIONS: Final = ("north", "south", "east", "west", "central")
SEGMENTS: Final = ("retail", "small_business", "corporate")

ENTITY_KEY: Final = "customer_id"
TIMESTAMP: Final = "event_timestamp"
CREATED: Final = "created"
LABEL: Final = "department"
TEXT: Final = "ticket_text"

# Source tables (parquet files in the data directory; the Feast file sources point at the same files).
TICKETS_FILE: Final = "tickets.parquet"
PROFILE_FILE: Final = "customer_profile.parquet"
ACTIVITY_FILE: Final = "customer_activity.parquet"
SOURCE_FILES: Final = (TICKETS_FILE, PROFILE_FILE, ACTIVITY_FILE)

TICKET_COLUMNS: Final = {
    "ticket_id": "string",
    ENTITY_KEY: "int64",
    TIMESTAMP: "datetime64[ns, UTC]",
    TEXT: "string",
    LABEL: "string",
    "label_available_at": "datetime64[ns, UTC]",
}
PROFILE_COLUMNS: Final = {
    ENTITY_KEY: "int64",
    TIMESTAMP: "datetime64[ns, UTC]",
    CREATED: "datetime64[ns, UTC]",
    "region": "string",
    "segment": "string",
    "is_employee": "int64",
    "account_age_days": "int64",
    "num_products": "int64",
}
ACTIVITY_COLUMNS: Final = {
    ENTITY_KEY: "int64",
    TIMESTAMP: "datetime64[ns, UTC]",
    CREATED: "datetime64[ns, UTC]",
    "open_invoices": "int64",
    "recent_orders_30d": "int64",
    "failed_logins_7d": "int64",
    "days_since_last_payment": "float64",
}

MAX_TEXT_LENGTH: Final = 5_000

# Features the model consumes, grouped by how they are encoded. The batch ones come from Feast
# feature views; the text ones from the on-demand feature view (shipyard.features).
CATEGORICAL_FEATURES: Final = ("region", "segment")
NUMERIC_BATCH_FEATURES: Final = (
    "is_employee",
    "account_age_days",
    "num_products",
    "open_invoices",
    "recent_orders_30d",
    "failed_logins_7d",
    "days_since_last_payment",
)
