"""Feature services: the versioned contract between the feature store and a model.

A model version records the service it was trained on; changing the feature set means a new
service (`ticket_routing_v2`) so the running model keeps reading exactly what it was trained on.
"""

from feast import FeatureService
from feature_views import customer_activity, customer_profile, ticket_text

ticket_routing_v1 = FeatureService(
    name="ticket_routing_v1",
    features=[customer_profile, customer_activity, ticket_text],
    description="Customer context + ticket text features for department routing.",
    tags={"model": "ticket-router"},
)
