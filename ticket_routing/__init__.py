"""Ticket routing: Shipyard's reference project.

A bank routes customer support tickets to accounting, inventory, HR or IT from the ticket text (known
at request time) plus customer context features served by Feast. Everything specific to that use
case lives in this package and in `feature_repo/`; the platform reads it only through `PROJECT`.
"""

from __future__ import annotations

from shipyard.project import CardText, ProjectSpec, RequestField, Table
from ticket_routing.schema import (
    ACTIVITY_COLUMNS,
    ACTIVITY_FILE,
    ACTIVITY_TABLE,
    DEPARTMENTS,
    ENTITY_KEY,
    LABEL,
    MAX_TEXT_LENGTH,
    PROFILE_COLUMNS,
    PROFILE_FILE,
    PROFILE_TABLE,
    TEXT,
    TICKET_COLUMNS,
    TICKETS_FILE,
    TICKETS_TABLE,
    TIMESTAMP,
)

__all__ = ["PROJECT"]

PROJECT = ProjectSpec(
    name="ticket-router",
    description="Routes support tickets to a department from the ticket text and customer context.",
    entity_key=ENTITY_KEY,
    event_id="ticket_id",
    timestamp=TIMESTAMP,
    label=LABEL,
    label_available_at="label_available_at",
    classes=DEPARTMENTS,
    request=(
        RequestField(name=ENTITY_KEY, type="integer", min=1, description="The customer who wrote."),
        RequestField(name=TEXT, type="text", max_length=MAX_TEXT_LENGTH, description="The ticket."),
        RequestField(
            name="timestamp", type="timestamp", required=False, description="When the ticket was written."
        ),
        RequestField(
            name="ticket_id",
            type="string",
            required=False,
            max_length=64,
            description="The ticket's id, logged so monitoring can join the department once it is known; "
            "not a model input.",
        ),
    ),
    feature_service="ticket_routing_v1",
    events_table=TICKETS_TABLE,
    tables={
        TICKETS_TABLE: Table(file=TICKETS_FILE, columns=TICKET_COLUMNS, description="Labelled tickets."),
        PROFILE_TABLE: Table(
            file=PROFILE_FILE,
            columns=PROFILE_COLUMNS,
            feast_source="customer_profile_source",
            description="Monthly CRM snapshot per customer.",
        ),
        ACTIVITY_TABLE: Table(
            file=ACTIVITY_FILE,
            columns=ACTIVITY_COLUMNS,
            feast_source="customer_activity_source",
            description="Weekly invoices/orders/logins snapshot per customer.",
        ),
    },
    validation="ticket_routing.validation:RULES",
    model="ticket_routing.model:build",
    hyperparameters={"alpha": 1e-4, "ngram_max": 2, "min_df": 2},
    baselines={"majority": "shipyard.baselines:majority", "keywords": "ticket_routing.baselines:keywords"},
    on_demand={"ticket_text": "ticket_routing.features:text_features_columns"},
    generator="ticket_routing.synthetic:generate_data",
    card=CardText(
        title="support ticket router",
        intended_use=(
            "Routes a bank's customer support tickets to accounting, inventory, HR or IT from the "
            "ticket text and the customer's context. A routing aid: low-confidence tickets should go "
            "to a person."
        ),
        limitations=(
            "Trained on synthetic data in the reference set-up. Generic texts carry no department "
            "signal, so accuracy on them rests on customer context alone; label noise caps reachable "
            "accuracy."
        ),
        estimator="TF-IDF + one-hot + scaled numerics -> averaged SGD logistic regression",
    ),
    examples=(
        {TEXT: "I cannot log in to the app"},
        {TEXT: "invoice 4471 was charged twice"},
        {TEXT: "where is my parcel?"},
    ),
)
