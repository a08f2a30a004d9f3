"""Ticket routing's vocabulary, in one place.

The project spec, the generator, the validation rules and the Feast repo read these names, so a
renamed column or a new department is a one-line change that every layer of the use case sees. The
platform never imports this module: it learns the same facts from `ticket_routing.PROJECT`.
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

# Source tables: names in the project spec, and their parquet files in the data directory (the Feast
# file sources point at the same files, relative to the feature repo).
TICKETS_TABLE: Final = "tickets"
PROFILE_TABLE: Final = "customer_profile"
ACTIVITY_TABLE: Final = "customer_activity"
TICKETS_FILE: Final = "tickets.parquet"
PROFILE_FILE: Final = "customer_profile.parquet"
ACTIVITY_FILE: Final = "customer_activity.parquet"
SOURCE_FILES: Final = (TICKETS_FILE, PROFILE_FILE, ACTIVITY_FILE)

TICKET_COLUMNS: Final = {
    "ticket_id": "string",
    ENTITY_KEY: "int64",
    TIMESTAMP: "timestamp",
    TEXT: "string",
    LABEL: "string",
    "label_available_at": "timestamp",
}
PROFILE_COLUMNS: Final = {
    ENTITY_KEY: "int64",
    TIMESTAMP: "timestamp",
    CREATED: "timestamp",
    "region": "string",
    "segment": "string",
    "is_employee": "int64",
    "account_age_days": "int64",
    "num_products": "int64",
}
ACTIVITY_COLUMNS: Final = {
    ENTITY_KEY: "int64",
    TIMESTAMP: "timestamp",
    CREATED: "timestamp",
    "open_invoices": "int64",
    "recent_orders_30d": "int64",
    "failed_logins_7d": "int64",
    "days_since_last_payment": "float64",
}

MAX_TEXT_LENGTH: Final = 5_000
