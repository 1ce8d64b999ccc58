"""``DashboardRepository`` in SQL: a row per kept day, one per merchant for the forecast.
Keeping is an upsert, so that two runs at once both succeed (the later one's rows stay)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.columns import dialect_insert
from ellity.adapters.sql.tables.dashboard import kept_day_totals, kept_expiry_forecasts
from ellity.domain.model.activity import DayTotals, ExpiryForecast, ExpiryTotal, KeptDay
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.money import Points
from ellity.ports.storage.dashboard import DashboardRepository

_d = kept_day_totals.c
_f = kept_expiry_forecasts.c
_KEPT = ("time_zone", "up_to", "issued_cents", "spent_cents", "expired_cents")


class SqlDashboardRepository(DashboardRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def kept_days(
        self, merchant_id: MerchantId, *, first_day: date, last_day: date
    ) -> list[KeptDay]:
        rows = await self.conn.execute(
            sa.select(kept_day_totals)
            .where(_d.merchant_id == merchant_id, _d.day >= first_day, _d.day <= last_day)
            .order_by(_d.day)
        )
        return [
            KeptDay(
                DayTotals(
                    row.day,
                    Points(row.issued_cents),
                    Points(row.spent_cents),
                    Points(row.expired_cents),
                ),
                time_zone=row.time_zone,
                up_to=row.up_to,
            )
            for row in rows
        ]

    async def keep_days(self, merchant_id: MerchantId, days: Sequence[KeptDay]) -> None:
        if not days:
            return
        insert = dialect_insert(self.conn.dialect, kept_day_totals)
        kept = {name: insert.excluded[name] for name in _KEPT}
        await self.conn.execute(
            insert.on_conflict_do_update(index_elements=[_d.merchant_id, _d.day], set_=kept),
            [
                {
                    "merchant_id": merchant_id,
                    "day": kept.totals.day,
                    "time_zone": kept.time_zone,
                    "up_to": kept.up_to,
                    "issued_cents": kept.totals.issued.hundredths,
                    "spent_cents": kept.totals.spent.hundredths,
                    "expired_cents": kept.totals.expired.hundredths,
                }
                for kept in days
            ],
        )

    async def kept_forecast(self, merchant_id: MerchantId) -> ExpiryForecast | None:
        row = (
            await self.conn.execute(
                sa.select(kept_expiry_forecasts).where(_f.merchant_id == merchant_id)
            )
        ).first()
        if row is None:
            return None
        days = tuple(
            ExpiryTotal(date.fromisoformat(on), Points(cents), customers)
            for on, cents, customers in json.loads(row.days)
        )
        return ExpiryForecast(first_day=row.first_day, counted_at=row.counted_at, days=days)

    async def keep_forecast(self, merchant_id: MerchantId, forecast: ExpiryForecast) -> None:
        days = json.dumps(
            [[d.on.isoformat(), d.points.hundredths, d.customers] for d in forecast.days]
        )
        insert = dialect_insert(self.conn.dialect, kept_expiry_forecasts).values(
            merchant_id=merchant_id,
            first_day=forecast.first_day,
            counted_at=forecast.counted_at,
            days=days,
        )
        kept = {name: insert.excluded[name] for name in ("first_day", "counted_at", "days")}
        await self.conn.execute(
            insert.on_conflict_do_update(index_elements=[_f.merchant_id], set_=kept)
        )
