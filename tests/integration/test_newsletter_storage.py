"""The newsletter storage contract (webhook tokens, received notifications and their claims,
the reward each customer holds), on the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    ClaimedNotification,
    Notification,
    NotificationState,
    Outcome,
    RewardHold,
    SubscriptionChange,
)
from ellity.ports.storage import UniqueViolation, UnitOfWorkFactory
from tests.fakes import FakeJobQueue

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
DIGEST_A, DIGEST_B = "a" * 64, "b" * 64
SUB = SubscriptionChange.SUBSCRIBED


def note(email: str = "ann@example.cz", change: SubscriptionChange = SUB) -> Notification:
    return Notification(email=email, change=change, list_id="7", campaign_id=None)


async def new_merchant(uow_factory: UnitOfWorkFactory, slug: str = "shop") -> MerchantId:
    async with uow_factory() as uow:
        merchant = await uow.merchants.add(
            Merchant(slug=slug, settings=MerchantSettings(name=slug)), at=NOW
        )
        await uow.commit()
    assert merchant.id is not None
    return merchant.id


async def new_customer(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, email: str
) -> CustomerId:
    async with uow_factory() as uow:
        customer = await uow.customers.add(
            Customer(
                merchant_id=merchant_id,
                referral_code=f"C{merchant_id}{len(email):06d}",
                created_at=NOW,
                updated_at=NOW,
                email=email,
            )
        )
        await uow.commit()
    assert customer.id is not None
    return customer.id


async def set_token(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, digest: str, *, replace: bool = False
) -> bool:
    async with uow_factory() as uow:
        stored = await uow.newsletter.set_webhook_token(
            merchant_id, digest=digest, encrypted=f"sealed:{digest[:4]}", at=NOW, replace=replace
        )
        await uow.commit()
    return stored


async def receive(
    uow_factory: UnitOfWorkFactory, digest: str, *notes: Notification, at: datetime = NOW
) -> list[int | None]:
    async with uow_factory() as uow:
        ids = [await uow.newsletter.receive(digest, n, at=at) for n in notes]
        await uow.commit()
    return ids


async def claim(
    uow_factory: UnitOfWorkFactory, token: str, *, now: datetime = NOW, limit: int = 10
) -> list[ClaimedNotification]:
    async with uow_factory() as uow:
        claimed = await uow.newsletter.claim(token=token, now=now, lease=LEASE, limit=limit)
        await uow.commit()
    return claimed


async def settle(
    uow_factory: UnitOfWorkFactory, notification_id: int, token: str, **kw: object
) -> bool:
    values: dict[str, object] = {
        "outcome": Outcome.IGNORED,
        "reason": "No customer has this email.",
        "points": None,
        "customer_id": None,
        "at": NOW,
    }
    values.update(kw)
    async with uow_factory() as uow:
        done = await uow.newsletter.settle(notification_id, token=token, **values)  # type: ignore[arg-type]
        await uow.commit()
    return done


@pytest.fixture
async def shop(uow_factory: UnitOfWorkFactory) -> MerchantId:
    merchant_id = await new_merchant(uow_factory)
    await set_token(uow_factory, merchant_id, DIGEST_A)
    return merchant_id


# -- the webhook token ---------------------------------------------------------------------


async def test_a_merchant_gets_one_token_and_a_replaced_one_stops_working(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    assert not await set_token(uow_factory, shop, DIGEST_B)  # has one: kept
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.webhook_merchant(DIGEST_A) == shop
        assert await uow.newsletter.webhook_token(shop) == "sealed:aaaa"
    assert await set_token(uow_factory, shop, DIGEST_B, replace=True)
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.webhook_merchant(DIGEST_A) is None
        assert await uow.newsletter.webhook_merchant(DIGEST_B) == shop
        assert await uow.newsletter.webhook_token(shop) == "sealed:bbbb"
    assert await receive(uow_factory, DIGEST_A, note()) == [None]


async def test_concurrent_first_tokens_leave_one(uow_factory: UnitOfWorkFactory) -> None:
    shop = await new_merchant(uow_factory)
    digests = [str(n) * 64 for n in range(5)]
    stored = await asyncio.gather(*(set_token(uow_factory, shop, d) for d in digests))
    assert sum(stored) == 1
    winner = digests[stored.index(True)]
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.webhook_merchant(winner) == shop


async def test_no_two_merchants_share_a_token(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    other = await new_merchant(uow_factory, "other")
    with pytest.raises(UniqueViolation):
        await set_token(uow_factory, other, DIGEST_A)


# -- receiving -----------------------------------------------------------------------------


async def test_a_notification_is_stored_only_for_a_known_token(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    assert await receive(uow_factory, DIGEST_B, note()) == [None]
    campaign = Notification("Žofie@Example.cz", SubscriptionChange.UNSUBSCRIBED, "7", 2**62)
    [first, second] = await receive(uow_factory, DIGEST_A, note(), campaign)
    assert first is not None and second is not None and second > first
    async with uow_factory(read_only=True) as uow:
        latest = await uow.views.recent_notifications(shop, limit=10)
    assert [(r.id, r.notification, r.state, r.outcome) for r in latest] == [
        (second, campaign, NotificationState.PENDING, None),
        (first, note(), NotificationState.PENDING, None),
    ]
    assert latest[0].received_at == NOW


async def test_a_rolled_back_notification_is_not_there(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    async with uow_factory() as uow:
        await uow.newsletter.receive(DIGEST_A, note(), at=NOW)
    assert await claim(uow_factory, "w") == []


async def test_each_merchant_sees_only_its_own_notifications(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    other = await new_merchant(uow_factory, "other")
    await set_token(uow_factory, other, DIGEST_B)
    await receive(uow_factory, DIGEST_A, note("a@example.cz"))
    await receive(uow_factory, DIGEST_B, note("b@example.cz"))
    async with uow_factory(read_only=True) as uow:
        mine = await uow.views.recent_notifications(shop, limit=10)
        theirs = await uow.views.recent_notifications(other, limit=10)
    assert [r.notification.email for r in mine] == ["a@example.cz"]
    assert [r.notification.email for r in theirs] == ["b@example.cz"]


# -- claims --------------------------------------------------------------------------------


async def test_notifications_are_claimed_oldest_first_when_available(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    [late] = await receive(uow_factory, DIGEST_A, note("late@example.cz"), at=NOW + SECOND)
    [early] = await receive(uow_factory, DIGEST_A, note("early@example.cz"))
    assert [c.id for c in await claim(uow_factory, "w")] == [early]
    claimed = await claim(uow_factory, "w2", now=NOW + SECOND)
    assert [(c.id, c.merchant_id, c.notification.email, c.attempts) for c in claimed] == [
        (late, shop, "late@example.cz", 1)
    ]
    assert claimed[0].received_at == NOW + SECOND


async def test_concurrent_claimers_never_get_the_same_notification(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    ids = await receive(uow_factory, DIGEST_A, *(note(f"n{n}@example.cz") for n in range(30)))

    async def claimer(token: str) -> list[int]:
        mine: list[int] = []
        while batch := await claim(uow_factory, token, limit=3):
            mine += [c.id for c in batch]
        return mine

    claimed = await asyncio.gather(*(claimer(f"worker-{n}") for n in range(6)))
    every = [i for mine in claimed for i in mine]
    assert sorted(every) == sorted(i for i in ids if i is not None)
    assert sum(1 for mine in claimed if mine) >= 2


async def test_a_live_claim_is_respected_and_an_expired_one_is_taken_over(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    [notification_id] = await receive(uow_factory, DIGEST_A, note())
    await claim(uow_factory, "dies")
    assert await claim(uow_factory, "other", now=NOW + LEASE - SECOND) == []
    [taken] = await claim(uow_factory, "other", now=NOW + LEASE)
    assert (taken.id, taken.attempts) == (notification_id, 2)
    assert notification_id is not None
    assert not await settle(uow_factory, notification_id, "dies")
    assert await settle(uow_factory, notification_id, "other")


async def test_a_settled_notification_keeps_its_outcome_and_is_not_claimed_again(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    customer = await new_customer(uow_factory, shop, "ann@example.cz")
    [notification_id] = await receive(uow_factory, DIGEST_A, note())
    assert notification_id is not None
    await claim(uow_factory, "w")
    assert await settle(
        uow_factory,
        notification_id,
        "w",
        outcome=Outcome.DEDUCTED,
        reason="Deducted 20.50 points; the reward is released.",
        points=Points(-2050),
        customer_id=customer,
        at=NOW + SECOND,
    )
    assert not await settle(uow_factory, notification_id, "w")  # settled once
    assert await claim(uow_factory, "w2", now=NOW + LEASE * 2) == []
    async with uow_factory(read_only=True) as uow:
        [record] = await uow.views.recent_notifications(shop, limit=1)
        assert await uow.newsletter.next_due() is None
    assert (record.state, record.outcome, record.points, record.customer_id) == (
        NotificationState.PROCESSED,
        Outcome.DEDUCTED,
        Points(-2050),
        customer,
    )
    assert record.reason.startswith("Deducted") and record.processed_at == NOW + SECOND
    assert record.result == "deducted 20.50"


@pytest.mark.parametrize("count_attempt", [True, False])
async def test_a_deferred_notification_waits_with_its_reason(
    uow_factory: UnitOfWorkFactory, shop: MerchantId, count_attempt: bool
) -> None:
    [notification_id] = await receive(uow_factory, DIGEST_A, note())
    assert notification_id is not None
    await claim(uow_factory, "w")
    async with uow_factory() as uow:
        assert await uow.newsletter.defer(
            notification_id,
            token="w",
            until=NOW + 30 * SECOND,
            reason="Ecomail did not answer.",
            count_attempt=count_attempt,
        )
        assert not await uow.newsletter.defer(
            notification_id, token="w", until=NOW, reason="", count_attempt=True
        )
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.next_due() == NOW + 30 * SECOND
        [record] = await uow.views.recent_notifications(shop, limit=1)
    assert (record.state, record.reason, record.result) == (
        NotificationState.PENDING,
        "Ecomail did not answer.",
        "waiting",
    )
    assert await claim(uow_factory, "w2", now=NOW + 29 * SECOND) == []
    [again] = await claim(uow_factory, "w2", now=NOW + 30 * SECOND)
    assert again.attempts == (2 if count_attempt else 1)


async def test_the_next_due_notification_counts_live_claims(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.next_due() is None
    await receive(uow_factory, DIGEST_A, note())
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.next_due() == NOW
    await claim(uow_factory, "w")
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.next_due() == NOW + LEASE


async def test_old_processed_notifications_can_be_purged(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    ids = await receive(uow_factory, DIGEST_A, note("a@example.cz"), note("b@example.cz"))
    await claim(uow_factory, "w")
    assert ids[0] is not None
    await settle(uow_factory, ids[0], "w", at=NOW)
    async with uow_factory() as uow:
        assert await uow.newsletter.purge_processed(before=NOW) == 0
        assert await uow.newsletter.purge_processed(before=NOW + SECOND) == 1
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert [r.id for r in await uow.views.recent_notifications(shop, limit=10)] == [ids[1]]


# -- the reward each customer holds --------------------------------------------------------


async def test_a_customers_reward_hold_is_kept_and_changed(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    ann = await new_customer(uow_factory, shop, "ann@example.cz")
    async with uow_factory() as uow:
        assert await uow.newsletter.reward_hold(shop, ann) == RewardHold()
        await uow.newsletter.save_reward_hold(
            shop, ann, RewardHold(Points(5000), paid_at=NOW), at=NOW
        )
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.newsletter.reward_hold(shop, ann) == RewardHold(Points(5000), NOW)
        await uow.newsletter.save_reward_hold(
            shop, ann, RewardHold(Points(0), NOW, NOW + SECOND), at=NOW + SECOND
        )
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        hold = await uow.newsletter.reward_hold(shop, ann)
    assert hold == RewardHold(Points(0), NOW, NOW + SECOND) and not hold.held


async def test_another_merchants_customer_has_no_hold_to_read_or_write(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    other = await new_merchant(uow_factory, "other")
    ann = await new_customer(uow_factory, shop, "ann@example.cz")
    async with uow_factory() as uow:
        await uow.newsletter.save_reward_hold(shop, ann, RewardHold(Points(100), NOW), at=NOW)
        await uow.newsletter.save_reward_hold(other, ann, RewardHold(Points(999), NOW), at=NOW)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.reward_hold(other, ann) == RewardHold()
        assert (await uow.newsletter.reward_hold(shop, ann)).outstanding == Points(100)


# -- the worker is woken -------------------------------------------------------------------


async def test_a_received_notification_nudges_the_worker(sql_database: Database) -> None:
    queue = FakeJobQueue()
    uow_factory = SqlUnitOfWorkFactory(sql_database, on_outbox_work=queue.nudge_delivery)
    shop = await new_merchant(uow_factory)
    await set_token(uow_factory, shop, DIGEST_A)
    assert queue.nudges == []
    await receive(uow_factory, DIGEST_B, note())  # unknown token: nothing stored, no nudge
    assert queue.nudges == []
    await receive(uow_factory, DIGEST_A, note())
    assert queue.nudges == [None]
