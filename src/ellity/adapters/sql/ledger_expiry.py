"""The nightly run's set-based statements on the ledger: expiring the due lots of a chunk of
customers, and recording the pre-expiry notices of a chunk. Each is a few statements over the
chunk's id range, never a statement per customer.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.expiry_run import entry_of_customer, in_range
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import expiry_notices, ledger_entries, point_lots
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.ledger import EntryKind, Expiration
from ellity.domain.model.money import Points
from ellity.ports.storage.ledger import ExpiredChunk, ExpiryNotice


def _kept_by_customer(merchant_id: MerchantId, chunk: ExpiredChunk) -> Any:
    """Per customer of the chunk with open lots: what they hold, the earliest last valid day
    among them and what the lots of that day hold (one grouped pass over the open lots)."""
    open_days = (
        sa.select(
            point_lots.c.customer_id,
            point_lots.c.expires_on,
            sa.func.sum(point_lots.c.remaining_cents).label("cents"),
        )
        .where(
            point_lots.c.merchant_id == merchant_id,
            *in_range(point_lots.c.customer_id, chunk),
            point_lots.c.remaining_cents > 0,
        )
        .group_by(point_lots.c.customer_id, point_lots.c.expires_on)
        .cte("open_days")
    )
    held = (
        sa.select(
            open_days.c.customer_id,
            sa.func.sum(open_days.c.cents).label("balance"),
            sa.func.min(open_days.c.expires_on).label("next_on"),  # NULL days left out
        )
        .group_by(open_days.c.customer_id)
        .subquery("held")
    )
    first = open_days.alias("first_day")
    return (
        sa.select(held, first.c.cents.label("next_cents"))
        .select_from(
            held.outerjoin(
                first,
                sa.and_(
                    first.c.customer_id == held.c.customer_id,
                    first.c.expires_on == held.c.next_on,
                ),
            )
        )
        .subquery("kept")
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
        await self.conn.execute(point_lots.update().where(due).values(remaining_cents=0))
        # The summary is read back from the lots (the balance is what the open lots hold), so
        # it is right however often a customer is updated; the change is the run's entry. One
        # grouped pass over the chunk's open lots, joined to the chunk's expiry entries.
        kept = _kept_by_customer(merchant_id, chunk)
        entry, _ = entry_of_customer(chunk)
        hit = (
            sa.select(
                entry.c.customer_id,
                entry.c.points_cents,
                sa.func.coalesce(kept.c.balance, 0).label("balance"),
                kept.c.next_on,
                sa.func.coalesce(kept.c.next_cents, 0).label("next_cents"),
            )
            .select_from(entry.outerjoin(kept, kept.c.customer_id == entry.c.customer_id))
            .where(
                *in_range(entry.c.customer_id, chunk),
                entry.c.kind == sa.literal_column(f"'{EntryKind.EXPIRE.value}'"),
                entry.c.at == instant(at),
            )
            .subquery("hit")
        )
        await self.conn.execute(
            customers.update()
            .where(
                customers.c.id == hit.c.customer_id,
                customers.c.merchant_id == merchant_id,
                *in_range(customers.c.id, chunk),
            )
            .values(
                balance_cents=hit.c.balance,
                last_change_on=today,
                last_change_cents=hit.c.points_cents,
                next_expiry_on=hit.c.next_on,
                next_expiry_cents=hit.c.next_cents,
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
