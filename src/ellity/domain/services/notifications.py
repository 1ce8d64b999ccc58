"""Recording Ellity's system emails in the outbox, inside the caller's transaction.

The use cases that change points or PINs call these helpers before they commit, so an email
is recorded if and only if its change is stored. Nothing is recorded while the merchant's
"Send emails from Ellity" switch is off, or for a customer without an email address.

Not covered yet: the nightly, set-based expiry (``points.expire_due_points``) records no
email; a points-expired email would need the set of customers it touched.
"""

from __future__ import annotations

from datetime import datetime

from ellity.domain.model.customer import Customer
from ellity.domain.model.ledger import Entry, Ledger
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.outbox import Topic
from ellity.domain.model.system_email import PinReason, PointsChanged, pin_payload
from ellity.domain.services.common import stored_id
from ellity.ports.storage import UnitOfWork


def sends_email_to(merchant: Merchant, customer: Customer) -> bool:
    return merchant.settings.send_system_emails and customer.email is not None


async def points_changed(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, ledger: Ledger, entry: Entry
) -> None:
    """The customer's balance changed by ``entry``; ``ledger`` is the ledger after it."""
    if not sends_email_to(merchant, customer):
        return
    facts = PointsChanged.of(entry, ledger.next_expiration())
    await uow.outbox.add(
        stored_id(merchant.id),
        Topic.POINTS_CHANGED_EMAIL.value,
        facts.to_payload(),
        customer_id=stored_id(customer.id),
        at=entry.at,
    )


async def pin_issued(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, reason: PinReason, *, at: datetime
) -> None:
    """The customer got a new PIN. The PIN itself is read when the email is delivered."""
    if customer.pin is None or not sends_email_to(merchant, customer):
        return
    await uow.outbox.add(
        stored_id(merchant.id),
        Topic.PIN_ISSUED_EMAIL.value,
        pin_payload(reason),
        customer_id=stored_id(customer.id),
        at=at,
    )
