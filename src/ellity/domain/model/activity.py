"""What the dashboard shows: points issued, spent and expired per local day, and what expires
next. Days are the merchant's calendar days, so a day is 23 or 25 hours long around DST."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ellity.domain.model.money import Points


@dataclass(frozen=True, slots=True)
class DayPeriod:
    """One local calendar day as the instants ``[start, end)``, in UTC."""

    day: date
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DayTotals:
    """Positive amounts: ``issued`` sums every gain (purchases, bonuses, rewards, positive
    adjustments); ``spent`` every loss except expiry; ``expired`` what expired."""

    day: date
    issued: Points
    spent: Points
    expired: Points


@dataclass(frozen=True, slots=True)
class ExpiryTotal:
    """Points still held by lots whose last valid day is ``on``, and by how many customers."""

    on: date
    points: Points
    customers: int


def local_midnight(day: date, time_zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(time_zone)).astimezone(UTC)


def day_periods(last_day: date, count: int, time_zone: str) -> list[DayPeriod]:
    """The ``count`` local days ending with ``last_day``, oldest first."""
    first = last_day - timedelta(days=count - 1)
    days = [first + timedelta(days=i) for i in range(count + 1)]
    edges = [local_midnight(day, time_zone) for day in days]
    return [DayPeriod(days[i], edges[i], edges[i + 1]) for i in range(count)]


def every_day(periods: Iterable[DayPeriod], totals: Iterable[DayTotals]) -> list[DayTotals]:
    """One entry per period, zero where nothing happened."""
    known = {t.day: t for t in totals}
    zero = Points.zero()
    return [known.get(p.day, DayTotals(p.day, zero, zero, zero)) for p in periods]


def every_expiry_day(first: date, count: int, totals: Iterable[ExpiryTotal]) -> list[ExpiryTotal]:
    known = {t.on: t for t in totals}
    days = [first + timedelta(days=i) for i in range(count)]
    return [known.get(day, ExpiryTotal(day, Points.zero(), 0)) for day in days]


@dataclass(frozen=True, slots=True)
class KeptDay:
    """A day's totals as counted once and kept: the entries of the local day (in
    ``time_zone``) made before ``up_to``. A closed day is kept whole (``up_to`` is its end)
    and never changes; today is kept up to the nightly run, the rest counted live."""

    totals: DayTotals
    time_zone: str
    up_to: datetime

    def covers(self, period: DayPeriod) -> bool:
        return self.up_to >= period.end


@dataclass(frozen=True, slots=True)
class ExpiryForecast:
    """What expires on each day from ``first_day``, as counted at ``counted_at`` (the
    nightly run keeps it for the dashboard)."""

    first_day: date
    counted_at: datetime
    days: tuple[ExpiryTotal, ...]


def kept_and_live(
    periods: Iterable[DayPeriod], kept: Iterable[KeptDay], time_zone: str
) -> tuple[dict[date, DayTotals], list[DayPeriod]]:
    """Which days the kept totals answer, and what is left to count from the ledger: the
    days not kept (or kept in another time zone), and the rest of a day kept in part."""
    known = {k.totals.day: k for k in kept if k.time_zone == time_zone}
    answered: dict[date, DayTotals] = {}
    live: list[DayPeriod] = []
    for period in periods:
        day = known.get(period.day)
        if day is None or not period.start <= day.up_to:
            live.append(period)
            continue
        answered[period.day] = day.totals
        if not day.covers(period):
            live.append(DayPeriod(period.day, day.up_to, period.end))
    return answered, live


def added(first: DayTotals, second: DayTotals) -> DayTotals:
    return DayTotals(
        first.day,
        first.issued + second.issued,
        first.spent + second.spent,
        first.expired + second.expired,
    )
