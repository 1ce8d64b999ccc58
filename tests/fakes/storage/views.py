"""The read-side queries for the pages and reports, over the in-memory state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING

from ellity.domain.model.activity import DayPeriod, DayTotals, ExpiryTotal
from ellity.domain.model.consent import ConsentCounts, MarketingConsent
from ellity.domain.model.contact import CustomerLoyalty, LoyaltyRow, loyalty_row
from ellity.domain.model.contact_state import status_of
from ellity.domain.model.customer import Customer, email_domain_key, name_key
from ellity.domain.model.customer_query import CustomerQuery, SearchField
from ellity.domain.model.first_run import SetupFacts
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.ledger import EntryKind
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import NotificationRecord
from ellity.domain.model.outbox import (
    DeliveryHealth,
    EmailProblem,
    FailedDelivery,
    OutboxStatus,
    Topic,
)
from ellity.domain.model.reason import Reason
from ellity.ports.storage import (
    ContactSyncFailure,
    ContactSyncHealth,
    ContactSyncRow,
    SentEvent,
    Views,
)
from tests.fakes.storage.ledger import loyalty_of
from tests.fakes.storage.outbox import payload_of
from tests.fakes.storage.state import ContactRecord, OutboxRecord, round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


class InMemoryViews(Views):
    """The read-side queries, over the unit of work's state."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def daily_totals(
        self, merchant_id: MerchantId, periods: Sequence[DayPeriod]
    ) -> list[DayTotals]:
        await round_trip()
        sums: dict[date, list[int]] = {}
        for row in self._uow.state.entries.values():
            if row.merchant_id != merchant_id:
                continue
            entry = row.entry
            period = next((p for p in periods if p.start <= entry.at < p.end), None)
            if period is None:
                continue
            totals = sums.setdefault(period.day, [0, 0, 0])
            cents = entry.points.hundredths
            if entry.kind is EntryKind.EXPIRE:
                totals[2] -= cents
            elif cents > 0:
                totals[0] += cents
            else:
                totals[1] -= cents
        return [
            DayTotals(p.day, *(Points(v) for v in sums[p.day])) for p in periods if p.day in sums
        ]

    async def upcoming_expiries(
        self, merchant_id: MerchantId, *, first_day: date, last_day: date
    ) -> list[ExpiryTotal]:
        await round_trip()
        held: dict[date, tuple[int, set[int]]] = {}
        for row in self._uow.state.lots.values():
            lot = row.lot
            if (
                row.merchant_id == merchant_id
                and lot.remaining.is_positive()
                and lot.expires_on is not None
                and first_day <= lot.expires_on <= last_day
            ):
                cents, holders = held.get(lot.expires_on, (0, set()))
                holders = holders | {row.customer_id}
                held[lot.expires_on] = (cents + lot.remaining.hundredths, holders)
        return [
            ExpiryTotal(day, Points(cents), len(holders))
            for day, (cents, holders) in sorted(held.items())
        ]

    async def loyalty_page(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, today: date
    ) -> list[CustomerLoyalty]:
        await round_trip()
        ids = sorted(
            customer_id
            for customer_id, c in self._uow.state.customers.items()
            if c.merchant_id == merchant_id and customer_id > after_id
        )
        return [loyalty_of(self._uow.state, i, today) for i in ids[:limit]]

    async def loyalty_rows_page(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, today: date
    ) -> list[LoyaltyRow]:
        page = await self.loyalty_page(merchant_id, after_id=after_id, limit=limit, today=today)
        return [loyalty_row(customer) for customer in page]

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
        await round_trip()
        state = self._uow.state
        found = search_in_memory(
            self._mine(merchant_id), query, after_id=after_id, before_id=before_id, limit=limit
        )
        return [loyalty_of(state, c.id, today) for c in found if c.id is not None]

    async def count_customers(
        self, merchant_id: MerchantId, query: CustomerQuery, *, at_most: int
    ) -> int:
        await round_trip()
        listed = search_in_memory(self._mine(merchant_id), query, after_id=None, limit=at_most + 1)
        return len(listed)

    def _mine(self, merchant_id: MerchantId) -> list[Customer]:
        return sorted(
            (c for c in self._uow.state.customers.values() if c.merchant_id == merchant_id),
            key=lambda c: c.id or 0,
        )

    async def failed_deliveries(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[FailedDelivery]:
        await round_trip()
        found = sorted(
            (r for r in self._outbox_of(merchant_id) if r.status == OutboxStatus.FAILED.value),
            key=lambda r: r.id,
            reverse=True,
        )[:limit]
        return [
            FailedDelivery(
                id=r.id,
                topic=r.topic,
                customer_id=r.customer_id,
                attempts=r.attempts,
                last_error=r.last_error or "",
                created_at=r.created_at,
                last_attempt_at=r.last_attempt_at,
            )
            for r in found
        ]

    async def delivery_health(self, merchant_id: MerchantId) -> DeliveryHealth:
        await round_trip()
        mine = list(self._outbox_of(merchant_id))
        pending = [r for r in mine if r.status == OutboxStatus.PENDING.value]
        delivered = [
            r.delivered_at
            for r in mine
            if r.status == OutboxStatus.DELIVERED.value and r.delivered_at is not None
        ]
        return DeliveryHealth(
            pending=len(pending),
            failed=sum(r.status == OutboxStatus.FAILED.value for r in mine),
            oldest_pending_at=min((r.created_at for r in pending), default=None),
            last_delivered_at=max(delivered, default=None),
        )

    async def email_problem(self, merchant_id: MerchantId) -> EmailProblem | None:
        await round_trip()
        emails = [r for r in self._outbox_of(merchant_id) if r.topic.startswith("email.")]
        unsent = [
            r for r in emails if r.status in (OutboxStatus.PENDING.value, OutboxStatus.FAILED.value)
        ]
        tried = [r for r in unsent if r.last_error is not None and r.last_attempt_at is not None]
        if not tried:
            return None
        newest = max(tried, key=lambda r: (r.last_attempt_at or r.created_at, r.id))
        if any(
            r.delivered_at is not None
            and newest.last_attempt_at is not None
            and r.delivered_at > newest.last_attempt_at
            for r in emails
            if r.status == OutboxStatus.DELIVERED.value
        ):
            return None
        return EmailProblem(
            error=newest.last_error or "",
            at=newest.last_attempt_at,
            waiting=sum(r.status == OutboxStatus.PENDING.value for r in unsent),
            failed=sum(r.status == OutboxStatus.FAILED.value for r in unsent),
        )

    async def contact_sync_health(self, merchant_id: MerchantId) -> ContactSyncHealth:
        await round_trip()
        mine = list(self._contacts_of(merchant_id))
        waiting = [r.pending_since for r in mine if r.waiting and r.pending_since is not None]
        integration = self._uow.state.ecomail.get(merchant_id)
        return ContactSyncHealth(
            pending=len(waiting),
            failed=sum(r.failed_at is not None for r in mine),
            oldest_pending_at=min(waiting, default=None),
            last_synced_at=None if integration is None else integration.last_success_at,
        )

    async def contact_sync_failures(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[ContactSyncFailure]:
        await round_trip()
        customers = self._uow.state.customers
        failed = sorted(
            (
                r
                for r in self._contacts_of(merchant_id)
                if r.failed_at is not None and r.customer_id in customers
            ),
            key=lambda r: (r.failed_at, r.customer_id),
            reverse=True,
        )[:limit]
        return [
            ContactSyncFailure(
                customer_id=r.customer_id,
                email=customers[r.customer_id].email,
                error=r.last_error or "",
                failed_at=r.failed_at,
            )
            for r in failed
            if r.failed_at is not None
        ]

    async def recent_notifications(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[NotificationRecord]:
        await round_trip()
        mine = sorted(
            (r for r in self._uow.state.notifications.values() if r.merchant_id == merchant_id),
            key=lambda r: r.id,
            reverse=True,
        )[:limit]
        return [
            NotificationRecord(
                id=r.id,
                received_at=r.received_at,
                notification=r.notification,
                state=r.state,
                outcome=r.outcome,
                reason=r.reason_parts or Reason.stored(r.reason or ""),
                points=r.points,
                customer_id=r.customer_id,
                processed_at=r.processed_at,
            )
            for r in mine
        ]

    async def setup_facts(self, merchant_id: MerchantId) -> SetupFacts:
        await round_trip()
        state = self._uow.state
        ecomail = state.ecomail.get(merchant_id)
        return SetupFacts(
            api_token=any(
                t.merchant_id == merchant_id and t.revoked_at is None
                for t in state.api_tokens.values()
            ),
            ecomail_active=ecomail is not None and ecomail.active,
            notification_received=any(
                n.merchant_id == merchant_id for n in state.notifications.values()
            ),
            test_email_sent=merchant_id in state.test_emails_sent,
        )

    async def consent_counts(self, merchant_id: MerchantId) -> ConsentCounts:
        await round_trip()
        mine = [c for c in self._uow.state.customers.values() if c.merchant_id == merchant_id]
        with_email = [c.marketing_consent for c in mine if c.email is not None]
        return ConsentCounts(
            granted=with_email.count(MarketingConsent.GRANTED),
            refused=with_email.count(MarketingConsent.REFUSED),
            unknown=with_email.count(MarketingConsent.UNKNOWN),
            without_email=len(mine) - len(with_email),
        )

    def _outbox_of(self, merchant_id: MerchantId) -> Iterable[OutboxRecord]:
        return (r for r in self._uow.state.outbox.values() if r.merchant_id == merchant_id)

    def _contacts_of(self, merchant_id: MerchantId) -> Iterable[ContactRecord]:
        return (r for r in self._uow.state.contacts.values() if r.merchant_id == merchant_id)

    async def contact_sync_row(
        self, merchant_id: MerchantId, customer_id: CustomerId
    ) -> ContactSyncRow | None:
        await round_trip()
        row = self._uow.state.contacts.get(customer_id)
        if row is None or row.merchant_id != merchant_id:
            return None
        return ContactSyncRow(
            in_list=row.in_list,
            added_at=row.added_at,
            synced_at=row.synced_at,
            pending_since=row.pending_since,
            last_error=row.last_error,
            failed_at=row.failed_at,
            unsubscribe_due=row.unsubscribe_due,
            list_status=status_of(row.list_status),
            list_status_at=row.list_status_at,
        )

    async def customer_events(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int
    ) -> list[SentEvent]:
        await round_trip()
        found = [r for r in self._events_of(merchant_id) if r.customer_id == customer_id]
        return [self._event(r) for r in sorted(found, key=lambda r: -r.id)[:limit]]

    async def sent_events(self, merchant_id: MerchantId, *, limit: int) -> list[SentEvent]:
        await round_trip()
        found = [
            r
            for r in self._events_of(merchant_id)
            if r.status == OutboxStatus.DELIVERED.value and r.delivered_at is not None
        ]
        found.sort(key=lambda r: (r.delivered_at, r.id), reverse=True)
        return [self._event(r) for r in found[:limit]]

    def _events_of(self, merchant_id: MerchantId) -> list[OutboxRecord]:
        return [
            r
            for r in self._uow.state.outbox.values()
            if r.merchant_id == merchant_id
            and r.topic == Topic.ECOMAIL_EVENT.value
            and r.customer_id is not None
            and r.customer_id in self._uow.state.customers
        ]

    def _event(self, record: OutboxRecord) -> SentEvent:
        state = self._uow.state
        assert record.customer_id is not None
        payload = payload_of(state, record)
        label = payload.get("label")
        return SentEvent(
            id=record.id,
            customer_id=record.customer_id,
            email=state.customers[record.customer_id].email,
            label=label if isinstance(label, str) else "",
            value=payload.get("value"),
            status=OutboxStatus(record.status),
            created_at=record.created_at,
            delivered_at=record.delivered_at,
            error=record.last_error,
        )


def _search_keys(customer: Customer) -> dict[SearchField, str | None]:
    return {
        "email": customer.email_key,
        "email_domain": email_domain_key(customer.email),
        "first_name": name_key(customer.first_name),
        "last_name": name_key(customer.last_name),
    }


def search_in_memory(
    customers: Sequence[Customer],
    query: CustomerQuery,
    *,
    after_id: CustomerId | None,
    limit: int,
    before_id: CustomerId | None = None,
) -> list[Customer]:
    """``Views.search_customers`` over customers in id order, as the SQL adapter pages."""
    if query.referral_code is not None:
        if after_id is not None or before_id is not None:
            return []
        return [c for c in customers if c.referral_code == query.referral_code][:limit]
    if query.is_everyone:  # newest first, by id (the cursor's customer may be gone)
        newest = list(reversed(customers))
        if before_id is not None:
            older = [c for c in newest if (c.id or 0) > before_id]
            return older[-limit:]
        return [c for c in newest if after_id is None or (c.id or 0) < after_id][:limit]
    listing = _listing(customers, query)
    if before_id is not None:
        at = next((i for i, c in enumerate(listing) if c.id == before_id), None)
        return [] if at is None else listing[max(0, at - limit) : at]
    if after_id is not None:
        at = next((i for i, c in enumerate(listing) if c.id == after_id), None)
        if at is None:
            return []
        listing = listing[at + 1 :]
    return listing[:limit]


def _listing(customers: Sequence[Customer], query: CustomerQuery) -> list[Customer]:
    """Every customer the query's alternatives list, in the listing's order."""
    alternatives = query.alternatives
    listed: list[tuple[int, str, int, Customer]] = []  # (alternative, key, id, customer)
    for customer in customers:
        keys = _search_keys(customer)
        for index, alternative in enumerate(alternatives):
            if alternative.matches(keys):
                key = keys[alternative.order_field] or ""
                listed.append((index, key, customer.id or 0, customer))
                break
    listed.sort(key=lambda item: item[:3])
    return [item[3] for item in listed]
