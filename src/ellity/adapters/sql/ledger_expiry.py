"""The nightly run's set-based statements on the ledger: expiring the due lots of a chunk of
customers, and recording the pre-expiry notices of a chunk. Each is a few statements over the
chunk's id range, never a statement per customer.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.expiry_run import in_range
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import expiry_notices, ledger_entries, point_lots
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.ledger import EntryKind, Expiration
from ellity.domain.model.money import Points
from ellity.ports.storage.ledger import ExpiredChunk, ExpiryNotice


def _after_expiry(merchant_id: MerchantId, chunk: ExpiredChunk, today: date) -> Any:
    """Per customer of the chunk with points due: the points due, and what the customer keeps
    (the balance, the earliest last valid day kept and what its lots hold). One grouped pass
    over the chunk's open lots, read before the due ones are emptied; no other table."""
    lots = point_lots.c
    days = (
        sa.select(
            lots.customer_id,
            lots.expires_on,
            sa.cast(sa.func.sum(lots.remaining_cents), sa.BigInteger).label("cents"),
        )
        .where(
            lots.merchant_id == merchant_id,
            *in_range(lots.customer_id, chunk),
            lots.remaining_cents > 0,
        )
        .group_by(lots.customer_id, lots.expires_on)
        .subquery("open_days")
    )
    first_kept = (
        sa.select(
            days,
            sa.func.min(sa.case((days.c.expires_on >= today, days.c.expires_on)))
            .over(partition_by=days.c.customer_id)
            .label("next_on"),
        )
    ).subquery("marked_days")
    marked = first_kept.c
    # a lot that never expires (NULL day) is kept: NULL < today is not true
    due = sa.func.sum(sa.case((marked.expires_on < today, marked.cents), else_=0))
    return (
        sa.select(
            marked.customer_id,
            due.label("due"),
            sa.func.sum(sa.case((marked.expires_on < today, 0), else_=marked.cents)).label(
                "balance"
            ),
            sa.func.min(marked.next_on).label("next_on"),
            sa.func.sum(
                sa.case((marked.expires_on == marked.next_on, marked.cents), else_=0)
            ).label("next_cents"),
        )
        .group_by(marked.customer_id)
        .having(due > 0)
        .subquery("after_expiry")
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
        """Four set-based statements, each kept to the customers of the id range (on every
        table it reads); the new expiry entries (kind, ``at``) mark the customers hit."""
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
        # The summary is computed from the lots (the balance is what the open lots keep), so
        # it is right however often a customer is updated; the change is the points due.
        after = _after_expiry(merchant_id, chunk, today)
        await self.conn.execute(
            customers.update()
            .where(
                customers.c.id == after.c.customer_id,
                customers.c.merchant_id == merchant_id,
                *in_range(customers.c.id, chunk),
            )
            .values(
                balance_cents=after.c.balance,
                last_change_on=today,
                last_change_cents=-after.c.due,
                next_expiry_on=after.c.next_on,
                next_expiry_cents=after.c.next_cents,
            )
        )
        await self.conn.execute(point_lots.update().where(due).values(remaining_cents=0))
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
        # The merchant is tested on the customers, not on the lots: SQLite would otherwise
        # read the lots of the whole window of every customer of the merchant (an index by
        # merchant and day) for each chunk, instead of the chunk's lots by customer.
        window = sa.and_(
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
            .where(window, customers.c.merchant_id == merchant_id, customers.c.email.is_not(None))
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
