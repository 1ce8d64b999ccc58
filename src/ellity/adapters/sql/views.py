"""The read-side queries of the pages and reports (the ``Views`` port), in SQL."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

from ellity.adapters.sql import activity, customer_search
from ellity.adapters.sql.database import without_jit
from ellity.adapters.sql.newsletter import notification_of, stored_reason
from ellity.adapters.sql.outbox import built_payloads
from ellity.adapters.sql.tables.contact_sync import ecomail_contacts, ecomail_integrations
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.merchants import api_tokens, merchants
from ellity.adapters.sql.tables.newsletter import newsletter_notifications
from ellity.adapters.sql.tables.outbox import outbox
from ellity.adapters.sql.valid_points import loyalty_columns, loyalty_of
from ellity.domain.model.activity import DayPeriod, DayTotals, ExpiryTotal
from ellity.domain.model.consent import ConsentCounts, MarketingConsent
from ellity.domain.model.contact import CustomerLoyalty, LoyaltyRow
from ellity.domain.model.contact_state import status_of
from ellity.domain.model.customer_query import CustomerQuery
from ellity.domain.model.first_run import SetupFacts
from ellity.domain.model.ids import CustomerId, MerchantId, optional_customer_id
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import NotificationRecord, NotificationState, Outcome
from ellity.domain.model.outbox import (
    DeliveryHealth,
    EmailProblem,
    FailedDelivery,
    OutboxStatus,
    Payload,
    Topic,
)
from ellity.ports.storage.views import (
    ContactSyncFailure,
    ContactSyncHealth,
    ContactSyncRow,
    SentEvent,
    Views,
)

_c = ecomail_contacts.c
_i = ecomail_integrations.c
_n = newsletter_notifications.c
_PENDING = OutboxStatus.PENDING.value
_EVENT = Topic.ECOMAIL_EVENT.value
_EMAIL_TOPICS = "email."  # the prefix of every email topic (``Topic``)
_ROW_WIDTH = 12  # the length of a ``LoyaltyRow``


@functools.cache
def _rows_page_query(dialect: sa.Dialect) -> SQLCompiler:
    """``loyalty_rows_page``'s query compiled once for the dialect: the summary's subqueries
    take milliseconds to compile, and a snapshot of every customer reads hundreds of pages.

    The dates come as ISO text: SQLite stores them so, PostgreSQL casts them (its
    ``DateStyle`` set to ISO in the page's transaction, ``_PG_ROWS_SETTINGS``)."""
    columns = list(loyalty_columns(sa.bindparam("today", type_=sa.Date()))[:_ROW_WIDTH])
    if dialect.name == "postgresql":
        for at in _DATE_COLUMNS:
            columns[at] = sa.cast(columns[at], sa.Text())
    query = (
        sa.select(*columns)
        .where(
            customers.c.merchant_id == sa.bindparam("merchant_id"),
            customers.c.id > sa.bindparam("after_id"),
        )
        .order_by(customers.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )
    return query.compile(dialect=dialect)


_DATE_COLUMNS = (8, 10)  # next_expiry_on, last_change_on in a ``LoyaltyRow``

#: PostgreSQL settings of a rows page's transaction (see ``database.without_jit``), and the
#: ISO dates its casts to text rely on.
_PG_ROWS_SETTINGS = sa.text(
    "SELECT set_config('jit', 'off', true), set_config('DateStyle', 'ISO, YMD', true)"
)


async def _driver_rows(conn: AsyncConnection, values: dict[str, Any]) -> list[LoyaltyRow]:
    """The rows page's rows as the driver returns them, run by the driver on ``conn``:
    SQLAlchemy would build a row object around each, a good part of the cost of a snapshot
    of every customer, and the rows are handed over as they come.

    PostgreSQL: ``asyncpg``'s tuple-like records, in ``conn``'s transaction (begun by an
    earlier statement). SQLite: ``aiosqlite``'s tuples."""
    if not conn.in_transaction():
        raise RuntimeError("the driver's query needs the connection's transaction begun")
    compiled = _rows_page_query(conn.dialect)
    bound = compiled.construct_params(values) or {}
    arguments = [bound[name] for name in compiled.positiontup or ()]
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the connection is closed")
    if conn.dialect.name == "postgresql":
        return cast(list[LoyaltyRow], await driver.fetch(compiled.string, *arguments))
    arguments = [value.isoformat() if isinstance(value, date) else value for value in arguments]
    return cast(list[LoyaltyRow], await driver.execute_fetchall(compiled.string, arguments))


class SqlViews(Views):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def daily_totals(
        self, merchant_id: MerchantId, periods: Sequence[DayPeriod]
    ) -> list[DayTotals]:
        return await activity.daily_totals(self.conn, merchant_id, periods)

    async def upcoming_expiries(
        self, merchant_id: MerchantId, *, first_day: date, last_day: date
    ) -> list[ExpiryTotal]:
        return await activity.upcoming_expiries(
            self.conn, merchant_id, first_day=first_day, last_day=last_day
        )

    async def loyalty_page(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, today: date
    ) -> list[CustomerLoyalty]:
        await without_jit(self.conn)
        rows = await self.conn.execute(
            sa.select(*loyalty_columns(today))
            .where(customers.c.merchant_id == merchant_id, customers.c.id > after_id)
            .order_by(customers.c.id)
            .limit(limit)
        )
        return [loyalty_of(row) for row in rows]

    async def loyalty_rows_page(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, today: date
    ) -> list[LoyaltyRow]:
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(_PG_ROWS_SETTINGS)
        # the columns of ``LoyaltyRow`` are those of ``loyalty_columns`` up to the consent
        values = {"merchant_id": merchant_id, "after_id": after_id, "limit": limit, "today": today}
        return await _driver_rows(self.conn, values)

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
        rows = await customer_search.search_rows(
            self.conn,
            loyalty_columns(today),
            merchant_id,
            query,
            after_id=after_id,
            before_id=before_id,
            limit=limit,
        )
        return [loyalty_of(row) for row in rows]

    async def count_customers(
        self, merchant_id: MerchantId, query: CustomerQuery, *, at_most: int
    ) -> int:
        return await customer_search.count_rows(self.conn, merchant_id, query, at_most=at_most)

    async def failed_deliveries(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[FailedDelivery]:
        rows = await self.conn.execute(
            sa.select(
                outbox.c.id,
                outbox.c.topic,
                outbox.c.customer_id,
                outbox.c.attempts,
                outbox.c.last_error,
                outbox.c.created_at,
                outbox.c.last_attempt_at,
            )
            .where(
                outbox.c.merchant_id == merchant_id,
                outbox.c.status == OutboxStatus.FAILED.value,
            )
            .order_by(outbox.c.id.desc())
            .limit(limit)
        )
        return [
            FailedDelivery(
                id=row.id,
                topic=row.topic,
                customer_id=optional_customer_id(row.customer_id),
                attempts=row.attempts,
                last_error=row.last_error or "",
                created_at=row.created_at,
                last_attempt_at=row.last_attempt_at,
            )
            for row in rows
        ]

    async def delivery_health(self, merchant_id: MerchantId) -> DeliveryHealth:
        counts = await self.conn.execute(
            sa.select(outbox.c.status, sa.func.count(), sa.func.min(outbox.c.created_at))
            .where(
                outbox.c.merchant_id == merchant_id,
                outbox.c.status.in_([_PENDING, OutboxStatus.FAILED.value]),
            )
            .group_by(outbox.c.status)
        )
        by_status = {status: (int(count), oldest) for status, count, oldest in counts}
        last = await self.conn.execute(
            sa.select(sa.func.max(outbox.c.delivered_at)).where(
                outbox.c.merchant_id == merchant_id,
                outbox.c.status == OutboxStatus.DELIVERED.value,
            )
        )
        pending, oldest = by_status.get(_PENDING, (0, None))
        return DeliveryHealth(
            pending=pending,
            failed=by_status.get(OutboxStatus.FAILED.value, (0, None))[0],
            oldest_pending_at=oldest,
            last_delivered_at=last.scalar_one_or_none(),
        )

    async def email_problem(self, merchant_id: MerchantId) -> EmailProblem | None:
        unsent = [
            outbox.c.merchant_id == merchant_id,
            outbox.c.status.in_([_PENDING, OutboxStatus.FAILED.value]),
            outbox.c.topic.like(f"{_EMAIL_TOPICS}%"),
        ]
        newest = (
            await self.conn.execute(
                sa.select(outbox.c.last_error, outbox.c.last_attempt_at)
                .where(*unsent, outbox.c.last_error.is_not(None))
                .order_by(outbox.c.last_attempt_at.desc(), outbox.c.id.desc())
                .limit(1)
            )
        ).first()
        if newest is None:
            return None
        delivered_since = await self.conn.scalar(
            sa.select(sa.literal(1))
            .where(
                outbox.c.merchant_id == merchant_id,
                outbox.c.status == OutboxStatus.DELIVERED.value,
                outbox.c.topic.like(f"{_EMAIL_TOPICS}%"),
                outbox.c.delivered_at > newest.last_attempt_at,
            )
            .limit(1)
        )
        if delivered_since:
            return None
        by_status = await self.conn.execute(
            sa.select(outbox.c.status, sa.func.count()).where(*unsent).group_by(outbox.c.status)
        )
        counts: dict[str, int] = {status: int(count) for status, count in by_status}
        return EmailProblem(
            error=newest.last_error,
            at=newest.last_attempt_at,
            waiting=counts.get(_PENDING, 0),
            failed=counts.get(OutboxStatus.FAILED.value, 0),
        )

    async def contact_sync_health(self, merchant_id: MerchantId) -> ContactSyncHealth:
        pending, oldest = (
            await self.conn.execute(
                sa.select(sa.func.count(), sa.func.min(_c.pending_since)).where(
                    _c.merchant_id == merchant_id,
                    _c.pending_since.is_not(None),
                    _c.failed_at.is_(None),
                )
            )
        ).one()
        failed = (
            await self.conn.execute(
                sa.select(sa.func.count()).where(
                    _c.merchant_id == merchant_id, _c.failed_at.is_not(None)
                )
            )
        ).scalar_one()
        last = (
            await self.conn.execute(
                sa.select(_i.last_success_at).where(_i.merchant_id == merchant_id)
            )
        ).scalar_one_or_none()
        return ContactSyncHealth(
            pending=int(pending),
            failed=int(failed),
            oldest_pending_at=oldest,
            last_synced_at=last,
        )

    async def contact_sync_failures(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[ContactSyncFailure]:
        rows = await self.conn.execute(
            sa.select(_c.customer_id, customers.c.email, _c.last_error, _c.failed_at)
            .join(customers, customers.c.id == _c.customer_id)
            .where(_c.merchant_id == merchant_id, _c.failed_at.is_not(None))
            .order_by(_c.failed_at.desc(), _c.customer_id.desc())
            .limit(limit)
        )
        return [
            ContactSyncFailure(
                customer_id=CustomerId(row.customer_id),
                email=row.email,
                error=row.last_error or "",
                failed_at=row.failed_at,
            )
            for row in rows
        ]

    async def recent_notifications(
        self, merchant_id: MerchantId, *, limit: int
    ) -> list[NotificationRecord]:
        rows = await self.conn.execute(
            sa.select(newsletter_notifications)
            .where(_n.merchant_id == merchant_id)
            .order_by(_n.id.desc())
            .limit(limit)
        )
        return [
            NotificationRecord(
                id=row.id,
                received_at=row.received_at,
                notification=notification_of(row),
                state=NotificationState(row.state),
                outcome=None if row.outcome is None else Outcome(row.outcome),
                reason=stored_reason(row.reason_parts, row.reason),
                points=None if row.points_cents is None else Points(row.points_cents),
                customer_id=optional_customer_id(row.customer_id),
                processed_at=row.processed_at,
            )
            for row in rows
        ]

    async def setup_facts(self, merchant_id: MerchantId) -> SetupFacts:
        t = api_tokens.c
        row = (
            await self.conn.execute(
                sa.select(
                    sa.exists().where(t.merchant_id == merchant_id, t.revoked_at.is_(None)),
                    sa.exists().where(_i.merchant_id == merchant_id, _i.active.is_(True)),
                    sa.exists().where(_n.merchant_id == merchant_id),
                    merchants.c.test_email_sent_at.is_not(None),
                ).where(merchants.c.id == merchant_id)
            )
        ).first()
        if row is None:
            return SetupFacts(False, False, False, False)
        token, ecomail, notification, test_email = row
        return SetupFacts(bool(token), bool(ecomail), bool(notification), bool(test_email))

    async def consent_counts(self, merchant_id: MerchantId) -> ConsentCounts:
        c = customers.c
        with_email = c.email.is_not(None)

        def having(consent: MarketingConsent) -> sa.ColumnElement[int]:
            return sa.func.count().filter(with_email, c.marketing_consent == consent.value)

        row = (
            await self.conn.execute(
                sa.select(
                    having(MarketingConsent.GRANTED),
                    having(MarketingConsent.REFUSED),
                    having(MarketingConsent.UNKNOWN),
                    sa.func.count().filter(c.email.is_(None)),
                ).where(c.merchant_id == merchant_id)
            )
        ).one()
        granted, refused, unknown, without_email = (int(n or 0) for n in row)
        return ConsentCounts(
            granted=granted, refused=refused, unknown=unknown, without_email=without_email
        )

    async def contact_sync_row(
        self, merchant_id: MerchantId, customer_id: CustomerId
    ) -> ContactSyncRow | None:
        row = (
            await self.conn.execute(
                sa.select(
                    _c.in_list,
                    _c.added_at,
                    _c.synced_at,
                    _c.pending_since,
                    _c.last_error,
                    _c.failed_at,
                    _c.unsubscribe_due,
                    _c.list_status,
                    _c.list_status_at,
                ).where(_c.customer_id == customer_id, _c.merchant_id == merchant_id)
            )
        ).first()
        if row is None:
            return None
        return ContactSyncRow(
            in_list=bool(row.in_list),
            added_at=row.added_at,
            synced_at=row.synced_at,
            pending_since=row.pending_since,
            last_error=row.last_error,
            failed_at=row.failed_at,
            unsubscribe_due=bool(row.unsubscribe_due),
            list_status=status_of(row.list_status),
            list_status_at=row.list_status_at,
        )

    async def customer_events(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int
    ) -> list[SentEvent]:
        rows = await self.conn.execute(
            sa.select(*_EVENT_COLUMNS, customers.c.email)
            .join(customers, customers.c.id == outbox.c.customer_id)
            .where(
                outbox.c.customer_id == customer_id,
                outbox.c.merchant_id == merchant_id,
                outbox.c.topic == _EVENT,
            )
            .order_by(outbox.c.id.desc())
            .limit(limit)
        )
        return await self._events(list(rows))

    async def sent_events(self, merchant_id: MerchantId, *, limit: int) -> list[SentEvent]:
        rows = await self.conn.execute(
            sa.select(*_EVENT_COLUMNS, customers.c.email)
            .join(customers, customers.c.id == outbox.c.customer_id)
            .where(
                outbox.c.merchant_id == merchant_id,
                outbox.c.delivered_at.is_not(None),
                outbox.c.status == OutboxStatus.DELIVERED.value,
                outbox.c.topic == _EVENT,
            )
            .order_by(outbox.c.delivered_at.desc(), outbox.c.id.desc())
            .limit(limit)
        )
        return await self._events(list(rows))

    async def _events(self, rows: list[Any]) -> list[SentEvent]:
        payloads = await built_payloads(self.conn, rows)
        return [_event_of(row, payload) for row, payload in zip(rows, payloads, strict=True)]


#: What a ``SentEvent`` is read from (with the customer's email), its payload's columns too.
_EVENT_COLUMNS = (
    outbox.c.id,
    outbox.c.customer_id,
    outbox.c.topic,
    outbox.c.payload,
    outbox.c.entry_id,
    outbox.c.next_expiry_on,
    outbox.c.next_expiry_cents,
    outbox.c.status,
    outbox.c.created_at,
    outbox.c.delivered_at,
    outbox.c.last_error,
)


def _event_of(row: Any, payload: Payload) -> SentEvent:
    label = payload.get("label")
    return SentEvent(
        id=row.id,
        customer_id=CustomerId(row.customer_id),
        email=row.email,
        label=label if isinstance(label, str) else "",
        value=payload.get("value"),
        status=OutboxStatus(row.status),
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        error=row.last_error,
    )
