"""Storage ports: repositories scoped by merchant, and the unit of work that owns a transaction.

Every repository method that reads or writes customer data takes the ``merchant_id``: nothing
can be reached without naming the merchant it belongs to.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Protocol

from ellity.domain.model.activity import DayPeriod, DayTotals, ExpiryTotal
from ellity.domain.model.api_token import ApiToken
from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.customer import Customer
from ellity.domain.model.customer_query import CustomerQuery
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.integration import EcomailIntegration
from ellity.domain.model.ledger import Entry, EntryKind, Expiration, Ledger
from ellity.domain.model.merchant import Merchant, MerchantSettings, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    ClaimedNotification,
    Notification,
    NotificationRecord,
    Outcome,
    RewardHold,
)
from ellity.domain.model.outbox import DeliveryHealth, FailedDelivery, OutboxItem, Payload
from ellity.domain.model.staff import StaffUser


class UniqueViolation(Exception):
    """A value that must be unique is taken. ``field`` names it (``email``, ``slug`` ...)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"duplicate {field}")
        self.field = field


class TransientConflict(Exception):
    """The database aborted the transaction to resolve a conflict with a concurrent one (a
    deadlock, a serialization failure). Nothing of it was stored; the same transaction, run
    again from the start, is expected to succeed (``common.retried_on_conflict``)."""


@dataclass(frozen=True, slots=True)
class OrderUse:
    """An order reference already recorded in a ledger."""

    customer_id: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    customer_id: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class ExpiredChunk:
    """The customers ``after_id < id <= up_to_id`` (``None``: no upper bound) of a merchant
    from whom the expiry run at ``at`` took points: those with that run's expiry entry."""

    merchant_id: int
    at: datetime
    after_id: int = 0
    up_to_id: int | None = None


@dataclass(frozen=True, slots=True)
class ExpiryNotice:
    """Points about to expire that a customer is told about now (once per last valid day)."""

    customer_id: int
    expiration: Expiration
    balance: Points


@dataclass(frozen=True, slots=True)
class NightlySchedule:
    """When a merchant's nightly run is due: its time zone, the local date of the last run
    that finished, and until when a run's claim holds (``None``: no run has claimed it)."""

    merchant_id: int
    timezone: str
    last_nightly_on: date | None
    claimed_until: datetime | None = None


class MerchantRepository(Protocol):
    async def add(self, merchant: Merchant, *, at: datetime) -> Merchant:
        """Store a new merchant; raises ``UniqueViolation("slug")``."""
        ...

    async def get(self, merchant_id: int) -> Merchant | None: ...

    async def get_by_slug(self, slug: str) -> Merchant | None: ...

    async def update_settings(self, merchant_id: int, settings: MerchantSettings) -> None: ...

    async def update_smtp(self, merchant_id: int, smtp: SmtpSettings) -> None: ...

    async def set_smtp_password(self, merchant_id: int, encrypted: str | None) -> None:
        """Store the encrypted SMTP password (``None`` removes it)."""
        ...

    async def smtp_password(self, merchant_id: int) -> str | None:
        """The encrypted SMTP password, if one is set."""
        ...

    async def count(self) -> int: ...

    async def add_first(self, merchant: Merchant, *, at: datetime) -> Merchant | None:
        """Store the merchant only if there is no merchant at all (the first-run setup);
        None otherwise. Of concurrent calls at most one stores its merchant."""
        ...

    async def nightly_schedules(self) -> list[NightlySchedule]:
        """Every merchant's nightly schedule, in id order."""
        ...

    async def claim_nightly(
        self, merchant_id: int, *, today: date, token: str, at: datetime, until: datetime
    ) -> bool:
        """Claim the merchant's nightly run for ``today`` with ``token`` until ``until``,
        unless a run for ``today`` (or later) has finished or another claim still holds at
        ``at``; True when this call did. Of concurrent claims, one wins. A claim that is
        neither finished nor released runs out at ``until`` (its process died)."""
        ...

    async def finish_nightly(self, merchant_id: int, *, today: date, token: str) -> bool:
        """Record ``today`` as the merchant's last finished nightly date and drop the claim,
        if the claim is still held with ``token``; False when it ran out and was taken over
        (the run that took it records the date)."""
        ...

    async def release_nightly(self, merchant_id: int, *, token: str) -> None:
        """Drop the claim held with ``token`` (the run failed or was cancelled), so that the
        next tick runs the night again."""
        ...


class StaffRepository(Protocol):
    async def add(self, merchant_id: int, *, email: str, password_hash: str, at: datetime) -> int:
        """A staff user; raises ``UniqueViolation("email")`` (emails are unique overall)."""
        ...

    async def get(self, staff_id: int) -> StaffUser | None: ...

    async def find_by_email(self, email: str) -> StaffUser | None:
        """Case-insensitive; staff emails are unique across all merchants."""
        ...


class ApiTokenRepository(Protocol):
    async def add(
        self, merchant_id: int, *, name: str, token_digest: str, hint: str, at: datetime
    ) -> ApiToken: ...

    async def find_active(self, token_digest: str) -> ApiToken | None:
        """The unrevoked token with this digest, whichever merchant owns it."""
        ...

    async def list(self, merchant_id: int) -> list[ApiToken]:
        """Newest first, revoked ones included."""
        ...

    async def revoke(self, merchant_id: int, token_id: int, *, at: datetime) -> bool:
        """False when the merchant has no such unrevoked token."""
        ...

    async def touch(self, token_id: int, *, at: datetime) -> None:
        """Record a use of the token."""
        ...


class CustomerRepository(Protocol):
    async def add(self, customer: Customer) -> Customer:
        """Store and give an id; raises ``UniqueViolation`` for email, shop id or referral code."""
        ...

    async def get(
        self, merchant_id: int, customer_id: int, *, for_update: bool = False
    ) -> Customer | None:
        """With ``for_update`` the customer is locked until the transaction ends."""
        ...

    async def find_by_email(self, merchant_id: int, email: str) -> Customer | None:
        """Case-insensitive."""
        ...

    async def find_by_shop_customer_id(
        self, merchant_id: int, shop_customer_id: str
    ) -> Customer | None: ...

    async def find_by_referral_code(self, merchant_id: int, code: str) -> Customer | None: ...

    async def update(self, customer: Customer) -> None:
        """Write back identity fields; raises ``UniqueViolation`` like ``add``."""
        ...

    async def count(self, merchant_id: int) -> int:
        """How many customers the merchant has."""
        ...

    async def chunk_end(self, merchant_id: int, *, after_id: int, size: int) -> int | None:
        """The id that ends the next chunk of ``size`` customers after ``after_id`` (id
        order): the size-th one, or the last one when fewer are left; None when none is."""
        ...

    async def search(
        self,
        merchant_id: int,
        query: CustomerQuery,
        *,
        after_id: int | None,
        limit: int,
        today: date,
    ) -> list[CustomerLoyalty]:
        """A page of the customers the query finds (see ``customer_query``), keyset-paged:
        ``after_id`` is the last customer of the previous page. Everyone is listed newest
        first; an alternative in its key order, then by id. Each alternative is an index
        range read, never a scan of all customers. Summaries as of ``today`` (``loyalty``)."""
        ...


class LedgerRepository(Protocol):
    async def get(self, merchant_id: int, customer_id: int, policy: ExpiryPolicy) -> Ledger:
        """The customer's open lots; lock the customer (``CustomerRepository.get``) first."""
        ...

    async def save(self, merchant_id: int, ledger: Ledger, *, at: datetime) -> None:
        """Write the ledger's new entries, new and changed lots and its summary."""
        ...

    async def find_order(
        self, merchant_id: int, kind: EntryKind, order_ref: str
    ) -> OrderUse | None: ...

    async def has_entry(self, merchant_id: int, customer_id: int, kind: EntryKind) -> bool:
        """Whether the customer's ledger holds any entry of ``kind``."""
        ...

    async def entries(
        self, merchant_id: int, customer_id: int, *, limit: int, before_id: int | None = None
    ) -> list[StoredEntry]:
        """Newest first."""
        ...

    async def expire_due(
        self,
        merchant_id: int,
        *,
        at: datetime,
        today: date,
        after_id: int = 0,
        up_to_id: int | None = None,
    ) -> int:
        """Empty every lot of the merchant whose last valid day is before ``today``, for the
        customers with ``after_id < id <= up_to_id`` (``None``: no upper bound).

        One expiry entry (``at``) per affected customer, summaries updated; set-based, never
        a statement per customer. Returns the number of customers whose points expired
        (``ExpiredChunk`` names them for what follows in the same transaction).
        """
        ...

    async def record_expiry_notices(
        self,
        merchant_id: int,
        *,
        first_day: date,
        last_day: date,
        after_id: int,
        up_to_id: int,
        at: datetime,
    ) -> list[ExpiryNotice]:
        """Note, for each customer with an email and ``after_id < id <= up_to_id``, each last
        valid day in ``[first_day, last_day]`` on which their open lots hold points, unless
        that customer and day were noted before (once ever; of concurrent calls one notes it).

        Set-based. Returns only the notices this call recorded, with the customers' balances.
        """
        ...

    async def loyalty(
        self, merchant_id: int, customer_ids: Sequence[int], *, today: date
    ) -> list[CustomerLoyalty]:
        """Identity and summary of the given customers, in one query. The summary is the one
        valid on ``today`` (the merchant's local date): lots whose last valid day is before
        it count for nothing, also while the nightly run has not expired them yet."""
        ...

    async def daily_totals(self, merchant_id: int, periods: Sequence[DayPeriod]) -> list[DayTotals]:
        """Points issued, spent and expired within each period, in one set-based query; days
        without entries are left out."""
        ...

    async def upcoming_expiries(
        self, merchant_id: int, *, first_day: date, last_day: date
    ) -> list[ExpiryTotal]:
        """What the open lots whose last valid day is in ``[first_day, last_day]`` hold, per
        day, in day order; days when nothing expires are left out."""
        ...

    async def loyalty_page(
        self, merchant_id: int, *, after_id: int, limit: int, today: date
    ) -> list[CustomerLoyalty]:
        """Customers with ``id > after_id`` in id order (keyset paging), in one query;
        summaries as of ``today`` (``loyalty``)."""
        ...


class OutboxRepository(Protocol):
    """Work for the outside world, written in the transaction that causes it.

    Claims are exclusive: while a claim lives, no other claimer gets the item, however many
    claim at once. Settling an item (delivered, skipped, failed) needs the token of the claim
    that holds it; a worker whose claim was taken over learns it from a ``False``.
    """

    async def add(
        self,
        merchant_id: int,
        topic: str,
        payload: Payload,
        *,
        customer_id: int | None = None,
        at: datetime,
    ) -> int:
        """Record an item in this transaction; claimable from ``at`` once committed."""
        ...

    async def add_many(
        self,
        merchant_id: int,
        topic: str,
        items: Sequence[tuple[int | None, Payload]],
        *,
        at: datetime,
    ) -> int:
        """Record one item per ``(customer_id, payload)`` in this transaction, in one
        statement (or a few); returns how many."""
        ...

    async def add_for_expired(self, chunk: ExpiredChunk, topic: str) -> int:
        """Record, set-based, one item per customer with an email in ``chunk`` (call it in the
        expiry's transaction): for ``ecomail.event`` the ``credit`` event, for
        ``email.points_changed`` the email, with the payload ``credit_event_value`` and
        ``PointsChanged`` give for the customer's expiry entry and summary. Returns how many."""
        ...

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        """Up to ``limit`` due items (pending, available, no live claim), oldest first, claimed
        with ``token`` until ``now + lease``; each claim counts as an attempt. Expired claims
        are taken over. The claims hold once the unit of work commits."""
        ...

    async def mark_delivered(self, item_id: int, *, token: str, at: datetime) -> bool:
        """False (and nothing changed) unless ``token`` holds the item."""
        ...

    async def mark_skipped(self, item_id: int, *, token: str, reason: str, at: datetime) -> bool:
        """Settle without delivering: there is nothing to send any more."""
        ...

    async def mark_failed(
        self, item_id: int, *, token: str, error: str, retry_at: datetime | None, at: datetime
    ) -> bool:
        """Record a failed attempt and its error: pending again from ``retry_at``, or, with
        ``None``, given up (status failed) until the merchant retries it."""
        ...

    async def defer(self, item_id: int, *, token: str, until: datetime) -> bool:
        """Pending again from ``until`` without counting this claim as an attempt (the item
        waits for something else to happen first)."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest pending item can next be claimed (its available time, or the end
        of its live claim); ``None`` when nothing is pending."""
        ...

    async def failed(self, merchant_id: int, *, limit: int) -> list[FailedDelivery]:
        """The merchant's given-up items, newest first."""
        ...

    async def retry_failed(self, merchant_id: int, item_id: int | None, *, at: datetime) -> int:
        """Make the merchant's failed item (or all of them, with ``None``) pending again with
        a fresh count of attempts. Returns how many."""
        ...

    async def health(self, merchant_id: int) -> DeliveryHealth: ...

    async def purge_settled(self, *, before: datetime) -> int:
        """Delete delivered and skipped items settled before ``before``; failed ones stay."""
        ...


@dataclass(frozen=True, slots=True)
class ClaimedContact:
    customer_id: int
    in_list: bool  # Ellity has written this customer's contact to the list before


@dataclass(frozen=True, slots=True)
class OldAddress:
    """An address a customer moved away from, whose contact may still hold their fields."""

    id: int
    customer_id: int
    email: str


@dataclass(frozen=True, slots=True)
class ContactSyncHealth:
    pending: int
    failed: int
    oldest_pending_at: datetime | None
    last_synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class ContactSyncFailure:
    customer_id: int
    email: str | None
    error: str
    failed_at: datetime


class EcomailRepository(Protocol):
    """The merchant's Ecomail integration (at most one)."""

    async def get(self, merchant_id: int) -> EcomailIntegration | None: ...

    async def api_key(self, merchant_id: int) -> str | None:
        """The encrypted API key."""
        ...

    async def save_key(self, merchant_id: int, *, encrypted: str, hint: str, at: datetime) -> None:
        """Store a verified key; the integration is inactive (and without a list) until
        activated again, since a new key may belong to another account."""
        ...

    async def activate(
        self, merchant_id: int, *, list_id: str, list_name: str, at: datetime
    ) -> None:
        """Active with this list, and a backfill of every customer requested."""
        ...

    async def deactivate(self, merchant_id: int, *, at: datetime) -> None: ...

    async def request_backfill(self, merchant_id: int, *, at: datetime) -> None:
        """Push every customer again (restarts a backfill in progress)."""
        ...

    async def advance_backfill(
        self, merchant_id: int, *, after_id: int, marked: int, finished_at: datetime | None
    ) -> None: ...

    async def record_success(self, merchant_id: int, *, at: datetime) -> None: ...

    async def active_list(self, merchant_id: int) -> str | None:
        """The list id while the integration is active; ``None`` otherwise."""
        ...

    async def backfilling(self) -> list[int]:
        """Active merchants whose backfill still has customers to mark."""
        ...


class ContactSyncRepository(Protocol):
    """Customers whose contact in the merchant's Ecomail list needs writing.

    A change *marks* the customer pending (coalescing: however many changes, one pending
    row, and the worker sends the state as it is when it sends). A worker *claims* pending
    contacts for a lease, writes them, and *settles* them: a contact changed again since its
    claim stays pending. Claims are exclusive across workers.
    """

    async def mark_changed(
        self, merchant_id: int, customer_ids: Sequence[int], *, at: datetime, moved: bool = False
    ) -> None:
        """Pending from now. ``moved``: the email changed, so the contact under the new
        email is not known to be in the list."""
        ...

    async def mark_moved(
        self, merchant_id: int, customer_id: int, *, old_email: str, at: datetime
    ) -> None:
        """The customer's email changed from ``old_email`` (call it in the change's
        transaction): ``mark_changed`` with ``moved``, and ``old_email`` is remembered for
        clearing when Ellity may have written it (the contact was written, or a claim is
        writing it now) or another customer's fields may still sit there (it is remembered
        for another customer already)."""
        ...

    async def old_addresses(
        self, merchant_id: int, customer_ids: Sequence[int]
    ) -> list[OldAddress]:
        """The addresses these customers left that no customer of the merchant holds now
        (an address someone holds is written with their fields instead)."""
        ...

    async def forget_old_addresses(
        self, merchant_id: int, address_ids: Sequence[int], *, at: datetime
    ) -> int:
        """These old addresses were cleared: they are forgotten, and a customer who took one
        of them since it was read is marked, so their fields are written again."""
        ...

    async def mark_expired(self, chunk: ExpiredChunk) -> int:
        """Mark, set-based, the contacts of the customers with an email in ``chunk`` (call it
        in the expiry's transaction); returns how many."""
        ...

    async def mark_all(
        self, merchant_id: int, *, after_id: int, limit: int, at: datetime
    ) -> tuple[int, int | None]:
        """Mark the next ``limit`` customers with an email after ``after_id`` (id order);
        returns how many and the last id, or ``None`` for the id when none was left."""
        ...

    async def claim(
        self, merchant_id: int, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedContact]: ...

    async def settle(
        self,
        merchant_id: int,
        customer_ids: Sequence[int],
        *,
        token: str,
        added: Collection[int] = (),
        at: datetime,
    ) -> int:
        """Written to the list: in the list from now on; no longer pending unless changed
        since the claim. ``added``: those of them written by an add call that added contacts
        (their ``added_at`` becomes ``at``). All of a claim's contacts written together are
        settled in one call (one statement takes their rows in one order)."""
        ...

    async def release(
        self, merchant_id: int, *, token: str, error: str, retry_at: datetime, at: datetime
    ) -> int:
        """This claim's contacts could not be written now; pending again from ``retry_at``."""
        ...

    async def fail(
        self,
        merchant_id: int,
        customer_ids: Sequence[int] | None,
        *,
        token: str,
        error: str,
        at: datetime,
    ) -> int:
        """These of this claim's contacts (``None``: all of them) will not be written as
        things are; failed until retried."""
        ...

    async def record_written(
        self, merchant_id: int, customer_id: int, *, added_at: datetime | None, at: datetime
    ) -> None:
        """The contact was written outside a claim (activation writes the first one)."""
        ...

    async def attempts(self, merchant_id: int, *, token: str) -> int:
        """The most failed attempts among this claim's contacts."""
        ...

    async def is_pending(self, merchant_id: int, customer_id: int) -> bool:
        """Pending and not failed: its contact is still on its way."""
        ...

    async def due_merchants(self, *, now: datetime) -> list[int]:
        """Merchants with an active integration and contacts due now."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest pending contact of an active integration can next be claimed."""
        ...

    async def health(self, merchant_id: int) -> ContactSyncHealth: ...

    async def failures(self, merchant_id: int, *, limit: int) -> list[ContactSyncFailure]: ...

    async def retry_failed(self, merchant_id: int, *, at: datetime) -> int: ...

    async def added_at(self, merchant_id: int, customer_id: int) -> datetime | None:
        """When an add call of Ellity's that added contacts included this customer."""
        ...


class NewsletterRepository(Protocol):
    """Ecomail's list webhook and the newsletter reward: each merchant's webhook token, the
    notifications the webhook received, and the reward each customer holds.

    Notifications are claimed like outbox items: while a claim lives no other claimer gets
    the notification, however many claim at once; settling or deferring needs the claim's
    token, and a worker whose claim was taken over learns it from a ``False``.
    """

    async def webhook_token(self, merchant_id: int) -> str | None:
        """The merchant's webhook token, encrypted."""
        ...

    async def set_webhook_token(
        self, merchant_id: int, *, digest: str, encrypted: str, at: datetime, replace: bool
    ) -> bool:
        """Store the merchant's token (``digest``: its SHA-256). Without ``replace`` only when
        the merchant has none yet (of concurrent calls one wins). Returns whether it was
        stored. A replaced token stops working at once."""
        ...

    async def receive(self, digest: str, notification: Notification, *, at: datetime) -> int | None:
        """Store a pending notification for the merchant whose token has this ``digest``, in
        one statement; ``None`` (nothing stored) when no merchant has it."""
        ...

    async def webhook_merchant(self, digest: str) -> int | None:
        """The merchant whose webhook token has this digest."""
        ...

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedNotification]:
        """Up to ``limit`` due notifications (pending, available, no live claim), oldest
        first, claimed with ``token`` until ``now + lease``; each claim counts as an attempt.
        Expired claims are taken over."""
        ...

    async def settle(
        self,
        notification_id: int,
        *,
        token: str,
        outcome: Outcome,
        reason: str,
        points: Points | None,
        customer_id: int | None,
        at: datetime,
    ) -> bool:
        """Record the outcome (processed); False (and nothing changed) unless ``token``
        holds the notification."""
        ...

    async def defer(
        self,
        notification_id: int,
        *,
        token: str,
        until: datetime,
        reason: str,
        count_attempt: bool,
    ) -> bool:
        """Pending again from ``until``, with what it waits for; without ``count_attempt`` the
        claim is not counted as an attempt."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest pending notification can next be claimed."""
        ...

    async def recent(self, merchant_id: int, *, limit: int) -> list[NotificationRecord]:
        """The merchant's latest notifications, newest first."""
        ...

    async def purge_processed(self, *, before: datetime) -> int:
        """Delete notifications processed before ``before``; returns how many."""
        ...

    async def reward_hold(self, merchant_id: int, customer_id: int) -> RewardHold:
        """The reward the customer holds (nothing held when none was ever paid). Lock the
        customer (``CustomerRepository.get``) first when it is to be changed."""
        ...

    async def save_reward_hold(
        self, merchant_id: int, customer_id: int, hold: RewardHold, *, at: datetime
    ) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without ``commit()`` rolls everything back."""

    merchants: MerchantRepository
    staff: StaffRepository
    api_tokens: ApiTokenRepository
    customers: CustomerRepository
    ledgers: LedgerRepository
    outbox: OutboxRepository
    ecomail: EcomailRepository
    contacts: ContactSyncRepository
    newsletter: NewsletterRepository

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        """A new unit of work; ``read_only`` ones never take write locks."""
        ...
