"""Recording what the outside world must hear of a change, inside the caller's transaction.

The use cases that change customers, points or PINs call these helpers before they commit,
so an email, a contact update or an Ecomail event is recorded if and only if its change is
stored:

- system emails, while the merchant's "Send emails from Ellity" switch is on;
- with an active Ecomail integration: the customer's contact marked for writing (the worker
  sends the state as it is then, so many changes cost one write; after an email change the
  old address is remembered, to be cleared of the customer's fields) and the tracker event
  (``credit`` for a balance change, ``pin`` for a new PIN), which the worker delivers only
  after the contact's fields.

Nothing is recorded for a customer without an email address.

The nightly runs record the same for whole chunks of customers at once (``points_expired``,
``points_expiring``): a few statements per chunk, never one per customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ellity.domain.model.balance_change import change_payload
from ellity.domain.model.consent import adds_more
from ellity.domain.model.customer import Customer
from ellity.domain.model.integration import (
    EventLabel,
    EventValue,
    expiry_event_value,
    pin_event_value,
)
from ellity.domain.model.ledger import Entry, Ledger
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.outbox import Payload, Topic
from ellity.domain.model.system_email import (
    PinReason,
    PointsExpiring,
    pin_payload,
)
from ellity.domain.services.common import customer_id_of, look_of, merchant_id_of
from ellity.ports.storage import ExpiredChunk, ExpiryNotice, UnitOfWork


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a chunk recorded for the outside world: Ecomail events and system emails."""

    events: int = 0
    emails: int = 0

    def __add__(self, other: Recorded) -> Recorded:
        return Recorded(self.events + other.events, self.emails + other.emails)


def sends_email_to(merchant: Merchant, customer: Customer) -> bool:
    return merchant.settings.send_system_emails and customer.email is not None


async def points_changed(
    uow: UnitOfWork,
    merchant: Merchant,
    customer: Customer,
    ledger: Ledger,
    entries: Sequence[Entry],
) -> None:
    """The customer's balance changed by each of ``entries`` in turn (an expiry that a change
    recorded first, then the change); ``ledger`` is the ledger after them. Each gets its
    ``credit`` event and "points changed" email, as the nightly expiry's entries do."""
    nxt = ledger.next_expiration()
    for entry in entries:
        event = change_payload(Topic.ECOMAIL_EVENT.value, entry, nxt)
        await _ecomail(uow, merchant, customer, event, at=entry.at)
        if not sends_email_to(merchant, customer):
            continue
        await uow.outbox.add(
            merchant_id_of(merchant),
            Topic.POINTS_CHANGED_EMAIL.value,
            change_payload(Topic.POINTS_CHANGED_EMAIL.value, entry, nxt),
            customer_id=customer_id_of(customer),
            at=entry.at,
        )


async def pin_issued(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, reason: PinReason, *, at: datetime
) -> None:
    """The customer got a new PIN. The PIN itself is read when the email is delivered."""
    if customer.pin is None:
        return
    event = _event(EventLabel.PIN, pin_event_value(reason, at=at))
    await _ecomail(uow, merchant, customer, event, at=at)
    if not sends_email_to(merchant, customer):
        return
    await uow.outbox.add(
        merchant_id_of(merchant),
        Topic.PIN_ISSUED_EMAIL.value,
        pin_payload(reason),
        customer_id=customer_id_of(customer),
        at=at,
    )


async def contact_changed(
    uow: UnitOfWork,
    merchant: Merchant,
    customer: Customer,
    *,
    at: datetime,
    moved_from: str | None = None,
) -> None:
    """Something in the customer's contact fields may have changed (names, registration,
    email). ``moved_from``: the email changed from this address, so the contact to write is
    another one, and the old one is to be cleared of the customer's fields."""
    await _ecomail(uow, merchant, customer, None, at=at, moved_from=moved_from)


async def _ecomail(
    uow: UnitOfWork,
    merchant: Merchant,
    customer: Customer,
    event: Payload | None,
    *,
    at: datetime,
    moved_from: str | None = None,
) -> None:
    if customer.email is None:
        return
    merchant_id, customer_id = merchant_id_of(merchant), customer_id_of(customer)
    if await uow.ecomail.active_list(merchant_id) is None:
        return
    if moved_from is None:
        await uow.contacts.mark_changed(merchant_id, [customer_id], at=at)
    else:
        await uow.contacts.mark_moved(merchant_id, customer_id, old_email=moved_from, at=at)
    if event is not None:
        await uow.outbox.add(
            merchant_id,
            Topic.ECOMAIL_EVENT.value,
            event,
            customer_id=customer_id,
            at=at,
        )


async def points_expired(uow: UnitOfWork, merchant: Merchant, chunk: ExpiredChunk) -> Recorded:
    """A chunk of customers lost their due points (``LedgerRepository.expire_due`` in this
    transaction): what ``points_changed`` records for one customer, for all of them at once.
    Each item refers to the customer's ``expire`` entry and the next expiration after it; its
    payload is built from them (``balance_change.change_payload``) when it is claimed."""
    events = emails = 0
    if await uow.ecomail.active_list(chunk.merchant_id) is not None:
        await uow.contacts.mark_expired(chunk)
        events = await uow.outbox.add_for_expired(chunk, Topic.ECOMAIL_EVENT.value)
    if merchant.settings.send_system_emails:
        emails = await uow.outbox.add_for_expired(chunk, Topic.POINTS_CHANGED_EMAIL.value)
    return Recorded(events, emails)


async def points_expiring(
    uow: UnitOfWork,
    merchant: Merchant,
    notices: Sequence[ExpiryNotice],
    *,
    ecomail_active: bool,
    at: datetime,
) -> Recorded:
    """Customers were just noted as having points about to expire (they all have an email):
    the ``expiry`` event while the integration is active, the email while the switch is on.
    The contact's fields do not change, so the contact is not marked."""
    merchant_id = merchant_id_of(merchant)
    events = emails = 0
    if ecomail_active:
        events = await uow.outbox.add_many(
            merchant_id,
            Topic.ECOMAIL_EVENT.value,
            [
                (
                    notice.customer_id,
                    _event(
                        EventLabel.EXPIRY,
                        expiry_event_value(
                            notice.expiration.points,
                            notice.expiration.on,
                            balance=notice.balance,
                        ),
                    ),
                )
                for notice in notices
            ],
            at=at,
        )
    if merchant.settings.send_system_emails:
        emails = await uow.outbox.add_many(
            merchant_id,
            Topic.POINTS_EXPIRING_EMAIL.value,
            [
                (
                    notice.customer_id,
                    PointsExpiring(
                        points=notice.expiration.points,
                        last_day=notice.expiration.on,
                        balance=notice.balance,
                    ).to_payload(),
                )
                for notice in notices
            ],
            at=at,
        )
    return Recorded(events, emails)


def _event(label: EventLabel, value: EventValue) -> Payload:
    return {"label": label.value, "value": dict(value)}


async def settings_changed(
    uow: UnitOfWork, merchant: Merchant, before: Merchant | None, *, at: datetime
) -> bool:
    """The merchant's settings changed; every contact is written again (a backfill, while
    the integration is active) when that changes how every contact reads (locale, shop URL,
    referral link template) or lets Ellity add customers it did not add before
    (``ecomail_add`` widened: ``adds_more``). Whether a backfill was requested."""
    if before is not None:
        same_look = look_of(before) == look_of(merchant)
        widened = adds_more(before.settings.ecomail_add, merchant.settings.ecomail_add)
        if same_look and not widened:
            return False
    merchant_id = merchant_id_of(merchant)
    if await uow.ecomail.active_list(merchant_id) is None:
        return False
    await uow.ecomail.request_backfill(merchant_id, at=at)
    return True
