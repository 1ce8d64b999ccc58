"""The dashboard: the programme's points over the last days and what expires next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from ellity.domain.model.activity import (
    DayTotals,
    ExpiryTotal,
    day_periods,
    every_day,
    every_expiry_day,
)
from ellity.domain.model.expiry import local_date
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services.common import load_merchant
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWork

HISTORY_DAYS = 90
AHEAD_DAYS = 90


@dataclass(frozen=True, slots=True)
class Dashboard:
    merchant: Merchant
    today: date
    days: list[DayTotals]  # one per day, oldest first, ending today
    expiries: list[ExpiryTotal]  # one per day, from today on

    @property
    def issued(self) -> Points:
        return Points(sum(d.issued.hundredths for d in self.days))

    @property
    def spent(self) -> Points:
        return Points(sum(d.spent.hundredths for d in self.days))

    @property
    def expired(self) -> Points:
        return Points(sum(d.expired.hundredths for d in self.days))

    def expiring_within(self, days: int) -> Points:
        return Points(sum(e.points.hundredths for e in self.expiries[:days]))


async def dashboard(
    merchant_id: MerchantId,
    *,
    uow: UnitOfWork,
    clock: Clock,
    history_days: int = HISTORY_DAYS,
    ahead_days: int = AHEAD_DAYS,
) -> Dashboard:
    """Days are the merchant's local days; today counts as the last day of the history and
    the first day ahead (points whose last valid day is today expire tonight)."""
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        time_zone = merchant.settings.timezone
        today = local_date(clock.now(), time_zone)
        periods = day_periods(today, history_days, time_zone)
        totals = await uow.views.daily_totals(merchant_id, periods)
        expiries = await uow.views.upcoming_expiries(
            merchant_id, first_day=today, last_day=today + timedelta(days=ahead_days - 1)
        )
    return Dashboard(
        merchant=merchant,
        today=today,
        days=every_day(periods, totals),
        expiries=every_expiry_day(today, ahead_days, expiries),
    )
