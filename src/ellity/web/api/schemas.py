"""The JSON bodies of the e-shop API: what it reads and what it answers.

Request bodies refuse unknown fields. Points are decimal strings (``"12.50"``) both ways; the
domain parses them, so a malformed amount is a 422 while a JSON number is a 400. Length and
format rules live in the domain validators, not here, so there is one place that decides them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec

from ellity.domain.model.consent import ConsentSource, MarketingConsent
from ellity.domain.model.customer import MAX_EMAIL_LENGTH, MAX_NAME_LENGTH, MAX_SHOP_ID_LENGTH
from ellity.domain.model.ledger import MAX_NOTE_LENGTH, MAX_ORDER_REF_LENGTH, EntryKind
from ellity.domain.model.money import Points
from ellity.domain.services.common import CustomerView
from ellity.domain.services.customers import CustomerInput
from ellity.ports.storage import StoredEntry

PointsText = Annotated[
    str,
    msgspec.Meta(
        description='Points as a decimal string with at most two decimals, e.g. "12.50";'
        " never a JSON number.",
        examples=["12.50"],
    ),
]
SignedPointsText = Annotated[
    str,
    msgspec.Meta(
        description='Signed points as a decimal string, e.g. "-5.00" or "20"; never a JSON number.',
        examples=["-5.00"],
    ),
]
OrderRef = Annotated[
    str,
    msgspec.Meta(
        description=f"The shop's order reference, 1 to {MAX_ORDER_REF_LENGTH} characters.",
        examples=["2024-000123"],
    ),
]
Note = Annotated[str, msgspec.Meta(description=f"At most {MAX_NOTE_LENGTH} characters.")]
CONSENT_RULES = (
    "Whether the customer agreed to receive the merchant's newsletters. `granted`: Ellity may"
    " add them to the merchant's Ecomail list (as the merchant's setting allows); `refused`:"
    " Ellity unsubscribes them from the list and never adds them again (a newsletter reward is"
    " taken back when the merchant's take-back option is on); `unknown`: not known (the default)."
)


def _text(description: str) -> msgspec.Meta:
    return msgspec.Meta(description=description)


# -- requests -----------------------------------------------------------------------------


class CustomerUpsert(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Create a customer, or update the one with this shop customer id or email.

    At least one of ``email`` and ``shop_customer_id`` is needed. A missing or null field
    leaves the stored value as it is; ``referred_by`` counts only when the customer is new.
    A ``marketing_consent`` other than the stored one is kept in the customer's consent
    history as set by the e-shop.
    """

    email: Annotated[
        str | None, _text(f"Compared case-insensitively; at most {MAX_EMAIL_LENGTH} characters.")
    ] = None
    first_name: Annotated[str | None, _text(f"At most {MAX_NAME_LENGTH} characters.")] = None
    last_name: Annotated[str | None, _text(f"At most {MAX_NAME_LENGTH} characters.")] = None
    shop_customer_id: Annotated[
        str | None, _text(f"The shop's own id; at most {MAX_SHOP_ID_LENGTH} characters.")
    ] = None
    registered: Annotated[
        bool | None, _text("A registered member has no PIN; an anonymous customer has one.")
    ] = None
    referred_by: Annotated[str | None, _text("The referral code of the referring customer.")] = None
    marketing_consent: Annotated[
        MarketingConsent | None, _text(CONSENT_RULES + " Missing or null: left as it is.")
    ] = None

    def to_input(self) -> CustomerInput:
        return CustomerInput(
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            shop_customer_id=self.shop_customer_id,
            registered=self.registered,
            referred_by=self.referred_by,
            marketing_consent=self.marketing_consent,
        )


class EarnPoints(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Points for an order; the same ``order_ref`` earns once."""

    points: PointsText
    order_ref: OrderRef
    note: Note | None = None


class SpendPoints(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Redeem points, oldest first; with an ``order_ref`` the same redemption happens once."""

    points: PointsText
    order_ref: OrderRef | None = None
    note: Note | None = None


class AdjustPoints(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A manual correction: positive adds points, negative takes them (never below zero)."""

    points: SignedPointsText
    note: Note


# -- answers ------------------------------------------------------------------------------


class PointsOnDay(msgspec.Struct):
    date: date
    points: PointsText


class Customer(msgspec.Struct):
    """A customer with their balance, next expiration and last change."""

    id: int
    email: str | None
    first_name: str
    last_name: str
    shop_customer_id: str | None
    registered: bool
    pin: Annotated[str | None, _text("Six digits; null for a registered customer.")]
    referral_code: str
    referral_link: Annotated[str | None, _text("Null while the merchant has no shop URL.")]
    balance: PointsText
    next_expiration: Annotated[
        PointsOnDay | None, _text("The earliest last valid day and the points valid until then.")
    ]
    last_change: Annotated[PointsOnDay | None, _text("The day and signed points of the change.")]
    marketing_consent: Annotated[MarketingConsent, _text(CONSENT_RULES)]
    marketing_consent_source: Annotated[
        ConsentSource | None,
        _text(
            "Who set the consent last: `api` (the e-shop), `staff` (on the customer's page) or"
            " `ecomail` (a subscription or unsubscription Ecomail confirmed); null while never"
            " set."
        ),
    ]
    marketing_consent_changed_at: Annotated[
        datetime | None, _text("When the consent was last set; null while never set.")
    ]

    @classmethod
    def of(cls, view: CustomerView) -> Customer:
        customer, summary = view.customer, view.summary
        nxt, last = summary.next_expiration, summary.last_change
        if customer.id is None:
            raise ValueError("the customer has not been stored")
        return cls(
            id=customer.id,
            email=customer.email,
            first_name=customer.first_name,
            last_name=customer.last_name,
            shop_customer_id=customer.shop_customer_id,
            registered=customer.registered,
            pin=None if customer.registered else customer.pin,
            referral_code=customer.referral_code,
            referral_link=view.referral_link or None,
            balance=summary.balance.decimal_string(),
            next_expiration=_on_day(nxt.on, nxt.points) if nxt else None,
            last_change=_on_day(last.on, last.points) if last else None,
            marketing_consent=customer.marketing_consent,
            marketing_consent_source=customer.consent_source,
            marketing_consent_changed_at=customer.consent_changed_at,
        )


class CustomerList(msgspec.Struct):
    items: list[Customer]


class LedgerEntry(msgspec.Struct):
    at: datetime
    kind: EntryKind
    points: SignedPointsText
    balance_after: PointsText
    note: str | None
    order_ref: str | None

    @classmethod
    def of(cls, stored: StoredEntry) -> LedgerEntry:
        entry = stored.entry
        return cls(
            at=entry.at,
            kind=entry.kind,
            points=entry.points.decimal_string(),
            balance_after=entry.balance_after.decimal_string(),
            note=entry.note,
            order_ref=entry.order_ref,
        )


class LedgerPage(msgspec.Struct):
    items: Annotated[list[LedgerEntry], _text("Newest first.")]
    next_before: Annotated[
        int | None,
        _text("Pass as `before` to read the older entries; null on the last page."),
    ]

    @classmethod
    def of(cls, entries: list[StoredEntry], *, limit: int) -> LedgerPage:
        """A full page may be followed by older entries; a shorter one is the last."""
        return cls(
            items=[LedgerEntry.of(stored) for stored in entries],
            next_before=entries[-1].id if entries and len(entries) >= limit else None,
        )


def _on_day(on: date, points: Points) -> PointsOnDay:
    return PointsOnDay(date=on, points=points.decimal_string())
