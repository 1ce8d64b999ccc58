"""A customer's points ledger: earned lots, FIFO spending, expiry and the summary.

Invariants:
- the balance is the sum of what the open lots still hold, and never goes below zero;
- every change is one ``Entry`` whose ``balance_after`` is the balance it leaves;
- spending and negative changes consume the oldest lots first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from ellity.domain.model.errors import InsufficientPoints, InvalidInput
from ellity.domain.model.expiry import ExpiryPolicy, local_date
from ellity.domain.model.money import Points
from ellity.domain.model.text import has_control_characters

MAX_NOTE_LENGTH = 500
MAX_ORDER_REF_LENGTH = 100


class EntryKind(StrEnum):
    EARN = "earn"
    SPEND = "spend"
    ADJUST = "adjust"
    NEWSLETTER_REWARD = "newsletter_reward"
    NEWSLETTER_DEDUCTION = "newsletter_deduction"
    REFERRAL_BONUS = "referral_bonus"
    EXPIRE = "expire"


@dataclass(slots=True)
class Lot:
    """Points earned together: they expire together and are spent oldest first."""

    earned_at: datetime
    expires_on: date | None
    amount: Points
    remaining: Points
    id: int | None = None
    loaded_remaining: Points | None = None

    @property
    def is_new(self) -> bool:
        return self.id is None

    @property
    def is_changed(self) -> bool:
        return not self.is_new and self.remaining != self.loaded_remaining


@dataclass(frozen=True, slots=True)
class Entry:
    kind: EntryKind
    points: Points
    at: datetime
    balance_after: Points
    note: str | None = None
    order_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Expiration:
    on: date
    points: Points


@dataclass(frozen=True, slots=True)
class LastChange:
    on: date
    points: Points


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    balance: Points
    next_expiration: Expiration | None
    last_change: LastChange | None


def clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(f"A note may have at most {MAX_NOTE_LENGTH} characters.")
    if has_control_characters(note, allow_line_breaks=True):
        raise InvalidInput("A note must not contain control characters other than line breaks.")
    return note or None


def clean_order_ref(order_ref: str | None) -> str | None:
    if order_ref is None:
        return None
    order_ref = order_ref.strip()
    if not order_ref:
        raise InvalidInput("The order reference must not be empty.")
    if len(order_ref) > MAX_ORDER_REF_LENGTH:
        raise InvalidInput(
            f"An order reference may have at most {MAX_ORDER_REF_LENGTH} characters."
        )
    if has_control_characters(order_ref):
        raise InvalidInput("An order reference must not contain control characters.")
    return order_ref


def _positive(amount: Points) -> Points:
    if not amount.is_positive():
        raise InvalidInput("The number of points must be greater than zero.")
    return amount


@dataclass
class Ledger:
    """The open lots of one customer and the entries added since it was loaded."""

    customer_id: int
    policy: ExpiryPolicy
    lots: list[Lot] = field(default_factory=list)
    last_change: LastChange | None = None
    new_entries: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        for lot in self.lots:
            if lot.loaded_remaining is None:
                lot.loaded_remaining = lot.remaining
        self.lots.sort(key=_fifo_key)

    def balance(self) -> Points:
        return Points(sum(lot.remaining.hundredths for lot in self.lots))

    # -- changes -----------------------------------------------------------------------

    def earn(
        self,
        amount: Points,
        *,
        at: datetime,
        kind: EntryKind = EntryKind.EARN,
        order_ref: str | None = None,
        note: str | None = None,
    ) -> Entry:
        """Add points as a new lot that expires by the policy."""
        _positive(amount)
        note, order_ref = clean_note(note), clean_order_ref(order_ref)
        self.lots.append(
            Lot(
                earned_at=at, expires_on=self.policy.expires_on(at), amount=amount, remaining=amount
            )
        )
        self.lots.sort(key=_fifo_key)
        return self._record(kind, amount, at, note=note, order_ref=order_ref)

    def spend(
        self,
        amount: Points,
        *,
        at: datetime,
        kind: EntryKind = EntryKind.SPEND,
        order_ref: str | None = None,
        note: str | None = None,
    ) -> Entry:
        """Take points, oldest lots first; refused when the balance is smaller."""
        _positive(amount)
        note, order_ref = clean_note(note), clean_order_ref(order_ref)
        balance = self.balance()
        if amount > balance:
            raise InsufficientPoints(available=balance.display("en"), wanted=amount.display("en"))
        self._consume(amount)
        return self._record(kind, -amount, at, note=note, order_ref=order_ref)

    def adjust(self, delta: Points, *, at: datetime, note: str | None) -> Entry:
        """A manual correction with a note saying why: positive adds a lot, negative consumes
        like a spend."""
        if clean_note(note) is None:
            raise InvalidInput("An adjustment needs a note saying why it is made.")
        if not delta:
            raise InvalidInput("An adjustment must change the balance; zero points given.")
        if delta.is_positive():
            return self.earn(delta, at=at, kind=EntryKind.ADJUST, note=note)
        return self.spend(-delta, at=at, kind=EntryKind.ADJUST, note=note)

    def deduct_up_to(
        self, amount: Points, *, at: datetime, kind: EntryKind, note: str | None = None
    ) -> Entry | None:
        """An automatic deduction: takes at most what the customer holds (None if nothing)."""
        taken = min(_positive(amount), self.balance())
        if not taken:
            return None
        return self.spend(taken, at=at, kind=kind, note=note)

    def expire(self, *, at: datetime) -> Entry | None:
        """Empty every lot whose last valid day is before ``at``'s local date."""
        expired = Points.zero()
        for lot in self.lots:
            if (
                lot.expires_on is not None
                and lot.remaining
                and self.policy.is_expired(lot.expires_on, at)
            ):
                expired += lot.remaining
                lot.remaining = Points.zero()
        if not expired:
            return None
        return self._record(EntryKind.EXPIRE, -expired, at)

    # -- reading -------------------------------------------------------------------------

    def next_expiration(self) -> Expiration | None:
        """The earliest last-valid-day among lots holding points, and what they hold."""
        dates = [lot.expires_on for lot in self.lots if lot.remaining and lot.expires_on]
        if not dates:
            return None
        first = min(dates)
        held = sum(lot.remaining.hundredths for lot in self.lots if lot.expires_on == first)
        return Expiration(on=first, points=Points(held))

    def summary(self) -> LedgerSummary:
        return LedgerSummary(
            balance=self.balance(),
            next_expiration=self.next_expiration(),
            last_change=self.last_change,
        )

    # -- internals -----------------------------------------------------------------------

    def _consume(self, amount: Points) -> None:
        left = amount.hundredths
        for lot in self.lots:
            if left == 0:
                break
            take = min(left, lot.remaining.hundredths)
            lot.remaining = Points(lot.remaining.hundredths - take)
            left -= take

    def _record(
        self,
        kind: EntryKind,
        points: Points,
        at: datetime,
        *,
        note: str | None = None,
        order_ref: str | None = None,
    ) -> Entry:
        entry = Entry(
            kind=kind,
            points=points,
            at=at,
            balance_after=self.balance(),
            note=note,
            order_ref=order_ref,
        )
        self.new_entries.append(entry)
        self.last_change = LastChange(on=local_date(at, self.policy.time_zone), points=points)
        return entry


def _fifo_key(lot: Lot) -> tuple[datetime, int]:
    return (lot.earned_at, lot.id if lot.id is not None else 1 << 62)
