"""Points ledgers in SQL: lots, entries, and the summary kept on each customer row in the
same transaction as every change. The nightly run's set-based statements come from
``ledger_expiry.SqlLedgerExpiry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.ledger_expiry import SqlLedgerExpiry
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import ledger_entries, point_lots
from ellity.adapters.sql.unique import unique_violations
from ellity.adapters.sql.valid_points import loyalty_columns, loyalty_of
from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.ledger import Entry, EntryKind, LastChange, Ledger, Lot
from ellity.domain.model.money import Points
from ellity.ports.storage.ledger import LedgerRepository, OrderUse, StoredEntry


def entry_of_row(row: Any) -> Entry:
    return Entry(
        kind=EntryKind(row.kind),
        points=Points(row.points_cents),
        at=row.at,
        balance_after=Points(row.balance_after_cents),
        note=row.note,
        order_ref=row.order_ref,
    )


class SqlLedgerRepository(SqlLedgerExpiry, LedgerRepository):
    def __init__(self, conn: AsyncConnection, *, locks_rows: bool) -> None:
        self.conn = conn
        self.locks_rows = locks_rows

    async def get(
        self, merchant_id: MerchantId, customer_id: CustomerId, policy: ExpiryPolicy
    ) -> Ledger:
        lots = await self.conn.execute(
            sa.select(
                point_lots.c.id,
                point_lots.c.earned_at,
                point_lots.c.expires_on,
                point_lots.c.amount_cents,
                point_lots.c.remaining_cents,
            ).where(
                point_lots.c.merchant_id == merchant_id,
                point_lots.c.customer_id == customer_id,
                point_lots.c.remaining_cents > 0,
            )
        )
        last = (
            await self.conn.execute(
                sa.select(customers.c.last_change_on, customers.c.last_change_cents).where(
                    customers.c.merchant_id == merchant_id, customers.c.id == customer_id
                )
            )
        ).first()
        return Ledger(
            customer_id=customer_id,
            policy=policy,
            lots=[
                Lot(
                    id=lot_id,
                    earned_at=earned_at,
                    expires_on=expires_on,
                    amount=Points(amount),
                    remaining=Points(remaining),
                )
                for lot_id, earned_at, expires_on, amount, remaining in lots
            ],
            last_change=(
                LastChange(last[0], Points(last[1]))
                if last is not None and last[0] is not None
                else None
            ),
        )

    async def save(self, merchant_id: MerchantId, ledger: Ledger, *, at: datetime) -> None:
        for lot in ledger.lots:
            if lot.is_new:
                result = await self.conn.execute(
                    point_lots.insert()
                    .values(
                        merchant_id=merchant_id,
                        customer_id=ledger.customer_id,
                        earned_at=lot.earned_at,
                        expires_on=lot.expires_on,
                        amount_cents=lot.amount.hundredths,
                        remaining_cents=lot.remaining.hundredths,
                    )
                    .returning(point_lots.c.id)
                )
                lot.id = result.scalar_one()
            elif lot.is_changed:
                await self.conn.execute(
                    point_lots.update()
                    .where(point_lots.c.id == lot.id, point_lots.c.merchant_id == merchant_id)
                    .values(remaining_cents=lot.remaining.hundredths)
                )
            lot.loaded_remaining = lot.remaining
        if ledger.new_entries:
            async with unique_violations():
                await self.conn.execute(
                    ledger_entries.insert(),
                    [
                        {
                            "merchant_id": merchant_id,
                            "customer_id": ledger.customer_id,
                            "kind": entry.kind.value,
                            "points_cents": entry.points.hundredths,
                            "balance_after_cents": entry.balance_after.hundredths,
                            "at": entry.at,
                            "note": entry.note,
                            "order_ref": entry.order_ref,
                        }
                        for entry in ledger.new_entries
                    ],
                )
            ledger.new_entries.clear()
        summary = ledger.summary()
        nxt, last = summary.next_expiration, summary.last_change
        await self.conn.execute(
            customers.update()
            .where(customers.c.merchant_id == merchant_id, customers.c.id == ledger.customer_id)
            .values(
                balance_cents=summary.balance.hundredths,
                next_expiry_on=nxt.on if nxt else None,
                next_expiry_cents=nxt.points.hundredths if nxt else 0,
                last_change_on=last.on if last else None,
                last_change_cents=last.points.hundredths if last else None,
            )
        )

    async def find_order(
        self, merchant_id: MerchantId, kind: EntryKind, order_ref: str
    ) -> OrderUse | None:
        row = (
            await self.conn.execute(
                sa.select(ledger_entries).where(
                    ledger_entries.c.merchant_id == merchant_id,
                    ledger_entries.c.kind == kind.value,
                    ledger_entries.c.order_ref == order_ref,
                )
            )
        ).first()
        if row is None:
            return None
        return OrderUse(customer_id=CustomerId(row.customer_id), entry=entry_of_row(row))

    async def has_entry(
        self, merchant_id: MerchantId, customer_id: CustomerId, kind: EntryKind
    ) -> bool:
        found = await self.conn.execute(
            sa.select(ledger_entries.c.id)
            .where(
                ledger_entries.c.merchant_id == merchant_id,
                ledger_entries.c.customer_id == customer_id,
                ledger_entries.c.kind == kind.value,
            )
            .limit(1)
        )
        return found.first() is not None

    async def entries(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        limit: int,
        before_id: int | None = None,
    ) -> list[StoredEntry]:
        query = (
            sa.select(ledger_entries)
            .where(
                ledger_entries.c.merchant_id == merchant_id,
                ledger_entries.c.customer_id == customer_id,
            )
            .order_by(ledger_entries.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(ledger_entries.c.id < before_id)
        rows = await self.conn.execute(query)
        return [
            StoredEntry(id=row.id, customer_id=CustomerId(row.customer_id), entry=entry_of_row(row))
            for row in rows
        ]

    async def loyalty(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId], *, today: date
    ) -> list[CustomerLoyalty]:
        if not customer_ids:
            return []
        rows = await self.conn.execute(
            sa.select(*loyalty_columns(today))
            .where(customers.c.merchant_id == merchant_id, customers.c.id.in_(list(customer_ids)))
            .order_by(customers.c.id)
        )
        return [loyalty_of(row) for row in rows]
