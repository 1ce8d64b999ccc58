"""The dashboard reads what the nightly run kept and counts live only the rest: always the
same days as counting everything live."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from ellity.domain.model.activity import DayPeriod, DayTotals, KeptDay, day_periods, kept_and_live
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services import dashboard, points
from ellity.domain.services.merchants import change_settings
from tests.fakes import FakeClock, InMemoryStore
from tests.unit.conftest import NewCustomer

P = Points.parse
PRAGUE = "Europe/Prague"


def test_kept_days_answer_what_they_cover_and_the_rest_is_counted_live() -> None:
    periods = day_periods(date(2024, 3, 10), 3, PRAGUE)
    first, second, today = periods
    totals = DayTotals(first.day, P("1"), P("2"), P("3"))
    midday = today.start + timedelta(hours=12)
    kept = [
        KeptDay(totals, time_zone=PRAGUE, up_to=first.end),  # whole
        KeptDay(dataclasses.replace(totals, day=second.day), "UTC", second.end),  # other zone
        KeptDay(dataclasses.replace(totals, day=today.day), PRAGUE, midday),  # in part
    ]
    answered, live = kept_and_live(periods, kept, PRAGUE)
    assert answered == {first.day: totals, today.day: dataclasses.replace(totals, day=today.day)}
    assert live == [second, DayPeriod(today.day, midday, today.end)]


async def everything_live(
    store: InMemoryStore, merchant: Merchant, clock: FakeClock
) -> dashboard.Dashboard:
    """The dashboard as counted with nothing kept."""
    copy = InMemoryStore()
    copy.state = dataclasses.replace(store.state, kept_days={}, forecasts={})
    assert merchant.id is not None
    return await dashboard.dashboard(merchant.id, uow=copy.unit_of_work(), clock=clock)


async def test_the_dashboard_from_kept_days_is_the_dashboard_counted_live(
    store: InMemoryStore, merchant: Merchant, new_customer: NewCustomer, clock: FakeClock
) -> None:
    assert merchant.id is not None
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz")
    clock.set(datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
    for day in range(8):  # a week of purchases and spends, around midnight too
        clock.advance(hours=13)
        await points.earn_points(
            merchant.id,
            ann.id,
            P("10.50"),
            order_ref=f"a{day}",
            uow=store.unit_of_work(),
            clock=clock,
        )
        clock.advance(hours=11)
        await points.spend_points(
            merchant.id, ann.id, P("2"), uow=store.unit_of_work(), clock=clock
        )
        if day == 3:  # the nightly run of that day
            await dashboard.keep_dashboard(merchant.id, uow_factory=store.unit_of_work, clock=clock)
    clock.set(datetime(2024, 3, 9, 1, 30, tzinfo=UTC))  # 02:30 in Prague: the nightly run
    counted = await dashboard.keep_dashboard(
        merchant.id, uow_factory=store.unit_of_work, clock=clock
    )
    assert counted == 5  # the days that closed since the last run, and today
    kept = await dashboard.dashboard(merchant.id, uow=store.unit_of_work(), clock=clock)
    assert kept.expiries_as_of == clock.now()

    clock.advance(hours=7)  # later today: more points, and live for the rest of the day
    await points.earn_points(
        merchant.id, bob.id, P("99"), order_ref="b1", uow=store.unit_of_work(), clock=clock
    )
    board = await dashboard.dashboard(merchant.id, uow=store.unit_of_work(), clock=clock)
    live = await everything_live(store, merchant, clock)
    assert board.days == live.days
    assert board.days[-1].issued == P("99")
    assert sum(d.issued.hundredths for d in board.days) == 8 * 1050 + 9900
    assert board.expiries_as_of is not None  # the forecast as the run counted it

    clock.advance(days=1)  # before tomorrow's run: nothing kept of the new day, all live
    board = await dashboard.dashboard(merchant.id, uow=store.unit_of_work(), clock=clock)
    assert board.days == (await everything_live(store, merchant, clock)).days
    assert board.expiries_as_of is None
    assert board.expiries == (await everything_live(store, merchant, clock)).expiries


async def test_after_a_change_of_time_zone_the_kept_days_are_counted_again(
    store: InMemoryStore, merchant: Merchant, new_customer: NewCustomer, clock: FakeClock
) -> None:
    assert merchant.id is not None
    ann = await new_customer(merchant, email="ann@example.cz")
    clock.set(datetime(2024, 3, 8, 23, 30, tzinfo=UTC))  # 00:30 on 9 March in Prague
    await points.earn_points(
        merchant.id, ann.id, P("7"), order_ref="a", uow=store.unit_of_work(), clock=clock
    )
    clock.set(datetime(2024, 3, 10, 1, 30, tzinfo=UTC))
    await dashboard.keep_dashboard(merchant.id, uow_factory=store.unit_of_work, clock=clock)
    await change_settings("anna", {"timezone": "UTC"}, uow=store.unit_of_work(), clock=clock)
    board = await dashboard.dashboard(merchant.id, uow=store.unit_of_work(), clock=clock)
    assert board.days == (await everything_live(store, merchant, clock)).days
    assert [d.day for d in board.days if d.issued] == [date(2024, 3, 8)]  # a UTC day now
