"""Entities: what features are keyed by.

Every customer feature joins on `customer_id`; the ticket itself is request data, not an entity,
because its text only exists at request time.
"""

from feast import Entity, ValueType

from ticket_routing.schema import ENTITY_KEY

customer = Entity(
    name="customer",
    join_keys=[ENTITY_KEY],
    value_type=ValueType.INT64,
    description="A bank customer who writes support tickets.",
)
