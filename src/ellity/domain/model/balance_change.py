"""What a balance change tells the outside world, built in one place: the ``credit`` event
for Ecomail and the "points changed" email, from the ledger entry and the next expiration as
it was right after the change.

A change made for one customer records these payloads whole. The nightly expiry, a chunk of
tens of thousands of customers at once, records per customer only a reference (its
``expire`` entry and the next expiration after it); the payload is built from it here when
the item is claimed for delivery, so both read the same, byte for byte.
"""

from __future__ import annotations

from ellity.domain.model.integration import EventLabel, credit_event_value
from ellity.domain.model.ledger import Entry, Expiration
from ellity.domain.model.outbox import Payload, Topic
from ellity.domain.model.system_email import PointsChanged

#: The topics of the items that follow a balance change.
CHANGE_TOPICS = (Topic.ECOMAIL_EVENT.value, Topic.POINTS_CHANGED_EMAIL.value)


def change_payload(topic: str, entry: Entry, next_expiration: Expiration | None) -> Payload:
    """The payload of the ``topic`` item that follows ``entry``."""
    if topic == Topic.ECOMAIL_EVENT.value:
        value = credit_event_value(entry, next_expiration=next_expiration)
        return {"label": EventLabel.CREDIT.value, "value": dict(value)}
    if topic == Topic.POINTS_CHANGED_EMAIL.value:
        return PointsChanged.of(entry, next_expiration).to_payload()
    raise ValueError(f"a balance change has no {topic} item")
