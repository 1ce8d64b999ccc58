"""The dashboard: the programme's points over the last days and what expires next.

Counting 90 days of ledger entries and every open lot of the next 90 days costs seconds at a
million customers, so the nightly run keeps what the page needs (``keep_dashboard``): the
totals of every closed day, which never change, today's up to the run, and the expiry
forecast as the run leaves it. The page reads those few rows and counts live only what is
not kept: the rest of today, and any day the run has not kept (before the first run, or
between midnight and the run; or after the time zone changed). Until the next run the
forecast is the one counted by the run ("as of"); without one from today it is counted
live. The first-run checklist is read in the same transaction, one more query of a few
index probes (``Views.setup_facts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ellity.domain.model.activity import (
    DayPeriod,
    DayTotals,
    ExpiryForecast,
    ExpiryTotal,
    KeptDay,
    added,
    day_periods,
    every_day,
    every_expiry_day,
    kept_and_live,
)
from ellity.domain.model.expiry import local_date
from ellity.domain.model.first_run import Checklist, checklist
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services.common import load_merchant
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

HISTORY_DAYS = 90
AHEAD_DAYS = 90
#: Today is kept up to this long before the run counts it: a write that took its instant
#: before then has committed by the time it is counted.
KEEP_MARGIN = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class Dashboard:
    merchant: Merchant
    today: date
    days: list[DayTotals]  # one per day, oldest first, ending today
    expiries: list[ExpiryTotal]  # one per day, from today on
    checklist: Checklist
    expiries_as_of: datetime | None = None  # when the forecast was counted; None: just now

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
        setup = await uow.views.setup_facts(merchant_id)
        time_zone = merchant.settings.timezone
        today = local_date(clock.now(), time_zone)
        periods = day_periods(today, history_days, time_zone)
        kept = await uow.dashboard.kept_days(merchant_id, first_day=periods[0].day, last_day=today)
        answered, live = kept_and_live(periods, kept, time_zone)
        counted = await uow.views.daily_totals(merchant_id, live) if live else []
        forecast = await uow.dashboard.kept_forecast(merchant_id)
        if forecast is None or (forecast.first_day, len(forecast.days)) != (today, ahead_days):
            forecast = None
            expiries = await uow.views.upcoming_expiries(
                merchant_id, first_day=today, last_day=today + timedelta(days=ahead_days - 1)
            )
    # every day counted live (zero where nothing was), plus what was kept of it
    days = [
        added(answered[day.day], day) if day.day in answered else day
        for day in every_day(periods, counted)
    ]
    return Dashboard(
        merchant=merchant,
        today=today,
        days=days,
        expiries=list(forecast.days)
        if forecast is not None
        else every_expiry_day(today, ahead_days, expiries),
        checklist=checklist(shop_url=merchant.settings.shop_url, facts=setup),
        expiries_as_of=None if forecast is None else forecast.counted_at,
    )


async def keep_dashboard(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    history_days: int = HISTORY_DAYS,
    ahead_days: int = AHEAD_DAYS,
) -> int:
    """Keep what the dashboard reads (the nightly run's last step): every closed day of the
    history not kept whole yet (in the merchant's time zone), today up to ``KEEP_MARGIN``
    ago, and the expiry forecast. Returns how many days it counted. Closed days are counted
    once; each run counts the day that closed since the last one, and today."""
    now = clock.now()
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        time_zone = merchant.settings.timezone
        today = local_date(now, time_zone)
        periods = day_periods(today, history_days, time_zone)
        kept = await uow.dashboard.kept_days(merchant_id, first_day=periods[0].day, last_day=today)
        known = {k.totals.day: k for k in kept if k.time_zone == time_zone}
        closed = [p for p in periods[:-1] if p.day not in known or not known[p.day].covers(p)]
        start = periods[-1].start
        today_so_far = DayPeriod(today, start, max(start, now - KEEP_MARGIN))
        counting = [*closed, today_so_far]
        counted = await uow.views.daily_totals(merchant_id, counting)
        expiries = await uow.views.upcoming_expiries(
            merchant_id, first_day=today, last_day=today + timedelta(days=ahead_days - 1)
        )
    days = [
        KeptDay(totals, time_zone=time_zone, up_to=period.end)
        for period, totals in zip(counting, every_day(counting, counted), strict=True)
    ]
    forecast = ExpiryForecast(today, now, tuple(every_expiry_day(today, ahead_days, expiries)))
    async with uow_factory() as uow:
        await uow.dashboard.keep_days(merchant_id, days)
        await uow.dashboard.keep_forecast(merchant_id, forecast)
        await uow.commit()
    return len(days)
