"""The work queues' stats for ``/metrics`` (``QueueStatsSource``), on the in-memory fake,
SQLite and PostgreSQL: depth, the oldest pending item, and the items still claimed by a worker
whose lease ran out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.queue_stats import QUEUES, SqlQueueStats, queue_stats_query
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.newsletter import Notification, SubscriptionChange
from ellity.ports.operations import QueueStats, QueueStatsSource
from ellity.ports.storage import UnitOfWorkFactory
from tests.conftest import BACKENDS
from tests.fakes import InMemoryQueueStats, InMemoryStore

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Backend:
    uow_factory: UnitOfWorkFactory
    stats: QueueStatsSource


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        store = InMemoryStore()
        return Backend(store.unit_of_work, InMemoryQueueStats(store))
    database: Database = request.getfixturevalue(f"clean_{request.param}")
    return Backend(SqlUnitOfWorkFactory(database), SqlQueueStats(database))


async def shop_with_customers(
    uow_factory: UnitOfWorkFactory, count: int
) -> tuple[MerchantId, list[CustomerId]]:
    async with uow_factory() as uow:
        merchant = await uow.merchants.add(
            Merchant(slug="shop", settings=MerchantSettings(name="Shop")), at=NOW
        )
        assert merchant.id is not None
        ids = []
        for n in range(count):
            customer = await uow.customers.add(
                Customer(
                    merchant_id=merchant.id,
                    referral_code=f"CODE{n:04d}",
                    created_at=NOW,
                    updated_at=NOW,
                    email=f"c{n}@example.cz",
                )
            )
            ids.append(customer.id)
        await uow.commit()
    return merchant.id, ids


async def test_empty_queues_have_no_depth_no_age_and_nothing_held(backend: Backend) -> None:
    assert await backend.stats.queue_stats(now=NOW) == [
        QueueStats("outbox", 0, None, 0),
        QueueStats("ecomail_contacts", 0, None, 0),
        QueueStats("newsletter_notifications", 0, None, 0),
    ]


async def test_each_queue_counts_its_pending_items_the_oldest_and_the_claims_of_dead_workers(
    backend: Backend,
) -> None:
    uow_factory = backend.uow_factory
    merchant, customers = await shop_with_customers(uow_factory, 3)
    async with uow_factory() as uow:
        # outbox: 4 items over 4 minutes; the first two claimed for 1 minute, one delivered
        for n in range(4):
            await uow.outbox.add(merchant, "email.test", {"n": n}, at=NOW + n * MINUTE)
        await uow.contacts.mark_changed(merchant, customers[:2], at=NOW + MINUTE)
        await uow.contacts.mark_changed(merchant, customers[2:], at=NOW + 2 * MINUTE)
        for n in range(2):
            await uow.newsletter.enqueue(
                merchant,
                Notification(f"n{n}@example.cz", SubscriptionChange.SUBSCRIBED, "7", None),
                received_at=NOW + n * MINUTE,
                at=NOW + n * MINUTE,
            )
        await uow.commit()
    later = NOW + 5 * MINUTE
    async with uow_factory() as uow:
        claimed = await uow.outbox.claim(token="dead", now=later, lease=MINUTE, limit=2)
        await uow.contacts.claim(merchant, token="dead-c", now=later, lease=MINUTE, limit=1)
        await uow.newsletter.claim(token="alive-n", now=later, lease=10 * MINUTE, limit=2)
        await uow.commit()
    async with uow_factory() as uow:
        delivered = await uow.outbox.claim(token="quick", now=later, lease=MINUTE, limit=1)
        await uow.outbox.mark_delivered(delivered[0].id, token="quick", at=later)
        await uow.commit()
    assert [item.id for item in claimed] != [delivered[0].id]

    at = later + 2 * MINUTE  # the 1-minute claims ran out; the 10-minute one holds
    assert await backend.stats.queue_stats(now=at) == [
        QueueStats("outbox", 3, NOW, 2),
        QueueStats("ecomail_contacts", 3, NOW + MINUTE, 1),
        QueueStats("newsletter_notifications", 2, NOW, 0),
    ]
    # while the claims still hold, nobody is dead
    assert [s.held_by_dead_workers for s in await backend.stats.queue_stats(now=later)] == [
        0,
        0,
        0,
    ]


QUEUE_INDEXES = {
    "outbox": "ix_outbox_status_available_at",
    "ecomail_contacts": "ix_ecomail_contacts_pending",
    "newsletter_notifications": "ix_newsletter_notifications_pending",
}


async def test_each_queue_s_stats_read_its_pending_rows_through_the_claims_index(
    sql_database: Database,
) -> None:
    """The stats must not scan the settled history (the bulk of each table)."""
    database = sql_database
    prefix = "EXPLAIN QUERY PLAN " if database.is_sqlite else "EXPLAIN "
    async with database.engine.connect() as conn:
        if not database.is_sqlite:  # the tables are nearly empty: make it show its index
            await conn.execute(sa.text("SET enable_seqscan = off"))
        for name, table, since, pending in QUEUES:
            compiled = queue_stats_query(table, since, pending, NOW).compile()  # named params
            explain = sa.text(prefix + str(compiled)).bindparams(**compiled.params)
            plan = " ".join(str(row[-1]) for row in await conn.execute(explain))
            assert QUEUE_INDEXES[name] in plan, plan
        if not database.is_sqlite:
            await conn.execute(sa.text("RESET enable_seqscan"))
