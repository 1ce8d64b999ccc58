"""The outbox repository contract, on the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.outbox import EmailProblem, OutboxItem, Payload, RetryPolicy
from ellity.ports.request_context import MAX_REQUEST_ID_LENGTH, request_id_bound
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeJobQueue

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)


async def new_merchant(uow_factory: UnitOfWorkFactory, slug: str = "shop") -> MerchantId:
    async with uow_factory() as uow:
        merchant = await uow.merchants.add(
            Merchant(slug=slug, settings=MerchantSettings(name=slug)), at=NOW
        )
        await uow.commit()
    assert merchant.id is not None
    return merchant.id


async def add(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    count: int = 1,
    *,
    at: datetime = NOW,
    payload: Payload | None = None,
) -> list[int]:
    async with uow_factory() as uow:
        ids = [
            await uow.outbox.add(merchant_id, "email.test", payload or {"n": n}, at=at)
            for n in range(count)
        ]
        await uow.commit()
    return ids


async def claim(
    uow_factory: UnitOfWorkFactory,
    token: str,
    *,
    now: datetime = NOW,
    limit: int = 10,
    lease: timedelta = LEASE,
) -> list[OutboxItem]:
    async with uow_factory() as uow:
        items = await uow.outbox.claim(token=token, now=now, lease=lease, limit=limit)
        await uow.commit()
    return items


async def settle(
    uow_factory: UnitOfWorkFactory, how: str, item_id: int, token: str, **kw: object
) -> bool:
    async with uow_factory() as uow:
        done: bool = await getattr(uow.outbox, how)(item_id, token=token, **kw)
        await uow.commit()
    return done


async def test_an_item_can_be_claimed_once_its_transaction_commits(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    async with uow_factory() as uow:  # rolled back: never there
        await uow.outbox.add(shop, "email.test", {"n": 0}, at=NOW)
    assert await claim(uow_factory, "w") == []
    payload: Payload = {"text": "Žluťoučký kůň", "nested": {"list": [1, 2.5, None, True]}}
    [item_id] = await add(uow_factory, shop, payload=payload)
    [item] = await claim(uow_factory, "w")
    assert (item.id, item.merchant_id, item.topic, item.payload, item.attempts) == (
        item_id,
        shop,
        "email.test",
        payload,
        1,
    )
    assert item.created_at == NOW


async def test_an_item_keeps_the_id_of_the_request_that_recorded_it(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    with request_id_bound("req-1"):
        await add(uow_factory, shop)
        async with uow_factory() as uow:
            await uow.outbox.add_many(
                shop, "email.test", [(None, {"n": 1}), (None, {"n": 2})], at=NOW
            )
            await uow.commit()
    with request_id_bound("b" * MAX_REQUEST_ID_LENGTH):
        await add(uow_factory, shop)
    await add(uow_factory, shop)  # outside any request: the worker's own work, a command
    items = await claim(uow_factory, "w")
    assert [item.request_id for item in items] == [
        "req-1",
        "req-1",
        "req-1",
        "b" * MAX_REQUEST_ID_LENGTH,
        None,
    ]


async def test_items_are_claimed_oldest_first_and_only_when_available(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    [later] = await add(uow_factory, shop, at=NOW + timedelta(minutes=5))
    [earlier] = await add(uow_factory, shop, at=NOW)
    hour = timedelta(hours=1)
    assert [i.id for i in await claim(uow_factory, "a", limit=1, lease=hour)] == [earlier]
    assert await claim(uow_factory, "b") == []
    later_on = NOW + timedelta(minutes=5)
    assert [i.id for i in await claim(uow_factory, "c", now=later_on)] == [later]


async def test_concurrent_claimers_never_get_the_same_item(uow_factory: UnitOfWorkFactory) -> None:
    shop = await new_merchant(uow_factory)
    ids = await add(uow_factory, shop, 40)

    async def claimer(token: str) -> list[int]:
        mine: list[int] = []
        while batch := await claim(uow_factory, token, limit=3):
            mine += [item.id for item in batch]
        return mine

    claimed = await asyncio.gather(*(claimer(f"worker-{n}") for n in range(8)))
    every = [item_id for mine in claimed for item_id in mine]
    assert sorted(every) == sorted(ids)  # each exactly once
    assert sum(1 for mine in claimed if mine) >= 2  # they really ran side by side


async def test_a_live_claim_is_respected_and_an_expired_one_is_taken_over(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    [item_id] = await add(uow_factory, shop)
    await claim(uow_factory, "dies")
    assert await claim(uow_factory, "other", now=NOW + LEASE - timedelta(seconds=1)) == []
    [taken] = await claim(uow_factory, "other", now=NOW + LEASE)
    # the dead claim never began the item's call: both claims are one attempt
    assert (taken.id, taken.attempts, taken.interrupted) == (item_id, 1, False)


async def test_an_item_whose_call_began_under_a_dead_claim_is_taken_over_as_interrupted(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    [item_id] = await add(uow_factory, shop)
    await claim(uow_factory, "dies")
    assert not await settle(uow_factory, "mark_sending", item_id, "nobody", at=NOW)
    assert await settle(uow_factory, "mark_sending", item_id, "dies", at=NOW)
    [taken] = await claim(uow_factory, "other", now=NOW + LEASE)
    assert (taken.id, taken.attempts, taken.interrupted) == (item_id, 2, True)
    assert await settle(
        uow_factory,
        "mark_failed",
        item_id,
        "other",
        error="x",
        retry_at=NOW + LEASE,
        at=NOW + LEASE,
    )
    [again] = await claim(uow_factory, "third", now=NOW + LEASE)
    assert (again.attempts, again.interrupted) == (3, False)  # the outcome cleared the mark


async def test_a_renewed_claim_outlives_its_first_lease_and_only_its_holder_renews_it(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    await add(uow_factory, shop, 2)
    await claim(uow_factory, "alive")
    async with uow_factory() as uow:
        assert await uow.outbox.renew_claim(token="alive", until=NOW + 2 * LEASE) == 2
        assert await uow.outbox.renew_claim(token="nobody", until=NOW + 9 * LEASE) == 0
        await uow.commit()
    assert await claim(uow_factory, "other", now=NOW + 2 * LEASE - timedelta(seconds=1)) == []
    assert len(await claim(uow_factory, "other", now=NOW + 2 * LEASE)) == 2


async def test_a_dropped_claim_gives_its_items_back_at_once_without_their_attempts(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    first, second, settled = await add(uow_factory, shop, 3)
    await claim(uow_factory, "stopping")
    assert await settle(uow_factory, "mark_sending", second, "stopping", at=NOW)
    assert await settle(uow_factory, "mark_delivered", settled, "stopping", at=NOW)
    async with uow_factory() as uow:
        assert await uow.outbox.drop_claim(token="stopping") == 2
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.outbox.next_due() == NOW
    taken = {item.id: item for item in await claim(uow_factory, "other")}
    assert sorted(taken) == [first, second]
    assert (taken[first].attempts, taken[first].interrupted) == (1, False)
    assert (taken[second].attempts, taken[second].interrupted) == (2, True)


async def test_only_the_claim_that_holds_an_item_can_settle_it(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    [item_id] = await add(uow_factory, shop)
    await claim(uow_factory, "dies")
    await claim(uow_factory, "other", now=NOW + LEASE)
    at = NOW + LEASE
    assert not await settle(uow_factory, "mark_delivered", item_id, "dies", at=at)
    assert not await settle(uow_factory, "mark_delivered", item_id, "nobody", at=at)
    assert await settle(uow_factory, "mark_delivered", item_id, "other", at=at)
    assert not await settle(uow_factory, "mark_delivered", item_id, "other", at=at)  # settled
    assert await claim(uow_factory, "late", now=NOW + timedelta(days=1)) == []
    async with uow_factory(read_only=True) as uow:
        health = await uow.views.delivery_health(shop)
        assert await uow.outbox.next_due() is None
    assert (health.pending, health.failed, health.last_delivered_at) == (0, 0, at)


async def test_a_failed_attempt_waits_for_its_retry_time(uow_factory: UnitOfWorkFactory) -> None:
    shop = await new_merchant(uow_factory)
    [item_id] = await add(uow_factory, shop)
    await claim(uow_factory, "w")
    async with uow_factory(read_only=True) as uow:
        assert await uow.outbox.next_due() == NOW + LEASE  # the claim's end
    retry_at = NOW + timedelta(minutes=10)
    assert await settle(
        uow_factory, "mark_failed", item_id, "w", error="421 try later", retry_at=retry_at, at=NOW
    )
    async with uow_factory(read_only=True) as uow:
        assert await uow.outbox.next_due() == retry_at
        health = await uow.views.delivery_health(shop)
    assert (health.pending, health.failed, health.oldest_pending_at) == (1, 0, NOW)
    assert await claim(uow_factory, "w2", now=retry_at - timedelta(seconds=1)) == []
    [again] = await claim(uow_factory, "w2", now=retry_at)
    assert (again.id, again.attempts) == (item_id, 2)


async def test_backoff_then_giving_up_leaves_the_last_error_for_the_merchant(
    uow_factory: UnitOfWorkFactory,
) -> None:
    policy = RetryPolicy(max_attempts=4)
    shop = await new_merchant(uow_factory)
    [item_id] = await add(uow_factory, shop)
    now, waits = NOW, []
    while items := await claim(uow_factory, "w", now=now):
        [item] = items
        retry_at = policy.next_attempt_at(item.attempts, item_id=item.id, now=now)
        error = f"attempt {item.attempts} failed"
        assert await settle(
            uow_factory, "mark_failed", item.id, "w", error=error, retry_at=retry_at, at=now
        )
        if retry_at is None:
            break
        waits.append(retry_at - now)
        now = retry_at
    assert [w // timedelta(seconds=30) for w in waits] == [1, 2, 4]  # doubling, jitter < 25 %
    assert await claim(uow_factory, "w", now=now + timedelta(days=30)) == []
    async with uow_factory(read_only=True) as uow:
        [failed] = await uow.views.failed_deliveries(shop, limit=10)
        health = await uow.views.delivery_health(shop)
        assert await uow.outbox.next_due() is None
    assert (failed.id, failed.attempts, failed.last_error) == (item_id, 4, "attempt 4 failed")
    assert failed.last_attempt_at == now
    assert (health.pending, health.failed) == (0, 1)


async def test_the_email_problem_is_the_newest_error_of_an_unsent_email_until_one_is_sent(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await new_merchant(uow_factory), await new_merchant(uow_factory, "other")
    first, second, third = await add(uow_factory, shop, 3)
    async with uow_factory() as uow:
        event = await uow.outbox.add(shop, "ecomail.event", {"n": 9}, at=NOW)
        await uow.outbox.add(other, "email.test", {"n": 9}, at=NOW)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.views.email_problem(shop) is None  # never tried: no problem yet
    await claim(uow_factory, "w")
    later = NOW + timedelta(minutes=1)
    for item_id, error, retry_at, at in [
        (first, "refused (550)", None, NOW),
        (second, "could not be reached", later + LEASE, later),
        (event, "Ecomail answered 500", later + LEASE, later + timedelta(seconds=1)),
    ]:
        assert await settle(
            uow_factory, "mark_failed", item_id, "w", error=error, retry_at=retry_at, at=at
        )
    async with uow_factory(read_only=True) as uow:
        problem = await uow.views.email_problem(shop)
        assert await uow.views.email_problem(other) is None
    # the attempts began with the claim; of two at once, the later item's error
    assert problem == EmailProblem(error="could not be reached", at=NOW, waiting=2, failed=1)
    assert await settle(uow_factory, "mark_delivered", third, "w", at=later + timedelta(seconds=5))
    async with uow_factory(read_only=True) as uow:
        assert await uow.views.email_problem(shop) is None  # the server works again


async def test_retrying_failed_items_touches_only_that_merchants_items(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await new_merchant(uow_factory, "shop"), await new_merchant(uow_factory, "other")
    mine = await add(uow_factory, shop, 3)
    [theirs] = await add(uow_factory, other)
    for item in await claim(uow_factory, "w"):
        await settle(uow_factory, "mark_failed", item.id, "w", error="550", retry_at=None, at=NOW)

    async def retry(merchant_id: MerchantId, item_id: int | None) -> int:
        async with uow_factory() as uow:
            count = await uow.outbox.retry_failed(merchant_id, item_id, at=NOW + LEASE)
            await uow.commit()
        return count

    assert await retry(shop, theirs) == 0
    assert await retry(shop, mine[0]) == 1
    assert [i.id for i in await claim(uow_factory, "w2", now=NOW + LEASE)] == [mine[0]]
    assert await retry(shop, None) == 2
    again = await claim(uow_factory, "w3", now=NOW + LEASE)
    assert sorted(i.id for i in again) == mine[1:]
    assert {i.attempts for i in again} == {1}  # a fresh count
    async with uow_factory(read_only=True) as uow:
        assert [f.id for f in await uow.views.failed_deliveries(other, limit=10)] == [theirs]
        assert await uow.views.failed_deliveries(shop, limit=10) == []


async def test_skipped_items_are_settled_and_old_settled_items_can_be_purged(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await new_merchant(uow_factory)
    skipped, delivered, failed = await add(uow_factory, shop, 3)
    await claim(uow_factory, "w")
    assert await settle(uow_factory, "mark_skipped", skipped, "w", reason="switched off", at=NOW)
    assert await settle(uow_factory, "mark_delivered", delivered, "w", at=NOW)
    assert await settle(uow_factory, "mark_failed", failed, "w", error="x", retry_at=None, at=NOW)
    async with uow_factory() as uow:
        assert await uow.outbox.purge_settled(before=NOW) == 0
        assert await uow.outbox.purge_settled(before=NOW + timedelta(seconds=1)) == 2
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert [f.id for f in await uow.views.failed_deliveries(shop, limit=10)] == [failed]
        assert (await uow.views.delivery_health(shop)).last_delivered_at is None


async def test_a_commit_that_records_outbox_work_nudges_the_worker_once(
    sql_database: Database,
) -> None:
    queue = FakeJobQueue()
    uow_factory = SqlUnitOfWorkFactory(sql_database, on_outbox_work=queue.nudge_delivery)
    shop = await new_merchant(uow_factory)
    assert queue.nudges == []
    await add(uow_factory, shop, 3)
    assert queue.nudges == [None]
    async with uow_factory() as uow:  # rolled back: no nudge
        await uow.outbox.add(shop, "email.test", {}, at=NOW)
    await claim(uow_factory, "w")  # claiming gives no one new work
    assert queue.nudges == [None]
