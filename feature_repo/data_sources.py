"""Where feature data comes from.

The batch sources are the customer snapshot tables (parquet). Relative paths resolve against this
repo; a deployed environment points SHIPYARD_FEATURE_DATA at object storage instead. The request
source declares what a caller sends with each prediction: the ticket text.
"""

import os

from feast import Field, FileSource, RequestSource
from feast.types import String

from ticket_routing.schema import ACTIVITY_FILE, CREATED, PROFILE_FILE, TEXT, TIMESTAMP

DATA_ROOT = os.environ.get("SHIPYARD_FEATURE_DATA", "data")

customer_profile_source = FileSource(
    name="customer_profile_source",
    path=f"{DATA_ROOT}/{PROFILE_FILE}",
    timestamp_field=TIMESTAMP,
    created_timestamp_column=CREATED,
    description="Monthly CRM snapshot of each customer.",
)

customer_activity_source = FileSource(
    name="customer_activity_source",
    path=f"{DATA_ROOT}/{ACTIVITY_FILE}",
    timestamp_field=TIMESTAMP,
    created_timestamp_column=CREATED,
    description="Weekly snapshot of invoices, orders and login failures per customer.",
)

ticket_request = RequestSource(
    name="ticket_request",
    schema=[Field(name=TEXT, dtype=String)],
    description="The ticket text, known only when the ticket arrives.",
)
