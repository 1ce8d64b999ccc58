"""A customer's points ledger: earned lots, FIFO spending, expiry and the summary.

Invariants:
- the balance is the sum of what the open lots still hold, and never goes below zero;
- every change is one ``Entry`` whose ``balance_after`` is the balance it leaves;
- spending and negative changes consume the oldest lots first;
- a lot past its expiry instant holds nothing for anyone: every change first records the
  expiry of such lots (an ``expire`` entry at the change's instant), so they can be neither
  spent nor counted, whether or not the nightly run has reached the customer yet;
- read as of a local date (``summary(on=...)``), lots whose last valid day is before it are
  left out, as the nightly run will remove them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from ellity.domain.model.errors import InsufficientPoints, InvalidInput
from ellity.domain.model.expiry import ExpiryPolicy, local_date
from ellity.domain.model.ids import CustomerId
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

    def is_valid_on(self, day: date) -> bool:
        """The lot's points still count on the local date ``day``."""
        return self.expires_on is None or self.expires_on >= day


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
        raise InvalidInput("A note may have at most %(max)s characters.", max=MAX_NOTE_LENGTH)
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
            "An order reference may have at most %(max)s characters.", max=MAX_ORDER_REF_LENGTH
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

    customer_id: CustomerId
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
        self.expire(at=at)
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
        """Take points, oldest lots first; refused when the balance is smaller. Points past
        their expiry instant are expired first and cannot be taken."""
        _positive(amount)
        note, order_ref = clean_note(note), clean_order_ref(order_ref)
        self.expire(at=at)
        balance = self.balance()
        if amount > balance:
            raise InsufficientPoints(available=balance, wanted=amount)
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
        """An automatic deduction: takes at most what the customer holds (None if nothing);
        points past their expiry instant are expired first and are not taken."""
        _positive(amount)
        self.expire(at=at)
        taken = min(amount, self.balance())
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
        return next_expiration_of(self.lots)

    def summary(self, *, on: date | None = None) -> LedgerSummary:
        """Balance, next expiration and last change; ``on`` (a local date) leaves out the
        lots whose last valid day is before it, even while no entry has expired them yet."""
        if on is None:
            return LedgerSummary(self.balance(), self.next_expiration(), self.last_change)
        return summary_on(self.lots, self.last_change, on=on)

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


def next_expiration_of(lots: Iterable[Lot]) -> Expiration | None:
    """The earliest last valid day among ``lots`` holding points, and what they hold there."""
    held = [lot for lot in lots if lot.remaining and lot.expires_on is not None]
    if not held:
        return None
    first = min(lot.expires_on for lot in held if lot.expires_on is not None)
    points = sum(lot.remaining.hundredths for lot in held if lot.expires_on == first)
    return Expiration(on=first, points=Points(points))


def summary_on(lots: Iterable[Lot], last_change: LastChange | None, *, on: date) -> LedgerSummary:
    """What the customer holds on the local date ``on``: only lots still valid that day."""
    valid = [lot for lot in lots if lot.remaining and lot.is_valid_on(on)]
    return LedgerSummary(
        balance=Points(sum(lot.remaining.hundredths for lot in valid)),
        next_expiration=next_expiration_of(valid),
        last_change=last_change,
    )


def _fifo_key(lot: Lot) -> tuple[datetime, int]:
    return (lot.earned_at, lot.id if lot.id is not None else 1 << 62)
