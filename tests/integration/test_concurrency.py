"""Concurrent writers: no overdraft, no lost update, no double earn, no deadlock; a slow
Redis slows no other writer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from ellity.adapters.arq_queue import ArqJobQueue
from ellity.adapters.sql.database import Database, NestedWrite
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.errors import InsufficientPoints
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import contact_sync, customers, integration, merchants, points
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakeMarketingPlatforms, FakePasswordHasher, FakeSecretBox

CLOCK = SystemClock()


async def merchant_with_customer(
    uow_factory: UnitOfWorkFactory,
) -> tuple[MerchantId, CustomerId]:
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
    return merchant.id, created.view.customer.id or CustomerId(0)


async def balance_and_entries(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_id: CustomerId,
    clock: Clock = CLOCK,
) -> tuple[Points, int]:
    view = await customers.get_customer(
        merchant_id, customer_id, uow=uow_factory(read_only=True), clock=clock
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


# -- nudging the worker: a Redis that accepts and never answers ------------------------------


class SilentRedis:
    """A TCP server on 127.0.0.1 that accepts connections, reads what it is sent and never
    answers, until ``hang_up`` closes every connection it holds."""

    def __init__(self) -> None:
        self.connections = 0
        self.connected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        self.connected.set()
        while await reader.read(4096):
            pass  # say nothing

    def hang_up(self) -> None:
        for writer in self._writers:
            writer.close()

    async def close(self) -> None:
        self.hang_up()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def silent_redis() -> AsyncIterator[SilentRedis]:
    server = SilentRedis()
    yield server
    await server.close()


async def merchant_sending_emails(factory: SqlUnitOfWorkFactory) -> tuple[MerchantId, CustomerId]:
    """A merchant whose every earn leaves an email in the outbox (so each commit nudges)."""
    merchant_id, customer_id = await merchant_with_customer(factory)
    async with factory() as uow:
        merchant = await uow.merchants.get(merchant_id)
        assert merchant is not None
        settings = dataclasses.replace(merchant.settings, send_system_emails=True)
        await uow.merchants.update_settings(merchant_id, settings)
        await uow.commit()
    return merchant_id, customer_id


async def test_ten_concurrent_earns_with_a_redis_that_never_answers_ask_it_once(
    clean_sqlite: Database, silent_redis: SilentRedis
) -> None:
    """The first nudge waits for its timeout; those waiting behind it, and those of the
    back-off period after it, are dropped without a word to Redis."""
    queue = ArqJobQueue(await silent_redis.start(), queue_name="q")
    factory = SqlUnitOfWorkFactory(clean_sqlite, on_outbox_work=queue.nudge_delivery)
    merchant_id, customer_id = await merchant_sending_emails(factory)
    assert silent_redis.connections == 0  # set up before the customer had outbox work

    def earn(ref: str) -> Awaitable[points.PointsResult]:
        return points.earn_points(
            merchant_id, customer_id, Points.parse("1"), order_ref=ref, uow=factory(), clock=CLOCK
        )

    try:
        await asyncio.gather(*(earn(f"o-{n}") for n in range(10)))
        await earn("o-later")  # within the back-off period
    finally:
        await queue.close()
    assert silent_redis.connections == 1
    assert await balance_and_entries(factory, merchant_id, customer_id) == (Points(1100), 11)


async def test_the_writers_turn_is_free_while_a_nudge_waits_for_redis(
    clean_sqlite: Database, silent_redis: SilentRedis
) -> None:
    queue = ArqJobQueue(await silent_redis.start(), queue_name="q", nudge_timeout=600)
    nudging = SqlUnitOfWorkFactory(clean_sqlite, on_outbox_work=queue.nudge_delivery)
    plain = SqlUnitOfWorkFactory(clean_sqlite)
    merchant_id, customer_id = await merchant_sending_emails(plain)
    try:
        first = asyncio.create_task(
            points.earn_points(
                merchant_id,
                customer_id,
                Points.parse("1"),
                order_ref="o-1",
                uow=nudging(),
                clock=CLOCK,
            )
        )
        async with asyncio.timeout(60):  # a guard against hanging, not a measure
            await silent_redis.connected.wait()  # the first earn's nudge hangs now
            await points.earn_points(  # another writer gets its turn meanwhile
                merchant_id,
                customer_id,
                Points.parse("2"),
                order_ref="o-2",
                uow=plain(),
                clock=CLOCK,
            )
            assert not first.done()
            silent_redis.hang_up()  # the nudge fails; the earn was stored before it
            await first
    finally:
        await queue.close()
    assert await balance_and_entries(plain, merchant_id, customer_id) == (Points(300), 2)


# -- PostgreSQL: lock order, and a transaction aborted for a conflict ---------------------------


async def test_a_transaction_postgresql_aborts_as_a_deadlock_leaves_as_a_transient_conflict(
    clean_postgres: Database,
) -> None:
    """Two writers lock two customers in opposite orders: PostgreSQL aborts one of them, and
    it leaves its unit of work as the port's ``TransientConflict``; the other one commits."""
    factory = SqlUnitOfWorkFactory(clean_postgres)
    merchant_id, ann = await merchant_with_customer(factory)
    created = await customers.upsert_customer(
        merchant_id,
        customers.CustomerInput(email="bob@example.cz"),
        uow=factory(),
        clock=CLOCK,
        rng=SecretsRandom(),
    )
    bob = created.view.customer.id or CustomerId(0)
    holding = {ann: asyncio.Event(), bob: asyncio.Event()}

    async def lock(first: CustomerId, then: CustomerId) -> None:
        async with factory() as uow:
            await uow.customers.get(merchant_id, first, for_update=True)
            holding[first].set()
            await holding[then].wait()
            await uow.customers.get(merchant_id, then, for_update=True)
            await uow.commit()

    async with asyncio.timeout(60):  # PostgreSQL looks for deadlocks after a second
        outcomes = await asyncio.gather(lock(ann, bob), lock(bob, ann), return_exceptions=True)
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "NoneType",
        "TransientConflict",
    ]


REFERRAL_CHAIN = 40


async def test_the_nightly_expiry_referral_first_purchases_and_contact_settles_run_together(
    clean_postgres: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL: each customer referred the next one, and all hold points past their
    last day. The nightly expiry walks them in small chunks while every one of them makes a
    first purchase (paying their referrer, a lower id, the bonus) and a worker writes the
    marked contacts to Ecomail and settles them. Nothing fails, nothing is lost, and the
    locks are taken in one order: no transaction even needed running again."""
    caplog.set_level(logging.INFO, logger="ellity.domain.services.common")
    factory = SqlUnitOfWorkFactory(clean_postgres)
    clock = FakeClock(datetime(2023, 1, 10, 9, 0, tzinfo=UTC))
    platforms = FakeMarketingPlatforms(clock)
    platforms.add_account("ecomail-key-0001").add_list("Customers", list_id="1")
    services: dict[str, Any] = {
        "uow_factory": factory,
        "platforms": platforms,
        "secret_box": FakeSecretBox(),
        "clock": clock,
    }
    merchant = await merchants.create_merchant(
        slug="shop",
        settings=MerchantSettings(
            name="Shop",
            shop_url="https://shop.example.cz",
            referral_bonus=Points.parse("5"),
            ecomail_add=EcomailAdd.CUSTOMERS,  # every customer is added to the list
        ),
        admin_email="admin@shop.example.cz",
        admin_password="a long password",
        uow=factory(),
        clock=clock,
        hasher=FakePasswordHasher(),
    )
    merchant_id = merchant.id or MerchantId(0)
    await integration.connect_ecomail(merchant_id, "ecomail-key-0001", **services)
    await integration.activate_ecomail(merchant_id, "1", **services)
    chain: list[CustomerId] = []
    code = None
    for n in range(REFERRAL_CHAIN):
        created = await customers.upsert_customer(
            merchant_id,
            customers.CustomerInput(email=f"c{n}@example.cz", referred_by=code),
            uow=factory(),
            clock=clock,
            rng=SecretsRandom(),
        )
        chain.append(created.view.customer.id or CustomerId(0))
        code = created.view.customer.referral_code
        await points.adjust_points(  # not a purchase: the first purchase is still to come
            merchant_id, chain[-1], Points.parse("10"), note="welcome", uow=factory(), clock=clock
        )
    sync = functools.partial(
        contact_sync.sync_contacts, **services, worker_token="worker-1", lease=timedelta(hours=1)
    )
    await sync()
    clock.set(datetime(2024, 3, 1, 9, 0, tzinfo=UTC))  # the welcome points are past due
    # The purchases carry a time before the welcome points' expiry instant (21:00 on their
    # last valid day in Prague), so that the nightly run, not the purchase, expires them: a
    # change after that instant would expire them itself and the run would find less to lock.
    bought_at = FakeClock(datetime(2024, 1, 10, 20, 0, tzinfo=UTC))

    purchases_left = asyncio.Semaphore(8)
    done = asyncio.Event()

    async def first_purchase(customer_id: CustomerId) -> None:
        async with purchases_left:
            await points.earn_points(
                merchant_id,
                customer_id,
                Points.parse("20"),
                order_ref=f"first-{customer_id}",
                uow=factory(),
                clock=bought_at,
            )

    async def purchases() -> None:
        order = chain[:]
        random.Random(REFERRAL_CHAIN).shuffle(order)
        await asyncio.gather(*(first_purchase(customer_id) for customer_id in order))

    async def expiry() -> int:
        return await points.expire_due_points(
            merchant_id, uow_factory=factory, clock=clock, chunk_size=3
        )

    async def worker() -> None:
        while not done.is_set():
            await sync()
            await asyncio.sleep(0)

    async def together() -> int:
        try:
            _, expired = await asyncio.gather(purchases(), expiry())
        finally:
            done.set()
        return expired

    async with asyncio.timeout(300):  # a guard against hanging, not a measure
        expired, _ = await asyncio.gather(together(), worker())
    await sync()  # what the last changes marked

    assert expired == REFERRAL_CHAIN
    for n, customer_id in enumerate(chain):
        entries = await points.ledger_entries(
            merchant_id, customer_id, limit=500, uow=factory(read_only=True)
        )
        kinds = sorted(stored.entry.kind.value for stored in entries)
        paid_a_bonus = n < REFERRAL_CHAIN - 1
        assert kinds == sorted(
            ["adjust", "expire", "earn"] + (["referral_bonus"] if paid_a_bonus else [])
        ), n
        balance, _ = await balance_and_entries(factory, merchant_id, customer_id, clock)
        assert balance == sum((stored.entry.points for stored in entries), Points(0))
        assert balance == Points.parse("25" if paid_a_bonus else "20")
        member = platforms.accounts["ecomail-key-0001"].member("1", f"c{n}@example.cz")
        assert member is not None
        assert member.fields["ellity_credit_num"] == balance.whole()
    async with factory(read_only=True) as uow:
        assert (await uow.views.contact_sync_health(merchant_id)).pending == 0
    assert [r.getMessage() for r in caplog.records if "running it again" in r.getMessage()] == []


async def waiting_for_a_lock(database: Database) -> None:
    """Return once a session of this database waits for a row lock."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while True:
        async with database.engine.connect() as conn:
            if (await conn.execute(query)).scalar_one():
                return
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def scans_in_table_order(database: Database) -> AsyncIterator[None]:
    """New sessions plan without indexes, so statements meet rows in the table's order (as a
    bitmap scan of thousands of ids does, block by block)."""
    switches = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")

    async def set_all(value: str) -> None:
        async with database.engine.begin() as conn:
            for switch in switches:
                await conn.execute(
                    sa.text(f'ALTER DATABASE "{conn.engine.url.database}" SET {switch} = {value}')
                )
        await database.engine.dispose()  # the pool's sessions started with the old settings

    await set_all("off")
    try:
        yield
    finally:
        await set_all("DEFAULT")


async def test_a_settle_takes_its_contacts_in_customer_order_whatever_order_the_table_has(
    clean_postgres: Database,
) -> None:
    """Ann's contact row is rewritten after Bob's, so a plain scan meets Bob's first. A settle
    of both still locks Ann's first: a transaction marking Ann's then Bob's contact (a first
    purchase paying Ann, the referrer, her bonus) makes it wait, never deadlock."""
    factory = SqlUnitOfWorkFactory(clean_postgres)
    merchant_id, ann = await merchant_with_customer(factory)
    created = await customers.upsert_customer(
        merchant_id,
        customers.CustomerInput(email="bob@example.cz"),
        uow=factory(),
        clock=CLOCK,
        rng=SecretsRandom(),
    )
    bob = created.view.customer.id or CustomerId(0)
    now = CLOCK.now()

    async def mark(*ids: CustomerId) -> None:
        async with factory() as uow:
            await uow.contacts.mark_changed(merchant_id, ids, at=now)
            await uow.commit()

    await mark(ann, bob)
    async with factory() as uow:
        claimed = await uow.contacts.claim(
            merchant_id, token="w", now=now, lease=timedelta(hours=1), limit=10
        )
        await uow.commit()
    assert [contact.customer_id for contact in claimed] == [ann, bob]
    await mark(ann)  # Ann's row now comes after Bob's in the table

    holds_ann = asyncio.Event()
    settle_waits = asyncio.Event()

    async def marks_ann_then_bob() -> None:
        async with factory() as uow:
            await uow.contacts.mark_changed(merchant_id, [ann], at=now)
            holds_ann.set()
            await settle_waits.wait()
            await uow.contacts.mark_changed(merchant_id, [bob], at=now)
            await uow.commit()

    async def settles_both() -> int:
        await holds_ann.wait()
        async with factory() as uow:
            settled = await uow.contacts.settle(
                merchant_id, [bob, ann], token="w", members=[bob, ann], at=now
            )
            await uow.commit()
        return settled

    async def notices_the_wait() -> None:
        await holds_ann.wait()
        await waiting_for_a_lock(clean_postgres)
        settle_waits.set()

    async with scans_in_table_order(clean_postgres), asyncio.timeout(60):  # a hang guard
        _, settled, _ = await asyncio.gather(
            marks_ann_then_bob(), settles_both(), notices_the_wait()
        )
    assert settled == 2
    async with factory(read_only=True) as uow:  # changed since the claim: still to be written
        assert await uow.contacts.is_pending(merchant_id, ann)
        assert await uow.contacts.is_pending(merchant_id, bob)
