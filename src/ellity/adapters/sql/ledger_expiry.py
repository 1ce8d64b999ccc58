"""The nightly run's set-based statements on the ledger: expiring the due lots of a chunk of
customers, and recording the pre-expiry notices of a chunk. Each is a few statements over the
chunk's id range, never a statement per customer.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.expiry_run import expired_in, expiry_change, in_range
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import expiry_notices, ledger_entries, point_lots
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.ledger import EntryKind, Expiration
from ellity.domain.model.money import Points
from ellity.ports.storage.ledger import ExpiredChunk, ExpiryNotice


def _first_expiry_of_customer() -> sa.ScalarSelect[Any]:
    """The earliest last valid day among the open lots of the customer being updated."""
    lot = point_lots.alias("open_lot")
    return (
        sa.select(sa.func.min(lot.c.expires_on))
        .where(lot.c.customer_id == customers.c.id, lot.c.remaining_cents > 0)
        .correlate(customers)
        .scalar_subquery()
    )


class SqlLedgerExpiry:
    """The nightly run's part of ``SqlLedgerRepository``."""

    conn: AsyncConnection
    locks_rows: bool

    async def expire_due(
        self,
        merchant_id: MerchantId,
        *,
        at: datetime,
        today: date,
        after_id: CustomerId = BEFORE_FIRST_CUSTOMER,
        up_to_id: CustomerId | None = None,
    ) -> int:
        """Four set-based statements, each kept to the customers of the id range; the new
        expiry entries (kind, ``at``) mark the customers hit (``expired_in``)."""
        chunk = ExpiredChunk(merchant_id, at, after_id, up_to_id)
        due = sa.and_(
            point_lots.c.merchant_id == merchant_id,
            *in_range(point_lots.c.customer_id, chunk),
            point_lots.c.remaining_cents > 0,
            point_lots.c.expires_on < today,
        )
        if self.locks_rows:  # PostgreSQL: lock the customers first, in the order spends do
            await self.conn.execute(
                sa.select(customers.c.id)
                .where(
                    customers.c.merchant_id == merchant_id,
                    *in_range(customers.c.id, chunk),
                    customers.c.id.in_(sa.select(point_lots.c.customer_id).where(due)),
                )
                .order_by(customers.c.id)
                .with_for_update()
            )
        expired = sa.func.sum(point_lots.c.remaining_cents)
        inserted = await self.conn.execute(
            ledger_entries.insert().from_select(
                ["merchant_id", "customer_id", "kind", "points_cents", "balance_after_cents", "at"],
                sa.select(
                    sa.literal(merchant_id),
                    point_lots.c.customer_id,
                    sa.literal(EntryKind.EXPIRE.value),
                    -expired,
                    customers.c.balance_cents - expired,
                    instant(at),
                )
                .select_from(point_lots.join(customers, customers.c.id == point_lots.c.customer_id))
                .where(
                    due, customers.c.merchant_id == merchant_id, *in_range(customers.c.id, chunk)
                )
                .group_by(point_lots.c.customer_id, customers.c.balance_cents),
            )
        )
        if not inserted.rowcount:
            return 0
        await self.conn.execute(point_lots.update().where(due).values(remaining_cents=0))
        # The summary is read back from the lots (the balance is what the open lots hold), so
        # it is right however often a customer is updated; the change is the run's entry.
        held = sa.select(point_lots.c.remaining_cents).where(
            point_lots.c.customer_id == customers.c.id, point_lots.c.remaining_cents > 0
        )
        balance = (
            held.with_only_columns(sa.func.coalesce(sa.func.sum(point_lots.c.remaining_cents), 0))
            .correlate(customers)
            .scalar_subquery()
        )
        first_held = (  # what the lots of the earliest last valid day hold
            held.with_only_columns(sa.func.sum(point_lots.c.remaining_cents))
            .where(point_lots.c.expires_on.is_not(None))
            .group_by(point_lots.c.expires_on)
            .order_by(point_lots.c.expires_on)
            .limit(1)
            .correlate(customers)
            .scalar_subquery()
        )
        change = expiry_change(chunk)
        await self.conn.execute(
            customers.update()
            .where(
                customers.c.merchant_id == merchant_id,
                *in_range(customers.c.id, chunk),
                expired_in(chunk),
            )
            .values(
                balance_cents=balance,
                last_change_on=today,
                last_change_cents=change,
                next_expiry_on=_first_expiry_of_customer(),
                next_expiry_cents=sa.func.coalesce(first_held, 0),
            )
        )
        return int(inserted.rowcount)

    async def record_expiry_notices(
        self,
        merchant_id: MerchantId,
        *,
        first_day: date,
        last_day: date,
        after_id: CustomerId,
        up_to_id: CustomerId,
        at: datetime,
    ) -> list[ExpiryNotice]:
        """One INSERT ... SELECT ... ON CONFLICT DO NOTHING: the primary key (customer, day)
        decides, so of two concurrent runs only one records (and returns) a notice."""
        window = sa.and_(
            point_lots.c.merchant_id == merchant_id,
            point_lots.c.customer_id > after_id,
            point_lots.c.customer_id <= up_to_id,
            point_lots.c.remaining_cents > 0,
            point_lots.c.expires_on >= first_day,
            point_lots.c.expires_on <= last_day,
        )
        held = (
            sa.select(
                point_lots.c.customer_id,
                point_lots.c.expires_on,
                sa.literal(merchant_id),
                sa.func.sum(point_lots.c.remaining_cents),
                instant(at),
            )
            .select_from(point_lots.join(customers, customers.c.id == point_lots.c.customer_id))
            .where(window, customers.c.email.is_not(None))
            .group_by(point_lots.c.customer_id, point_lots.c.expires_on)
            # one order for every run: concurrent inserts of the same keys wait, never deadlock
            .order_by(point_lots.c.customer_id, point_lots.c.expires_on)
        )
        notices = expiry_notices.c
        statement = (
            dialect_insert(self.conn.dialect, expiry_notices)
            .from_select(
                ["customer_id", "expires_on", "merchant_id", "points_cents", "created_at"], held
            )
            .on_conflict_do_nothing(index_elements=[notices.customer_id, notices.expires_on])
            .returning(notices.customer_id, notices.expires_on, notices.points_cents)
        )
        recorded = list(await self.conn.execute(statement))
        if not recorded:
            return []
        holders = await self.conn.execute(
            sa.select(customers.c.id, customers.c.balance_cents).where(
                customers.c.merchant_id == merchant_id,
                customers.c.id > after_id,
                customers.c.id <= up_to_id,
                customers.c.id.in_(sa.select(point_lots.c.customer_id).where(window)),
            )
        )
        balances: dict[int, int] = {cid: balance for cid, balance in holders}
        return sorted(
            (
                ExpiryNotice(
                    customer_id=CustomerId(cid),
                    expiration=Expiration(on, Points(cents)),
                    balance=Points(balances[cid]),
                )
                for cid, on, cents in recorded
            ),
            key=lambda notice: (notice.customer_id, notice.expiration.on),
        )
