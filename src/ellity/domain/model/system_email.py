"""Ellity's own emails to customers: what is recorded when something happens, and what is
handed to the mailer when it is delivered.

The outbox payload holds the facts of the event (the change, the balance it left, the next
expiry). Who receives it, in which language and under which programme name is read when the
email is delivered: a customer who changed their address gets the email at the new one. A PIN
is never part of a payload: the delivery reads the customer's current PIN, so a PIN is stored
in one place only and a replaced PIN is never sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from ellity.domain.model.ledger import Entry, EntryKind, Expiration
from ellity.domain.model.money import Locale, Points
from ellity.domain.model.outbox import Payload

_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def format_date(day: date, locale: Locale) -> str:
    """``31. 3. 2025`` (cs), ``31 March 2025`` (en)."""
    if locale == "cs":
        return f"{day.day}. {day.month}. {day.year}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


class EmailTemplate(StrEnum):
    POINTS_CHANGED = "points_changed"
    PIN_ISSUED = "pin_issued"
    POINTS_EXPIRING = "points_expiring"
    TEST = "test"  # "Send a test email" on the settings page


class PinReason(StrEnum):
    CREATED = "created"
    REGENERATED = "regenerated"
    ANONYMOUS = "anonymous"


class MalformedPayload(ValueError):
    """An outbox payload does not have the shape its topic needs."""


@dataclass(frozen=True, slots=True)
class PointsChanged:
    """A balance change as the customer's email tells it."""

    kind: EntryKind
    change: Points
    balance: Points
    next_expiration: Expiration | None
    at: datetime

    @classmethod
    def of(cls, entry: Entry, next_expiration: Expiration | None) -> PointsChanged:
        return cls(
            kind=entry.kind,
            change=entry.points,
            balance=entry.balance_after,
            next_expiration=next_expiration,
            at=entry.at,
        )

    def to_payload(self) -> Payload:
        nxt = self.next_expiration
        return {
            "kind": self.kind.value,
            "change": self.change.hundredths,
            "balance": self.balance.hundredths,
            "next_expiry_on": nxt.on.isoformat() if nxt else None,
            "next_expiry_points": nxt.points.hundredths if nxt else None,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_payload(cls, payload: Payload) -> PointsChanged:
        try:
            on, held = payload.get("next_expiry_on"), payload.get("next_expiry_points")
            return cls(
                kind=EntryKind(str(payload["kind"])),
                change=Points(_int(payload["change"])),
                balance=Points(_int(payload["balance"])),
                next_expiration=(
                    Expiration(date.fromisoformat(str(on)), Points(_int(held)))
                    if on is not None
                    else None
                ),
                at=datetime.fromisoformat(str(payload["at"])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedPayload(f"not a points change: {exc}") from None

    def email_values(self, locale: Locale) -> dict[str, str]:
        nxt = self.next_expiration
        return {
            "kind": self.kind.value,
            "direction": "up" if self.change.is_positive() else "down",
            "change": ("+" if self.change.is_positive() else "") + self.change.display(locale),
            "change_abs": (self.change if self.change.is_positive() else -self.change).display(
                locale
            ),
            "balance": self.balance.display(locale),
            "next_expiry_date": format_date(nxt.on, locale) if nxt else "",
            "next_expiry_points": nxt.points.display(locale) if nxt else "",
        }


@dataclass(frozen=True, slots=True)
class PointsExpiring:
    """Points about to expire, as the customer's email tells it: how many, their last valid
    day, and the balance when the notice was recorded."""

    points: Points
    last_day: date
    balance: Points

    def to_payload(self) -> Payload:
        return {
            "points": self.points.hundredths,
            "expires_on": self.last_day.isoformat(),
            "balance": self.balance.hundredths,
        }

    @classmethod
    def from_payload(cls, payload: Payload) -> PointsExpiring:
        try:
            return cls(
                points=Points(_int(payload["points"])),
                last_day=date.fromisoformat(str(payload["expires_on"])),
                balance=Points(_int(payload["balance"])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedPayload(f"not a notice of expiring points: {exc}") from None

    def email_values(self, locale: Locale) -> dict[str, str]:
        return {
            "points": self.points.display(locale),
            "expiry_date": format_date(self.last_day, locale),
            "balance": self.balance.display(locale),
        }


def pin_payload(reason: PinReason) -> Payload:
    return {"reason": reason.value}


def pin_reason(payload: Payload) -> PinReason:
    try:
        return PinReason(str(payload["reason"]))
    except (KeyError, ValueError) as exc:
        raise MalformedPayload(f"not a PIN email: {exc}") from None


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not a whole number")
    return value


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One email for the mailer: which template, in which language, with which values.

    ``values`` are display text, already formatted for ``locale``; they may hold a PIN and are
    therefore left out of ``repr`` (and so out of any log line that prints the email).
    ``message_id`` is stable per outbox item, so a repeated delivery carries the same
    ``Message-ID`` and mail clients can recognise the duplicate.
    """

    to: str
    sender_name: str  # the programme's name, shown as the sender
    template: EmailTemplate
    locale: Locale
    message_id: str
    values: dict[str, str] = field(repr=False)
