"""The contact sync storage that newsletter notifications read and write: Ellity's add
attempts and the echoes taken of them, and contacts Ecomail confirmed as members; on the
in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.tables.contact_sync import ecomail_contacts
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.newsletter import AddAttempt
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeJobQueue, InMemoryStore
from tests.integration.test_contact_sync_storage import (
    add_customers,
    add_merchant,
    claim,
    connect,
    ids_of,
    mark,
    settle,
)

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


async def attempted(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId, at: datetime
) -> None:
    """What the sync records before an add call (its contact row exists: it was marked),
    written directly into the storage."""
    store = getattr(uow_factory, "__self__", None)
    if isinstance(store, InMemoryStore):
        row = store.state.contacts[customer_id]
        assert row.merchant_id == merchant_id
        row.add_attempted_at, row.echo_taken_at, row.echo_subscribed_at = at, None, None
        return
    assert isinstance(uow_factory, SqlUnitOfWorkFactory)
    c = ecomail_contacts.c
    async with uow_factory.database.write_engine.begin() as conn:
        updated = await conn.execute(
            ecomail_contacts.update()
            .where(c.customer_id == customer_id, c.merchant_id == merchant_id)
            .values(add_attempted_at=at, echo_taken_at=None, echo_subscribed_at=None)
        )
        assert updated.rowcount == 1


async def add_attempt(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId
) -> AddAttempt | None:
    async with uow_factory(read_only=True) as uow:
        return await uow.contacts.add_attempt(merchant_id, customer_id)


async def take_echo(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_id: CustomerId,
    *,
    at: datetime,
    subscribed_at: datetime | None,
) -> None:
    async with uow_factory() as uow:
        await uow.contacts.take_echo(merchant_id, customer_id, at=at, subscribed_at=subscribed_at)
        await uow.commit()


async def mark_member(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId, at: datetime
) -> None:
    async with uow_factory() as uow:
        await uow.contacts.mark_member(merchant_id, customer_id, at=at)
        await uow.commit()


# -- add attempts and their echoes ---------------------------------------------------------


async def test_a_contact_never_attempted_has_no_add_attempt(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    [ann, ben] = await add_customers(uow_factory, shop, "ann@example.cz", "ben@example.cz")
    await connect(uow_factory, shop)
    await mark(uow_factory, shop, ann)  # a contact row, but no attempt
    assert await add_attempt(uow_factory, shop, ann) is None
    assert await add_attempt(uow_factory, shop, ben) is None  # no contact row at all


async def test_an_attempt_is_read_and_its_echo_taken(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    [ann, ben] = await add_customers(uow_factory, shop, "ann@example.cz", "ben@example.cz")
    await connect(uow_factory, shop)
    await mark(uow_factory, shop, ann, ben)
    await attempted(uow_factory, shop, ann, NOW)
    await attempted(uow_factory, shop, ben, NOW)
    assert await add_attempt(uow_factory, shop, ann) == AddAttempt(NOW)
    await take_echo(uow_factory, shop, ann, at=NOW + 5 * SECOND, subscribed_at=NOW + SECOND)
    await take_echo(uow_factory, shop, ben, at=NOW + 5 * SECOND, subscribed_at=None)
    assert await add_attempt(uow_factory, shop, ann) == AddAttempt(
        NOW, NOW + 5 * SECOND, NOW + SECOND
    )
    assert await add_attempt(uow_factory, shop, ben) == AddAttempt(NOW, NOW + 5 * SECOND, None)


async def test_another_merchants_attempts_are_neither_read_nor_taken(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    other = await add_merchant(uow_factory, "other")
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await connect(uow_factory, shop)
    await mark(uow_factory, shop, ann)
    await attempted(uow_factory, shop, ann, NOW)
    assert await add_attempt(uow_factory, other, ann) is None
    await take_echo(uow_factory, other, ann, at=NOW, subscribed_at=NOW)
    assert await add_attempt(uow_factory, shop, ann) == AddAttempt(NOW)


# -- members Ecomail confirmed -------------------------------------------------------------


async def test_a_confirmed_member_is_made_a_pending_member_row(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await connect(uow_factory, shop)
    await mark_member(uow_factory, shop, ann, NOW)
    [claimed] = await claim(uow_factory, shop, "w", now=NOW)
    assert (claimed.customer_id, claimed.in_list) == (ann, True)  # written by an update


async def test_a_known_contact_becomes_a_member_and_stays_pending_when_claimed(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    [ann, ben] = await add_customers(uow_factory, shop, "ann@example.cz", "ben@example.cz")
    await connect(uow_factory, shop)
    await mark(uow_factory, shop, ann, ben)
    assert [c.in_list for c in await claim(uow_factory, shop, "w")] == [False, False]
    await mark_member(uow_factory, shop, ann, NOW + SECOND)  # while the claim writes it
    await settle(uow_factory, shop, [ann, ben], "w", at=NOW + 2 * SECOND)
    again = await claim(uow_factory, shop, "w2", now=NOW + 3 * SECOND)
    assert [(c.customer_id, c.in_list) for c in again] == [(ann, True)]  # written once more


async def test_a_member_needs_an_email_an_active_integration_and_its_merchant(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    other = await add_merchant(uow_factory, "other")
    [ann, anonymous] = await add_customers(uow_factory, shop, "ann@example.cz", None)
    await connect(uow_factory, shop, active=False)
    await mark_member(uow_factory, shop, ann, NOW)  # the integration is inactive
    await connect(uow_factory, shop)
    await connect(uow_factory, other)
    await mark_member(uow_factory, shop, anonymous, NOW)  # no email
    await mark_member(uow_factory, other, ann, NOW)  # not the other merchant's customer
    assert await claim(uow_factory, shop, "w", now=NOW + SECOND) == []
    assert await claim(uow_factory, other, "w", now=NOW + SECOND) == []
    await mark_member(uow_factory, shop, ann, NOW)
    assert ids_of(await claim(uow_factory, shop, "w", now=NOW + SECOND)) == [ann]


async def test_a_confirmed_member_nudges_the_worker(sql_database: Database) -> None:
    queue = FakeJobQueue()
    uow_factory = SqlUnitOfWorkFactory(sql_database, on_outbox_work=queue.nudge_delivery)
    shop = await add_merchant(uow_factory)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await connect(uow_factory, shop)
    nudges = len(queue.nudges)
    await mark_member(uow_factory, shop, ann, NOW)
    assert len(queue.nudges) == nudges + 1
