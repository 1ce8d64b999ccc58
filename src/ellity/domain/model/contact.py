"""The contact snapshot: the eleven ``ellity_*`` values written to Ecomail and exported."""

from __future__ import annotations

import functools
import gc
from collections.abc import Sequence
from dataclasses import dataclass

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.ledger import LedgerSummary
from ellity.domain.model.money import Locale, display_of
from ellity.domain.model.referral import referral_link

#: Field names in the order of the product specification (and of the CSV export).
FIELD_NAMES: tuple[str, ...] = (
    "ellity_credit",
    "ellity_credit_num",
    "ellity_pin",
    "ellity_registered",
    "ellity_next_expiration_date",
    "ellity_next_expiration_value",
    "ellity_next_expiration_value_num",
    "ellity_last_change_date",
    "ellity_last_change_value",
    "ellity_referral_code",
    "ellity_referral_link",
)

#: Ecomail custom-field types of the fields above.
FIELD_TYPES: dict[str, str] = {
    "ellity_credit": "string",
    "ellity_credit_num": "int",
    "ellity_pin": "string",
    "ellity_registered": "string",
    "ellity_next_expiration_date": "date",
    "ellity_next_expiration_value": "string",
    "ellity_next_expiration_value_num": "int",
    "ellity_last_change_date": "date",
    "ellity_last_change_value": "string",
    "ellity_referral_code": "string",
    "ellity_referral_link": "string",
}

FieldValue = str | int


def cleared_fields() -> dict[str, FieldValue]:
    """The values for an address that no customer holds any more (the customer moved to
    another one): every field empty, ``0`` in the whole-number fields."""
    return {name: 0 if FIELD_TYPES[name] == "int" else "" for name in FIELD_NAMES}


@dataclass(frozen=True, slots=True)
class CustomerLoyalty:
    """What the snapshot is made of: one customer's identity and ledger summary (and their
    marketing consent, which decides whether the contact sync may add them to the list)."""

    customer_id: CustomerId
    email: str | None
    first_name: str
    last_name: str
    registered: bool
    pin: str | None
    referral_code: str
    summary: LedgerSummary
    marketing_consent: MarketingConsent = MarketingConsent.UNKNOWN


@dataclass(frozen=True, slots=True)
class ProgrammeLook:
    """The merchant settings that shape how a snapshot reads."""

    locale: Locale
    shop_url: str
    referral_link_template: str


@dataclass(frozen=True, slots=True)
class ContactSnapshot:
    customer_id: CustomerId
    email: str | None
    first_name: str
    last_name: str
    fields: dict[str, FieldValue]


def contact_snapshot(customer: CustomerLoyalty, look: ProgrammeLook) -> ContactSnapshot:
    """Empty text for what does not exist (no PIN, nothing expiring, no change yet);
    0 for numbers."""
    summary = customer.summary
    nxt, last = summary.next_expiration, summary.last_change
    fields: dict[str, FieldValue] = {
        "ellity_credit": summary.balance.display(look.locale),
        "ellity_credit_num": summary.balance.whole(),
        "ellity_pin": "" if customer.registered else (customer.pin or ""),
        "ellity_registered": "registered" if customer.registered else "anonymous",
        "ellity_next_expiration_date": nxt.on.isoformat() if nxt else "",
        "ellity_next_expiration_value": nxt.points.display(look.locale) if nxt else "",
        "ellity_next_expiration_value_num": nxt.points.whole() if nxt else 0,
        "ellity_last_change_date": last.on.isoformat() if last else "",
        "ellity_last_change_value": last.points.display(look.locale) if last else "",
        "ellity_referral_code": customer.referral_code,
        "ellity_referral_link": referral_link(
            look.referral_link_template, shop_url=look.shop_url, code=customer.referral_code
        ),
    }
    return ContactSnapshot(
        customer_id=customer.customer_id,
        email=customer.email,
        first_name=customer.first_name,
        last_name=customer.last_name,
        fields=fields,
    )


#: A ``CustomerLoyalty`` as storage reads it, flat, without its marketing consent, read by
#: position: ``(customer_id, email, first_name, last_name, registered, pin, referral_code,
#: balance_cents, next_expiry_on, next_expiry_cents, last_change_on, last_change_cents)``; a
#: date is its ISO text (``YYYY-MM-DD``, as the snapshot writes it), ``None`` when there is
#: nothing expiring / no change yet, and its cents are then not read. ``snapshots_of_rows``
#: makes snapshots of such rows without building the summary's objects first; storage may hand
#: over its own tuple-like rows, unconverted (SQLite keeps dates as that text, so its rows are
#: never rebuilt on the way).
LoyaltyRow = tuple[
    CustomerId, str | None, str, str, bool, str | None, str, int, str | None, int, str | None, int
]


def loyalty_row(customer: CustomerLoyalty) -> LoyaltyRow:
    """The customer as a ``LoyaltyRow`` (0 for the cents of a missing date)."""
    summary = customer.summary
    nxt, last = summary.next_expiration, summary.last_change
    return (
        customer.customer_id,
        customer.email,
        customer.first_name,
        customer.last_name,
        customer.registered,
        customer.pin,
        customer.referral_code,
        summary.balance.hundredths,
        nxt.on.isoformat() if nxt else None,
        nxt.points.hundredths if nxt else 0,
        last.on.isoformat() if last else None,
        last.points.hundredths if last else 0,
    )


def snapshots_of_rows(rows: Sequence[LoyaltyRow], look: ProgrammeLook) -> list[ContactSnapshot]:
    """``contact_snapshot`` of each row, the same snapshots, made in bulk: what is the same for
    every customer (the link's template with the shop URL) is worked out once, amounts are
    formatted from their hundredths, and no ``CustomerLoyalty`` is built on the way.

    Python's cyclic garbage collector is paused meanwhile: nothing made here takes part in a
    reference cycle, and the collector would otherwise go over the batch's snapshots (all
    alive until the batch is handed over) again and again while they are made, a quarter of
    the time of a snapshot of every customer. Reference counting frees them as ever.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _snapshots_of_rows(rows, look)
    finally:
        if collecting:
            gc.enable()


#: Amounts below 1,000 points, the usual ones: ``snapshots_of_rows`` reads their display text
#: from a table made once per locale (some megabytes, in the processes that make them), not
#: formatting three amounts of every customer again.
_SHOWN_BELOW = 100_000


@functools.cache
def _shown(locale: Locale) -> list[str]:
    """``display_of`` of every amount from 0 to ``_SHOWN_BELOW`` hundredths, by its hundredths."""
    return [display_of(hundredths, locale) for hundredths in range(_SHOWN_BELOW)]


def _snapshots_of_rows(rows: Sequence[LoyaltyRow], look: ProgrammeLook) -> list[ContactSnapshot]:
    locale, template = look.locale, look.referral_link_template
    # ``referral_link`` fills the shop URL first, then the code, in the whole text.
    with_shop = referral_link(template, shop_url=look.shop_url, code="{code}")
    shown, below = _shown(locale), _SHOWN_BELOW
    snapshots = []
    for (
        customer_id,
        email,
        first_name,
        last_name,
        registered,
        pin,
        code,
        balance,
        next_on,
        next_cents,
        last_on,
        last_cents,
    ) in rows:
        fields: dict[str, FieldValue] = {
            "ellity_credit": (
                shown[balance] if 0 <= balance < below else display_of(balance, locale)
            ),
            "ellity_credit_num": balance // 100,
            "ellity_pin": "" if registered else (pin or ""),
            "ellity_registered": "registered" if registered else "anonymous",
            "ellity_next_expiration_date": "" if next_on is None else next_on,
            "ellity_next_expiration_value": (
                ""
                if next_on is None
                else shown[next_cents]
                if 0 <= next_cents < below
                else display_of(next_cents, locale)
            ),
            "ellity_next_expiration_value_num": 0 if next_on is None else next_cents // 100,
            "ellity_last_change_date": "" if last_on is None else last_on,
            "ellity_last_change_value": (
                ""
                if last_on is None
                else shown[last_cents]
                if 0 <= last_cents < below
                else display_of(last_cents, locale)
            ),
            "ellity_referral_code": code,
            "ellity_referral_link": with_shop.replace("{code}", code),
        }
        snapshot = _new_object(ContactSnapshot)
        _set_customer_id(snapshot, customer_id)
        _set_email(snapshot, email)
        _set_first_name(snapshot, first_name)
        _set_last_name(snapshot, last_name)
        _set_fields(snapshot, fields)
        snapshots.append(snapshot)
    return snapshots


# ``snapshots_of_rows`` fills each snapshot's slots itself: the frozen dataclass's
# ``__init__`` (an ``object.__setattr__`` call per field) costs more than the rest of a
# snapshot, and a million of them are made at a time. Same object, same fields.
_new_object = object.__new__
_set_customer_id, _set_email, _set_first_name, _set_last_name, _set_fields = (
    getattr(ContactSnapshot, name).__set__
    for name in ("customer_id", "email", "first_name", "last_name", "fields")
)
