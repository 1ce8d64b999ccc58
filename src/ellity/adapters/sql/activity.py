"""Set-based aggregates for the dashboard.

Daily totals join the ledger to a small derived table of the requested days (their UTC
boundaries, computed by the domain for the merchant's time zone), so each day is one range
read of the ``(merchant_id, at)`` index and days follow local midnights on any database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.columns import instant
from ellity.adapters.sql.tables.ledger import ledger_entries, point_lots
from ellity.domain.model.activity import DayPeriod, DayTotals, ExpiryTotal
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.ledger import EntryKind
from ellity.domain.model.money import Points


async def daily_totals(
    conn: AsyncConnection, merchant_id: MerchantId, periods: Sequence[DayPeriod]
) -> list[DayTotals]:
    if not periods:
        return []
    days = sa.union_all(
        *(
            sa.select(
                sa.literal(n).label("n"),
                instant(p.start).label("start_at"),
                instant(p.end).label("end_at"),
            )
            for n, p in enumerate(periods)
        )
    ).subquery("days")
    e = ledger_entries.c
    expiry = e.kind == EntryKind.EXPIRE.value
    issued = sa.func.sum(sa.case((e.points_cents > 0, e.points_cents), else_=0))
    spent = sa.func.sum(
        sa.case((sa.and_(e.points_cents < 0, sa.not_(expiry)), -e.points_cents), else_=0)
    )
    expired = sa.func.sum(sa.case((expiry, -e.points_cents), else_=0))
    rows = await conn.execute(
        sa.select(days.c.n, issued, spent, expired)
        .select_from(
            days.join(
                ledger_entries,
                sa.and_(
                    e.merchant_id == merchant_id,
                    e.at >= days.c.start_at,
                    e.at < days.c.end_at,
                ),
            )
        )
        .group_by(days.c.n)
        .order_by(days.c.n)
    )
    return [
        DayTotals(periods[n].day, Points(int(i)), Points(int(s)), Points(int(x)))
        for n, i, s, x in rows
    ]


async def upcoming_expiries(
    conn: AsyncConnection, merchant_id: MerchantId, *, first_day: date, last_day: date
) -> list[ExpiryTotal]:
    lot = point_lots.c
    rows = await conn.execute(
        sa.select(
            lot.expires_on,
            sa.func.sum(lot.remaining_cents),
            sa.func.count(sa.distinct(lot.customer_id)),
        )
        .where(
            lot.merchant_id == merchant_id,
            lot.remaining_cents > 0,
            lot.expires_on >= first_day,
            lot.expires_on <= last_day,
        )
        .group_by(lot.expires_on)
        .order_by(lot.expires_on)
    )
    return [ExpiryTotal(on, Points(int(held)), int(count)) for on, held, count in rows]
