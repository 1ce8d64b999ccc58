"""The Ecomail integration of one merchant: its state, the fields it needs, the events it sends.

States: no key yet → a verified key (stored encrypted, shown as its last four characters) →
active with a chosen list. Only an active integration records contact updates and events;
deactivating stops all traffic, and activating again pushes every customer again.

A *backfill* pushes every customer with an email through the live-sync path. It is marked in
chunks of customers (``backfill_after_id`` is the cursor, so a crash resumes where it stopped)
and each marked customer waits as a pending contact until the worker has written it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TypeAlias

from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES
from ellity.domain.model.errors import Conflict, InvalidInput
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.ledger import Entry, Expiration
from ellity.domain.model.money import Points

MAX_API_KEY_LENGTH = 200

EVENT_CATEGORY = "ellity"
EVENT_ACTION = "change"

EventValue: TypeAlias = dict[str, str | int | None]


class EventLabel(StrEnum):
    """What happened, as the event's label tells Ecomail automations."""

    CREDIT = "credit"
    EXPIRY = "expiry"
    PIN = "pin"


class IntegrationNotReady(Conflict):
    code = "integration_not_ready"


@dataclass(frozen=True, slots=True)
class Backfill:
    """Pushing every customer: how far the marking got and how many it covers."""

    requested_at: datetime
    after_id: CustomerId  # customers up to this id are marked
    marked: int
    finished_marking_at: datetime | None

    @property
    def marking(self) -> bool:
        return self.finished_marking_at is None


@dataclass(frozen=True, slots=True)
class EcomailIntegration:
    merchant_id: MerchantId
    key_hint: str  # the last four characters of the API key
    list_id: str | None
    list_name: str
    active: bool
    activated_at: datetime | None
    backfill: Backfill | None
    last_success_at: datetime | None

    @property
    def masked_key(self) -> str:
        return "••••" + self.key_hint


def clean_api_key(text: str) -> str:
    """An Ecomail API key as pasted: surrounding blanks dropped, nothing else accepted."""
    key = text.strip()
    if not key:
        raise InvalidInput("Paste the API key from Ecomail (account management → for developers).")
    if len(key) > MAX_API_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
        raise InvalidInput(
            "That does not look like an Ecomail API key: copy it again from Ecomail"
            " (account management → for developers)."
        )
    return key


def key_hint(key: str) -> str:
    return key[-4:]


def field_problems(found: Mapping[str, str], *, missing: bool = True) -> list[str]:
    """What is wrong with a list's custom fields (key → type, as Ecomail reports them) for
    Ellity: each missing field (unless ``missing`` is False: the fields are not written yet),
    each field of another type. Empty when all is well."""
    problems = []
    for name in FIELD_NAMES:
        wanted = FIELD_TYPES[name]
        if name not in found:
            if missing:
                problems.append(f"{name} is missing")
        elif found[name] != wanted:
            problems.append(f"{name} is of type {found[name]}, not {wanted}")
    return problems


# -- tracker events ------------------------------------------------------------------------


def _points(value: Points) -> str:
    return value.decimal_string()


def _expiration(nxt: Expiration | None) -> tuple[str | None, str | None]:
    return (nxt.on.isoformat(), _points(nxt.points)) if nxt else (None, None)


def credit_event_value(entry: Entry, *, next_expiration: Expiration | None) -> EventValue:
    """The details of a balance change: the change, the balance after it, why, and what
    expires next. Points as decimal strings (``"12.50"``), dates ``YYYY-MM-DD``."""
    expiry_date, expiry_points = _expiration(next_expiration)
    return {
        "change": _points(entry.points),
        "balance": _points(entry.balance_after),
        "reason": entry.kind.value,
        "note": entry.note,
        "order_ref": entry.order_ref,
        "at": entry.at.isoformat(),
        "next_expiration_date": expiry_date,
        "next_expiration_points": expiry_points,
    }


def pin_event_value(reason: str, *, at: datetime) -> EventValue:
    """A new PIN: why (never the PIN itself; the contact's ``ellity_pin`` field holds it)."""
    return {"reason": reason, "at": at.isoformat()}


def expiry_event_value(points: Points, on: date, *, balance: Points) -> EventValue:
    """Points about to expire: how many, on which day, and the balance now."""
    return {
        "points": _points(points),
        "expiration_date": on.isoformat(),
        "balance": _points(balance),
    }
