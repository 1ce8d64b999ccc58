"""Read-side queries for the pages and reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from ellity.domain.model.activity import DayPeriod, DayTotals, ExpiryTotal
from ellity.domain.model.consent import ConsentCounts
from ellity.domain.model.contact import CustomerLoyalty, LoyaltyRow
from ellity.domain.model.contact_state import SubscriptionStatus
from ellity.domain.model.customer_query import CustomerQuery
from ellity.domain.model.first_run import SetupFacts
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.newsletter import (
    NotificationRecord,
)
from ellity.domain.model.outbox import (
    DeliveryHealth,
    EmailProblem,
    FailedDelivery,
    JsonValue,
    OutboxStatus,
)


@dataclass(frozen=True, slots=True)
class ContactSyncHealth:
    pending: int
    failed: int
    oldest_pending_at: datetime | None
    last_synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class ContactSyncFailure:
    customer_id: CustomerId
    email: str | None
    error: str
    failed_at: datetime


@dataclass(frozen=True, slots=True)
class ContactSyncRow:
    """One customer's contact sync row as the customer's page shows it (``ecomail_contacts``):
    known in the list, when Ellity added it and last wrote its fields, a write waiting since,
    the last error (and when the contact was given up on), an unsubscription due, and its
    status in the list as last seen (none: never seen)."""

    in_list: bool
    added_at: datetime | None
    synced_at: datetime | None
    pending_since: datetime | None
    last_error: str | None
    failed_at: datetime | None
    unsubscribe_due: bool
    list_status: SubscriptionStatus | None
    list_status_at: datetime | None


@dataclass(frozen=True, slots=True)
class SentEvent:
    """An ``ecomail.event`` outbox item: its label and JSON value (a reference item's built as
    its claim builds it), its status, when it was recorded and delivered, and why its last
    attempt failed or it was skipped; ``email`` is the customer's current one (none when they
    have none)."""

    id: int
    customer_id: CustomerId
    email: str | None
    label: str
    value: JsonValue
    status: OutboxStatus
    created_at: datetime
    delivered_at: datetime | None
    error: str | None = None


class Views(Protocol):
    """What the pages and reports read: set-based queries that change nothing, each scoped
    by the merchant it is asked for."""

    async def daily_totals(
        self, merchant_id: MerchantId, periods: Sequence[DayPeriod]
    ) -> list[DayTotals]:
        """Points issued, spent and expired within each period, in one set-based query; days
        without entries are left out."""
        ...

    async def upcoming_expiries(
        self, merchant_id: MerchantId, *, first_day: date, last_day: date
    ) -> list[ExpiryTotal]:
        """What the open lots whose last valid day is in ``[first_day, last_day]`` hold, per
        day, in day order; days when nothing expires are left out."""
        ...

    async def loyalty_page(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, today: date
    ) -> list[CustomerLoyalty]:
        """Customers with ``id > after_id`` in id order (keyset paging), in one query;
        summaries as of ``today`` (``LedgerRepository.loyalty``)."""
        ...

    async def loyalty_rows_page(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, today: date
    ) -> list[LoyaltyRow]:
        """``loyalty_page`` as flat rows (``loyalty_row`` of each of its customers), for
        snapshots of every customer (``snapshots_of_rows``)."""
        ...

    async def failed_deliveries(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[FailedDelivery]:
        """The merchant's given-up outbox items, newest first."""
        ...

    async def delivery_health(self, merchant_id: MerchantId) -> DeliveryHealth:
        """The merchant's outbox: what waits, what failed, the last delivery."""
        ...

    async def email_problem(self, merchant_id: MerchantId) -> EmailProblem | None:
        """Why the merchant's emails are not going out: the newest error among the emails
        waiting for a retry or given up on, unless an email was delivered after it; None
        when nothing failed."""
        ...

    async def contact_sync_health(self, merchant_id: MerchantId) -> ContactSyncHealth:
        """The merchant's contacts waiting to be written to the list, and the failed ones."""
        ...

    async def contact_sync_failures(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[ContactSyncFailure]:
        """The merchant's contacts that failed to be written, latest first."""
        ...

    async def recent_notifications(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[NotificationRecord]:
        """The merchant's latest notifications, newest first."""
        ...

    async def setup_facts(self, merchant_id: MerchantId) -> SetupFacts:
        """What the first-run checklist needs, in one query: each fact is whether a row
        exists (read through an index, at most one row each), never a count."""
        ...

    async def consent_counts(self, merchant_id: MerchantId) -> ConsentCounts:
        """How many of the merchant's customers with an email have each marketing consent,
        and how many have no email; one pass over the merchant's customers."""
        ...

    async def search_customers(
        self,
        merchant_id: MerchantId,
        query: CustomerQuery,
        *,
        after_id: CustomerId | None,
        limit: int,
        today: date,
        before_id: CustomerId | None = None,
    ) -> list[CustomerLoyalty]:
        """A page of the customers the query finds (see ``customer_query``), keyset-paged:
        ``after_id`` is the last customer of the previous page; or, given ``before_id`` (the
        first customer of a page), the ``limit`` customers listed right before it, in the
        listing's order. Everyone is listed newest first; an alternative in its key order,
        then by id. Each alternative is an index range read, never a scan of all customers.
        Summaries as of ``today`` (``LedgerRepository.loyalty``)."""
        ...

    async def count_customers(
        self, merchant_id: MerchantId, query: CustomerQuery, *, at_most: int
    ) -> int:
        """How many customers the query finds, but at most ``at_most + 1``: the count reads
        no more index entries than that."""
        ...

    async def contact_sync_row(
        self, merchant_id: MerchantId, customer_id: CustomerId
    ) -> ContactSyncRow | None:
        """The customer's contact sync row; None when there is none (or it is another
        merchant's). One read by primary key."""
        ...

    async def customer_events(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int
    ) -> list[SentEvent]:
        """The customer's latest ``ecomail.event`` items, whatever their status, newest first
        (by id); one read of the ``(customer_id, id)`` index."""
        ...

    async def sent_events(self, merchant_id: MerchantId, *, limit: int) -> list[SentEvent]:
        """The merchant's ``ecomail.event`` items delivered last, newest delivery first; one
        backward read of the ``(merchant_id, delivered_at)`` index."""
        ...
