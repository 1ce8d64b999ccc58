"""The "Ecomail fields" panel of the integration page: what Ellity writes to one chosen
customer's contact and what its events would carry, for someone building an automation.

The values are made by the contact sync's own snapshot (``common.snapshots_of``), so the
panel shows exactly what the sync writes. The customer is chosen by id or by email, only
among the merchant's own customers: anyone else's is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass

from ellity.domain.model.contact import ContactSnapshot
from ellity.domain.model.customer import Customer, clean_email
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.integration import (
    EventLabel,
    EventValue,
    credit_event_value,
    expiry_event_value,
)
from ellity.domain.services.common import load_merchant, snapshots_of, today_of
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWork

#: Longer than any id a customer can have (ids are 64-bit), so never looked up.
MAX_ID_DIGITS = 18


@dataclass(frozen=True, slots=True)
class FieldsPanel:
    """``asked``: what was typed (empty: nobody chosen). ``snapshot`` is None when nobody
    was chosen or the customer was not found (``not_found``). ``events``: the value each
    event would carry for the customer, where the customer has what it is made of (a
    balance change for ``credit``, points expiring for ``expiry``)."""

    asked: str = ""
    snapshot: ContactSnapshot | None = None
    not_found: bool = False
    events: dict[EventLabel, EventValue] | None = None


async def _find(uow: UnitOfWork, merchant_id: MerchantId, asked: str) -> Customer | None:
    if asked.isdecimal() and len(asked) <= MAX_ID_DIGITS:
        return await uow.customers.get(merchant_id, CustomerId(int(asked)))
    try:
        email = clean_email(asked)
    except InvalidInput:
        return None
    return None if email is None else await uow.customers.find_by_email(merchant_id, email)


async def fields_panel(
    merchant_id: MerchantId, asked: str, *, uow: UnitOfWork, clock: Clock
) -> FieldsPanel:
    """The panel for the customer ``asked`` names (an id or an email), in one read-only
    transaction."""
    asked = asked.strip()
    if not asked:
        return FieldsPanel()
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await _find(uow, merchant_id, asked)
        if customer is None or customer.id is None:
            return FieldsPanel(asked=asked, not_found=True)
        rows = await uow.ledgers.loyalty(
            merchant_id, [customer.id], today=today_of(merchant, clock)
        )
        latest = await uow.ledgers.entries(merchant_id, customer.id, limit=1)
    if not rows:
        return FieldsPanel(asked=asked, not_found=True)
    (snapshot,) = snapshots_of(merchant, rows)
    summary = rows[0].summary
    events: dict[EventLabel, EventValue] = {}
    if latest:
        # what ``balance_change.change_payload`` makes the ``credit`` event's value of
        events[EventLabel.CREDIT] = credit_event_value(
            latest[0].entry, next_expiration=summary.next_expiration
        )
    if summary.next_expiration is not None:
        nxt = summary.next_expiration
        events[EventLabel.EXPIRY] = expiry_event_value(nxt.points, nxt.on, balance=summary.balance)
    return FieldsPanel(asked=asked, snapshot=snapshot, events=events)
