"""Points use cases on the in-memory fakes: earn, spend, adjust, expire, and concurrent callers."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, date, datetime

import pytest

from ellity.domain.model.errors import InsufficientPoints, InvalidInput, OrderAlreadyUsed
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.ledger import EntryKind, Expiration, LastChange
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services.common import CONFLICT_ATTEMPTS
from ellity.domain.services.customers import get_customer
from ellity.domain.services.merchants import change_settings
from ellity.domain.services.points import (
    MAX_LEDGER_PAGE,
    adjust_points,
    earn_points,
    expire_due_points,
    ledger_entries,
    spend_points,
)
from ellity.ports.storage import TransientConflict, UnitOfWorkFactory
from tests.fakes import FakeClock, InMemoryStore
from tests.unit.conftest import NewCustomer

P = Points.parse


async def balance_of(
    uow_factory: UnitOfWorkFactory, merchant: Merchant, customer_id: CustomerId, clock: FakeClock
) -> Points:
    view = await get_customer(
        merchant.id, customer_id, uow=uow_factory(read_only=True), clock=clock
    )
    return view.summary.balance


async def kinds_and_points(
    uow_factory: UnitOfWorkFactory, merchant: Merchant, customer_id: CustomerId
) -> list[tuple[EntryKind, str]]:
    """The customer's ledger, oldest first."""
    entries = await ledger_entries(merchant.id, customer_id, limit=500, uow=uow_factory())
    return [(e.entry.kind, e.entry.points.decimal_string()) for e in reversed(entries)]


# -- earn ------------------------------------------------------------------------------------


async def test_earning_adds_points_that_expire_after_the_merchants_validity(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    result = await earn_points(
        merchant.id,
        ann.id,
        P("12.50"),
        order_ref="o-1",
        note="first order",
        uow=uow_factory(),
        clock=clock,
    )
    assert result.entry is not None
    assert (result.entry.kind, result.entry.points, result.entry.order_ref, result.entry.note) == (
        EntryKind.EARN,
        P("12.50"),
        "o-1",
        "first order",
    )
    assert result.view.summary.balance == P("12.50")
    assert result.view.summary.next_expiration == Expiration(date(2025, 3, 10), P("12.50"))
    assert result.view.summary.last_change == LastChange(date(2024, 3, 10), P("12.50"))


async def test_the_same_order_earns_only_once(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    repeat = await earn_points(
        merchant.id, ann.id, P("10"), order_ref=" o-1 ", uow=uow_factory(), clock=clock
    )
    assert repeat.entry is None
    assert repeat.view.summary.balance == P("10")
    assert await kinds_and_points(uow_factory, merchant, ann.id) == [(EntryKind.EARN, "10.00")]


async def test_an_order_already_used_for_another_customer_is_refused(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    with pytest.raises(OrderAlreadyUsed):
        await earn_points(
            merchant.id, bob.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
        )
    assert await balance_of(uow_factory, merchant, bob.id, clock) == Points.zero()
    assert len(store.state.entries) == 1


async def test_order_references_belong_to_one_merchant(
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(other_merchant, email="bob@example.com")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    other = await earn_points(
        other_merchant.id, bob.id, P("3"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    assert other.entry is not None and other.view.summary.balance == P("3")


@pytest.mark.parametrize("amount", ["0", "-5"])
async def test_earning_nothing_or_a_negative_amount_is_refused(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    amount: str,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    with pytest.raises(InvalidInput):
        await earn_points(
            merchant.id, ann.id, P(amount), order_ref="o-1", uow=uow_factory(), clock=clock
        )
    assert await ledger_entries(merchant.id, ann.id, uow=uow_factory()) == []


# -- spend -----------------------------------------------------------------------------------


async def test_spending_takes_the_oldest_points_first(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    clock.advance(days=31)  # 10 April
    await earn_points(merchant.id, ann.id, P("20"), order_ref="o-2", uow=uow_factory(), clock=clock)

    first = await spend_points(merchant.id, ann.id, P("4"), uow=uow_factory(), clock=clock)
    assert first.view.summary.next_expiration == Expiration(date(2025, 3, 10), P("6"))
    second = await spend_points(merchant.id, ann.id, P("8"), uow=uow_factory(), clock=clock)
    assert second.view.summary.next_expiration == Expiration(date(2025, 4, 10), P("18"))
    assert second.view.summary.balance == P("18")
    assert second.entry is not None and second.entry.balance_after == P("18")


async def test_a_spend_past_the_balance_is_refused_and_writes_nothing(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    before = copy.deepcopy(store.state)
    with pytest.raises(InsufficientPoints):
        await spend_points(merchant.id, ann.id, P("10.01"), uow=uow_factory(), clock=clock)
    assert store.state == before
    assert await kinds_and_points(uow_factory, merchant, ann.id) == [(EntryKind.EARN, "10.00")]


async def test_a_spend_with_an_order_reference_spends_only_once(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    await spend_points(
        merchant.id, ann.id, P("3"), order_ref="basket-9", uow=uow_factory(), clock=clock
    )
    repeat = await spend_points(
        merchant.id, ann.id, P("3"), order_ref="basket-9", uow=uow_factory(), clock=clock
    )
    assert repeat.entry is None and repeat.view.summary.balance == P("7")


async def test_an_order_reference_may_be_earned_on_and_then_spent_on(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    spent = await spend_points(
        merchant.id, ann.id, P("3"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    assert spent.entry is not None and spent.view.summary.balance == P("7")


async def test_a_spend_order_reference_used_for_another_customer_is_refused(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz")
    for customer, order in ((ann, "o-1"), (bob, "o-2")):
        await earn_points(
            merchant.id, customer.id, P("10"), order_ref=order, uow=uow_factory(), clock=clock
        )
    await spend_points(merchant.id, ann.id, P("1"), order_ref="b-1", uow=uow_factory(), clock=clock)
    with pytest.raises(OrderAlreadyUsed):
        await spend_points(
            merchant.id, bob.id, P("1"), order_ref="b-1", uow=uow_factory(), clock=clock
        )
    assert await balance_of(uow_factory, merchant, bob.id, clock) == P("10")


# -- adjust ----------------------------------------------------------------------------------


async def test_adjustments_add_or_take_points_with_a_note(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    up = await adjust_points(
        merchant.id, ann.id, P("15"), note="goodwill", uow=uow_factory(), clock=clock
    )
    down = await adjust_points(
        merchant.id, ann.id, P("-5.50"), note="returned", uow=uow_factory(), clock=clock
    )
    assert up.entry is not None and down.entry is not None
    assert (up.entry.kind, up.entry.note, down.entry.kind, down.entry.note) == (
        EntryKind.ADJUST,
        "goodwill",
        EntryKind.ADJUST,
        "returned",
    )
    assert down.view.summary.balance == P("9.50")
    assert down.view.summary.last_change == LastChange(date(2024, 3, 10), P("-5.50"))


async def test_a_negative_adjustment_never_takes_the_balance_below_zero(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await adjust_points(merchant.id, ann.id, P("5"), note="start", uow=uow_factory(), clock=clock)
    before = copy.deepcopy(store.state)
    with pytest.raises(InsufficientPoints):
        await adjust_points(
            merchant.id, ann.id, P("-5.01"), note="too much", uow=uow_factory(), clock=clock
        )
    assert store.state == before


async def test_an_adjustment_of_zero_is_refused(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    with pytest.raises(InvalidInput):
        await adjust_points(
            merchant.id, ann.id, Points.zero(), note="nothing", uow=uow_factory(), clock=clock
        )


# -- the ledger ------------------------------------------------------------------------------


async def test_ledger_entries_come_newest_first_and_page_backwards(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    for n in range(1, 6):
        await earn_points(
            merchant.id, ann.id, P(str(n)), order_ref=f"o-{n}", uow=uow_factory(), clock=clock
        )
    page = await ledger_entries(merchant.id, ann.id, limit=2, uow=uow_factory())
    rest = await ledger_entries(
        merchant.id, ann.id, limit=10, before_id=page[-1].id, uow=uow_factory()
    )
    assert [e.entry.order_ref for e in page] == ["o-5", "o-4"]
    assert [e.entry.order_ref for e in rest] == ["o-3", "o-2", "o-1"]
    assert [e.entry.balance_after for e in page + rest] == [
        P("15"),
        P("10"),
        P("6"),
        P("3"),
        P("1"),
    ]


@pytest.mark.parametrize(("asked", "given"), [(0, 1), (-3, 1), (10_000, MAX_LEDGER_PAGE)])
async def test_a_ledger_page_holds_at_least_one_and_at_most_the_maximum_entries(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    asked: int,
    given: int,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    at = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
    async with uow_factory() as uow:  # a long history, written in one go
        ledger = await uow.ledgers.get(merchant.id, ann.id, merchant.settings.expiry_policy)
        ledger.earn(P(MAX_LEDGER_PAGE), at=at)
        for _ in range(MAX_LEDGER_PAGE):
            ledger.spend(P("1"), at=at)
        await uow.ledgers.save(merchant.id, ledger, at=at)
        await uow.commit()
    page = await ledger_entries(merchant.id, ann.id, limit=asked, uow=uow_factory())
    assert len(page) == given


# -- expiry ----------------------------------------------------------------------------------


async def test_nightly_expiry_takes_points_from_the_local_midnight_after_their_last_day(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    clock.set(datetime(2023, 12, 31, 23, 30, tzinfo=UTC))  # 1 January 2024 in Prague
    await earn_points(merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock)
    clock.set(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
    await earn_points(merchant.id, ann.id, P("20"), order_ref="o-2", uow=uow_factory(), clock=clock)
    await spend_points(merchant.id, ann.id, P("4"), uow=uow_factory(), clock=clock)

    clock.set(datetime(2025, 1, 1, 22, 59, 59, tzinfo=UTC))  # 23:59:59 on the last valid day
    assert await expire_due_points(merchant.id, uow_factory=uow_factory, clock=clock) == 0
    assert await balance_of(uow_factory, merchant, ann.id, clock) == P("26")

    clock.set(datetime(2025, 1, 1, 23, 0, tzinfo=UTC))  # midnight in Prague
    assert await expire_due_points(merchant.id, uow_factory=uow_factory, clock=clock) == 1

    view = await get_customer(merchant.id, ann.id, uow=uow_factory(), clock=clock)
    assert view.summary.balance == P("20")
    assert view.summary.next_expiration == Expiration(date(2025, 6, 1), P("20"))
    assert view.summary.last_change == LastChange(date(2025, 1, 2), P("-6"))
    (newest,) = await ledger_entries(merchant.id, ann.id, limit=1, uow=uow_factory())
    assert (
        newest.entry.kind,
        newest.entry.points,
        newest.entry.balance_after,
        newest.entry.at,
    ) == (
        EntryKind.EXPIRE,
        P("-6"),
        P("20"),
        clock.now(),
    )


async def test_nightly_expiry_counts_customers_and_is_safe_to_run_twice(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    customers = [await new_customer(merchant, email=f"c{n}@example.cz") for n in range(3)]
    for n, customer in enumerate(customers[:2]):
        await earn_points(
            merchant.id, customer.id, P("5"), order_ref=f"old-{n}", uow=uow_factory(), clock=clock
        )
    clock.advance(days=200)
    await earn_points(
        merchant.id, customers[0].id, P("7"), order_ref="new-0", uow=uow_factory(), clock=clock
    )
    await earn_points(
        merchant.id, customers[2].id, P("9"), order_ref="new-2", uow=uow_factory(), clock=clock
    )
    clock.set(datetime(2025, 3, 11, 12, 0, tzinfo=UTC))

    assert await expire_due_points(merchant.id, uow_factory=uow_factory, clock=clock) == 2
    assert await expire_due_points(merchant.id, uow_factory=uow_factory, clock=clock) == 0
    assert [await balance_of(uow_factory, merchant, c.id, clock) for c in customers] == [
        P("7"),
        P("0"),
        P("9"),
    ]
    assert await kinds_and_points(uow_factory, merchant, customers[1].id) == [
        (EntryKind.EARN, "5.00"),
        (EntryKind.EXPIRE, "-5.00"),
    ]


async def test_points_that_never_expire_survive_the_nightly_expiry(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    await change_settings("anna", {"validity_months": "0"}, clock=FakeClock(), uow=uow_factory())
    ann = await new_customer(merchant, email="ann@example.cz")
    earned = await earn_points(
        merchant.id, ann.id, P("5"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    assert earned.view.summary.next_expiration is None
    clock.advance(days=365 * 50)
    assert await expire_due_points(merchant.id, uow_factory=uow_factory, clock=clock) == 0
    assert await balance_of(uow_factory, merchant, ann.id, clock) == P("5")


# -- concurrent callers ----------------------------------------------------------------------


async def test_fifty_concurrent_spends_of_one_point_on_thirty_succeed_thirty_times(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn_points(merchant.id, ann.id, P("30"), order_ref="o-1", uow=uow_factory(), clock=clock)

    outcomes = await asyncio.gather(
        *(
            spend_points(merchant.id, ann.id, P("1"), uow=uow_factory(), clock=clock)
            for _ in range(50)
        ),
        return_exceptions=True,
    )

    assert sum(not isinstance(o, BaseException) for o in outcomes) == 30
    assert sum(isinstance(o, InsufficientPoints) for o in outcomes) == 20
    assert await balance_of(uow_factory, merchant, ann.id, clock) == Points.zero()
    assert len(await ledger_entries(merchant.id, ann.id, limit=500, uow=uow_factory())) == 31


async def test_concurrent_earns_for_different_orders_lose_no_update(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")

    await asyncio.gather(
        *(
            earn_points(
                merchant.id, ann.id, P("1.50"), order_ref=f"o-{n}", uow=uow_factory(), clock=clock
            )
            for n in range(40)
        )
    )

    assert await balance_of(uow_factory, merchant, ann.id, clock) == P("60")
    entries = await ledger_entries(merchant.id, ann.id, limit=500, uow=uow_factory())
    assert sorted(e.entry.balance_after for e in entries) == [Points(150 * n) for n in range(1, 41)]


async def test_the_same_order_sent_many_times_at_once_earns_once(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")

    results = await asyncio.gather(
        *(
            earn_points(
                merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
            )
            for _ in range(20)
        )
    )

    assert sum(r.entry is not None for r in results) == 1
    assert {r.view.summary.balance for r in results} == {P("10")}


async def test_concurrent_first_purchases_pay_the_referral_bonus_once(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz", referred_by=ann.referral_code)

    await asyncio.gather(
        *(
            earn_points(
                merchant.id, bob.id, P("1"), order_ref=f"o-{n}", uow=uow_factory(), clock=clock
            )
            for n in range(10)
        )
    )

    assert await balance_of(uow_factory, merchant, ann.id, clock) == P("50")
    assert await kinds_and_points(uow_factory, merchant, ann.id) == [
        (EntryKind.REFERRAL_BONUS, "50.00")
    ]
    assert await balance_of(uow_factory, merchant, bob.id, clock) == P("10")


async def test_a_spend_waits_for_a_concurrent_earn_instead_of_missing_it(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    earn = earn_points(merchant.id, ann.id, P("5"), order_ref="o-1", uow=uow_factory(), clock=clock)
    spend = spend_points(merchant.id, ann.id, P("5"), uow=uow_factory(), clock=clock)

    await asyncio.gather(earn, spend)

    assert await balance_of(uow_factory, merchant, ann.id, clock) == Points.zero()
    assert [kind for kind, _ in await kinds_and_points(uow_factory, merchant, ann.id)] == [
        EntryKind.EARN,
        EntryKind.SPEND,
    ]


async def test_expiry_run_concurrently_with_spends_never_overdraws(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn_points(merchant.id, ann.id, P("10"), order_ref="old", uow=uow_factory(), clock=clock)
    clock.advance(days=300)
    await earn_points(merchant.id, ann.id, P("3"), order_ref="new", uow=uow_factory(), clock=clock)
    clock.advance(days=70)  # the first lot is past its last day

    outcomes = await asyncio.gather(
        expire_due_points(merchant.id, uow_factory=uow_factory, clock=clock),
        *(
            spend_points(merchant.id, ann.id, P("1"), uow=uow_factory(), clock=clock)
            for _ in range(5)
        ),
        return_exceptions=True,
    )

    spent = sum(not isinstance(o, BaseException) for o in outcomes[1:])
    balance = await balance_of(uow_factory, merchant, ann.id, clock)
    assert balance.hundredths >= 0
    entries = await ledger_entries(merchant.id, ann.id, limit=500, uow=uow_factory())
    assert entries[0].entry.balance_after == balance
    assert sum(e.entry.points.hundredths for e in entries) == balance.hundredths
    assert spent >= 3


async def test_a_referral_bonus_turned_on_after_the_first_purchase_is_not_paid_later(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    await change_settings(
        merchant.slug, {"referral_bonus": "0"}, clock=FakeClock(), uow=uow_factory()
    )
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz", referred_by=ann.referral_code)
    await earn_points(merchant.id, bob.id, P("5"), order_ref="o-1", uow=uow_factory(), clock=clock)
    await change_settings(
        merchant.slug, {"referral_bonus": "50"}, clock=FakeClock(), uow=uow_factory()
    )
    await earn_points(merchant.id, bob.id, P("5"), order_ref="o-2", uow=uow_factory(), clock=clock)

    assert await balance_of(uow_factory, merchant, ann.id, clock) == Points.zero()


# -- a transaction the database aborts for a conflict ------------------------------------------


async def test_an_earn_the_database_aborts_for_a_conflict_runs_again_and_earns_once(
    merchant: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz", referred_by=ann.referral_code)
    store.conflicts = CONFLICT_ATTEMPTS - 1

    result = await earn_points(
        merchant.id, bob.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
    )

    assert result.entry is not None
    assert result.view.summary.balance == P("10")
    assert await kinds_and_points(uow_factory, merchant, bob.id) == [(EntryKind.EARN, "10.00")]
    assert await kinds_and_points(uow_factory, merchant, ann.id) == [
        (EntryKind.REFERRAL_BONUS, "50.00")
    ]


async def test_spends_and_adjustments_the_database_aborts_for_a_conflict_run_again(
    merchant: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    store.conflicts = 1
    await adjust_points(merchant.id, ann.id, P("30"), note="gift", uow=uow_factory(), clock=clock)
    store.conflicts = 1
    await spend_points(merchant.id, ann.id, P("12"), uow=uow_factory(), clock=clock)
    assert await kinds_and_points(uow_factory, merchant, ann.id) == [
        (EntryKind.ADJUST, "30.00"),
        (EntryKind.SPEND, "-12.00"),
    ]


async def test_an_earn_that_keeps_meeting_conflicts_gives_up_and_stores_nothing(
    merchant: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    store.conflicts = CONFLICT_ATTEMPTS
    with pytest.raises(TransientConflict):
        await earn_points(
            merchant.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
        )
    assert store.conflicts == 0  # each run met one
    assert await kinds_and_points(uow_factory, merchant, ann.id) == []


async def test_a_nightly_expiry_chunk_the_database_aborts_for_a_conflict_runs_again(
    merchant: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    customers = [await new_customer(merchant, email=f"c{n}@example.cz") for n in range(3)]
    for n, customer in enumerate(customers):
        await earn_points(
            merchant.id, customer.id, P("5"), order_ref=f"o-{n}", uow=uow_factory(), clock=clock
        )
    clock.set(datetime(2025, 3, 11, 12, 0, tzinfo=UTC))
    store.conflicts = 2

    expired = await expire_due_points(
        merchant.id, uow_factory=uow_factory, clock=clock, chunk_size=2
    )

    assert expired == 3
    for customer in customers:
        assert await kinds_and_points(uow_factory, merchant, customer.id) == [
            (EntryKind.EARN, "5.00"),
            (EntryKind.EXPIRE, "-5.00"),
        ]
