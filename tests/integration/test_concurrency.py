"""Concurrent writers on one customer: no overdraft, no lost update, no double earn."""

from __future__ import annotations

import asyncio

import pytest

from ellity.adapters.sql.database import Database, NestedWrite
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.errors import InsufficientPoints
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import customers, merchants, points
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakePasswordHasher

CLOCK = SystemClock()


async def merchant_with_customer(uow_factory: UnitOfWorkFactory) -> tuple[int, int]:
    merchant = await merchants.create_merchant(
        slug="shop",
        settings=MerchantSettings(name="Shop", shop_url="https://shop.example.cz"),
        admin_email="admin@shop.example.cz",
        admin_password="a long password",
        uow=uow_factory(),
        clock=CLOCK,
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    created = await customers.upsert_customer(
        merchant.id,
        customers.CustomerInput(email="ann@example.cz"),
        uow=uow_factory(),
        clock=CLOCK,
        rng=SecretsRandom(),
    )
    return merchant.id, created.view.customer.id or 0


async def balance_and_entries(
    uow_factory: UnitOfWorkFactory, merchant_id: int, customer_id: int
) -> tuple[Points, int]:
    view = await customers.get_customer(
        merchant_id, customer_id, uow=uow_factory(read_only=True), clock=CLOCK
    )
    entries = await points.ledger_entries(
        merchant_id, customer_id, limit=500, uow=uow_factory(read_only=True)
    )
    return view.summary.balance, len(entries)


async def test_fifty_concurrent_spends_of_one_point_on_thirty_points_succeed_thirty_times(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id, customer_id = await merchant_with_customer(uow_factory)
    await points.earn_points(
        merchant_id,
        customer_id,
        Points.parse("30"),
        order_ref="o-1",
        uow=uow_factory(),
        clock=CLOCK,
    )

    async def spend_one() -> bool:
        try:
            await points.spend_points(
                merchant_id, customer_id, Points.parse("1"), uow=uow_factory(), clock=CLOCK
            )
        except InsufficientPoints:
            return False
        return True

    outcomes = await asyncio.gather(*(spend_one() for _ in range(50)))
    assert outcomes.count(True) == 30
    assert outcomes.count(False) == 20
    assert await balance_and_entries(uow_factory, merchant_id, customer_id) == (Points(0), 31)


async def test_fifty_concurrent_earns_lose_no_update(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id, customer_id = await merchant_with_customer(uow_factory)
    await asyncio.gather(
        *(
            points.earn_points(
                merchant_id,
                customer_id,
                Points.parse("1.50"),
                order_ref=f"o-{n}",
                uow=uow_factory(),
                clock=CLOCK,
            )
            for n in range(50)
        )
    )
    assert await balance_and_entries(uow_factory, merchant_id, customer_id) == (Points(7500), 50)


async def test_the_same_order_sent_twenty_times_at_once_earns_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id, customer_id = await merchant_with_customer(uow_factory)
    results = await asyncio.gather(
        *(
            points.earn_points(
                merchant_id,
                customer_id,
                Points.parse("10"),
                order_ref="o-1",
                uow=uow_factory(),
                clock=CLOCK,
            )
            for _ in range(20)
        )
    )
    assert sum(result.entry is not None for result in results) == 1
    assert {result.view.summary.balance for result in results} == {Points(1000)}
    assert await balance_and_entries(uow_factory, merchant_id, customer_id) == (Points(1000), 1)


async def test_a_write_opened_inside_another_of_the_same_task_is_refused_at_once(
    clean_sqlite: Database,
) -> None:
    """SQLite has one writer: a nested writing unit of work would wait for its own task for
    ever. It is refused, the outer one goes on, and other tasks still take their turn."""
    factory = SqlUnitOfWorkFactory(clean_sqlite)
    merchant_id, customer_id = await merchant_with_customer(factory)
    async with asyncio.timeout(10):
        async with factory() as outer:
            with pytest.raises(NestedWrite):
                async with factory():
                    pass
            async with factory(read_only=True) as reader:  # reading alongside is fine
                assert await reader.customers.get(merchant_id, customer_id) is not None
            await outer.commit()
        other = asyncio.create_task(
            points.earn_points(
                merchant_id,
                customer_id,
                Points.parse("5"),
                order_ref="o-nested",
                uow=factory(),
                clock=CLOCK,
            )
        )
        async with factory() as outer:  # another task waits for this one's turn
            await asyncio.sleep(0.05)
            assert not other.done()
            await outer.commit()
        await other
    balance, _ = await balance_and_entries(factory, merchant_id, customer_id)
    assert balance == Points.parse("5")
