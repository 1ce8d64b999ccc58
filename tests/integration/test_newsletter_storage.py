"""The newsletter storage contract (webhook tokens, received notifications and their claims,
the reward each customer holds), on the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.tables.newsletter import newsletter_notifications
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import Term
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
from ellity.domain.model.reason import Reason
from ellity.ports.storage import KeptSignup, UniqueViolation, UnitOfWorkFactory
from tests.fakes import FakeJobQueue, InMemoryStore

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
DIGEST_A, DIGEST_B = "a" * 64, "b" * 64
SUB = SubscriptionChange.SUBSCRIBED
UNSUB = SubscriptionChange.UNSUBSCRIBED


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
        "reason": Reason("No customer has this email."),
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
        reason=Reason("Deducted %(taken)s points; the reward is released.", taken=Points(2050)),
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
    assert record.reason.english() == "Deducted 20.50 points; the reward is released."
    assert record.processed_at == NOW + SECOND
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
            reason=Reason("Ecomail could not confirm it yet: %(why)s", why="no answer"),
            count_attempt=count_attempt,
        )
        assert not await uow.newsletter.defer(
            notification_id, token="w", until=NOW, reason=Reason.stored(""), count_attempt=True
        )
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.next_due() == NOW + 30 * SECOND
        [record] = await uow.views.recent_notifications(shop, limit=1)
    assert (record.state, record.reason.english(), record.result) == (
        NotificationState.PENDING,
        "Ecomail could not confirm it yet: no answer",
        "waiting",
    )
    assert await claim(uow_factory, "w2", now=NOW + 29 * SECOND) == []
    [again] = await claim(uow_factory, "w2", now=NOW + 30 * SECOND)
    assert again.attempts == (2 if count_attempt else 1)


#: A reason with every kind of value, two clauses joined by a colon and a third sentence.
EVERY_KIND = Reason(
    "Own (since %(since)s, list %(list)s, %(days)s days, %(seconds)s s, %(status)s)",
    since=datetime(2024, 3, 10, 9, 30, 15, tzinfo=UTC),
    list="0042",
    days=30,
    seconds=2.5,
    status=Term("unsubscribed"),
).completed_by(Reason("Paid %(points)s points.", points=Points(125050))) + Reason(
    "Ecomail refused it (%(why)s): nothing changed.", why="Žluťoučký „kůň“"
)


async def test_a_settled_reason_is_read_back_with_its_clauses_and_values(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    [notification_id] = await receive(uow_factory, DIGEST_A, note())
    assert notification_id is not None
    await claim(uow_factory, "w")
    assert await settle(uow_factory, notification_id, "w", reason=EVERY_KIND)
    async with uow_factory(read_only=True) as uow:
        [record] = await uow.views.recent_notifications(shop, limit=1)
    assert record.reason == EVERY_KIND
    assert record.reason.english() == (
        "Own (since 2024-03-10 09:30:15 UTC, list 0042, 30 days, 2.5 s, unsubscribed): paid"
        " 1,250.50 points. Ecomail refused it (Žluťoučký „kůň“): nothing changed."
    )
    assert await stored_text(uow_factory, notification_id) == EVERY_KIND.english()


async def stored_text(uow_factory: UnitOfWorkFactory, notification_id: int) -> str | None:
    """The English text in the notification's ``reason`` (logs, the CLI)."""
    if isinstance(uow_factory, SqlUnitOfWorkFactory):
        n = newsletter_notifications.c
        async with uow_factory.database.engine.connect() as conn:
            query = sa.select(n.reason).where(n.id == notification_id)
            text: str | None = (await conn.execute(query)).scalar_one()
            return text
    return _store_of(uow_factory).state.notifications[notification_id].reason


async def forget_reason_parts(uow_factory: UnitOfWorkFactory, notification_id: int) -> None:
    """The notification as rows stored before reasons were kept as clauses: English only."""
    if isinstance(uow_factory, SqlUnitOfWorkFactory):
        n = newsletter_notifications.c
        async with uow_factory.database.write_engine.begin() as conn:
            await conn.execute(
                newsletter_notifications.update()
                .where(n.id == notification_id)
                .values(reason_parts=None)
            )
        return
    _store_of(uow_factory).state.notifications[notification_id].reason_parts = None


def _store_of(uow_factory: UnitOfWorkFactory) -> InMemoryStore:
    store = getattr(uow_factory, "__self__", None)
    assert isinstance(store, InMemoryStore)
    return store


async def test_a_reason_stored_before_its_clauses_were_kept_is_its_english_text(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    [notification_id] = await receive(uow_factory, DIGEST_A, note())
    assert notification_id is not None
    await claim(uow_factory, "w")
    assert await settle(uow_factory, notification_id, "w", reason=EVERY_KIND)
    await forget_reason_parts(uow_factory, notification_id)
    async with uow_factory(read_only=True) as uow:
        [record] = await uow.views.recent_notifications(shop, limit=1)
    assert record.reason == Reason.stored(EVERY_KIND.english())
    assert [part.translated for part in record.reason.parts] == [False]


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


# -- unsubscriptions by email --------------------------------------------------------------


async def unsubscribed_since(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    email: str,
    since: datetime,
    *,
    until: datetime | None = None,
) -> bool:
    async with uow_factory(read_only=True) as uow:
        return await uow.newsletter.unsubscribed_since(merchant_id, email, since, until=until)


async def test_an_unsubscription_received_since_an_instant_is_found_by_email_in_any_case(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    await receive(uow_factory, DIGEST_A, note("Ann@Example.CZ", UNSUB), at=NOW)
    await receive(uow_factory, DIGEST_A, note("ann@example.cz"), at=NOW + 5 * SECOND)
    assert await unsubscribed_since(uow_factory, shop, "ann@example.cz", NOW)  # at counts
    assert await unsubscribed_since(uow_factory, shop, "ANN@example.cz", NOW - SECOND)
    assert not await unsubscribed_since(uow_factory, shop, "ann@example.cz", NOW + SECOND)
    assert not await unsubscribed_since(uow_factory, shop, "ben@example.cz", NOW - SECOND)


async def test_an_unsubscription_received_after_until_does_not_count(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    await receive(uow_factory, DIGEST_A, note("ann@example.cz", UNSUB), at=NOW)
    since = NOW - 10 * SECOND
    assert await unsubscribed_since(uow_factory, shop, "ann@example.cz", since, until=NOW)
    assert not await unsubscribed_since(
        uow_factory, shop, "ann@example.cz", since, until=NOW - SECOND
    )


async def test_subscriptions_and_other_merchants_unsubscriptions_do_not_count(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    other = await new_merchant(uow_factory, "other")
    await set_token(uow_factory, other, DIGEST_B)
    await receive(uow_factory, DIGEST_A, note("ann@example.cz", SUB))
    await receive(uow_factory, DIGEST_B, note("ann@example.cz", UNSUB))
    assert not await unsubscribed_since(uow_factory, shop, "ann@example.cz", NOW - SECOND)
    assert await unsubscribed_since(uow_factory, other, "ann@example.cz", NOW - SECOND)


async def test_an_enqueued_unsubscription_counts_too(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    async with uow_factory() as uow:
        await uow.newsletter.enqueue(
            shop, note("Ann@example.cz", UNSUB), received_at=NOW, at=NOW + SECOND
        )
        await uow.commit()
    assert await unsubscribed_since(uow_factory, shop, "ann@example.cz", NOW)


async def test_the_unsubscription_look_up_searches_the_email_index(clean_sqlite: Database) -> None:
    """SQLite's plan for ``unsubscribed_since``: a search of (merchant_id, email_key), never a
    scan of the merchant's notifications."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "newsletter_notifications" in statement:
            captured.append((statement, parameters))

    engine = clean_sqlite.engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        async with SqlUnitOfWorkFactory(clean_sqlite)(read_only=True) as uow:
            await uow.newsletter.unsubscribed_since(MerchantId(1), "ann@example.cz", NOW)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(statement, parameters)] = captured
    async with clean_sqlite.engine.connect() as conn:
        plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)).all()
    details = " | ".join(str(row[-1]) for row in plan)
    searched = "ix_newsletter_notifications_merchant_email_key_id (merchant_id=? AND email_key=?)"
    assert searched in details, details


# -- notifications stored for the worker --------------------------------------------------


async def test_an_enqueued_notification_is_pending_with_its_received_instant(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    async with uow_factory() as uow:
        first = await uow.newsletter.enqueue(
            shop, note(), received_at=NOW - timedelta(days=3), at=NOW + SECOND
        )
        second = await uow.newsletter.enqueue(shop, note("ben@example.cz"), received_at=NOW, at=NOW)
        await uow.commit()
    assert second > first
    async with uow_factory(read_only=True) as uow:
        assert await uow.newsletter.next_due() == NOW
    assert [c.id for c in await claim(uow_factory, "w")] == [second]
    [claimed] = await claim(uow_factory, "w", now=NOW + SECOND)
    assert (claimed.id, claimed.merchant_id, claimed.notification) == (first, shop, note())
    assert (claimed.received_at, claimed.attempts) == (NOW - timedelta(days=3), 1)


async def test_an_enqueued_notification_nudges_the_worker(sql_database: Database) -> None:
    queue = FakeJobQueue()
    uow_factory = SqlUnitOfWorkFactory(sql_database, on_outbox_work=queue.nudge_delivery)
    shop = await new_merchant(uow_factory)
    async with uow_factory() as uow:
        await uow.newsletter.enqueue(shop, note(), received_at=NOW, at=NOW)
        await uow.commit()
    assert queue.nudges == [None]


# -- sign-ups before the customer exists ---------------------------------------------------


async def keep(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    email: str = "zoe@example.cz",
    *,
    confirmed_at: datetime = NOW,
    list_id: str = "7",
    notification_id: int | None = 1,
) -> None:
    async with uow_factory() as uow:
        await uow.newsletter.keep_signup(
            merchant_id,
            email,
            list_id,
            received_at=confirmed_at - SECOND,
            confirmed_at=confirmed_at,
            notification_id=notification_id,
        )
        await uow.commit()


async def take(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    email: str = "zoe@example.cz",
    *,
    since: datetime = NOW - timedelta(days=30),
    at: datetime = NOW + timedelta(days=1),
) -> KeptSignup | None:
    async with uow_factory() as uow:
        taken = await uow.newsletter.take_signup(merchant_id, email, since=since, at=at)
        await uow.commit()
    return taken


async def test_a_kept_sign_up_is_taken_once_by_email_in_any_case(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    await keep(uow_factory, shop, "Zoe@Example.cz", notification_id=41)
    assert await take(uow_factory, shop, "ben@example.cz") is None
    assert await take(uow_factory, shop, "zoe@EXAMPLE.cz") == KeptSignup(
        email="Zoe@Example.cz",
        list_id="7",
        received_at=NOW - SECOND,
        confirmed_at=NOW,
        notification_id=41,
    )
    assert await take(uow_factory, shop, "zoe@example.cz") is None  # used


async def test_only_a_sign_up_confirmed_since_the_limit_is_taken(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    await keep(uow_factory, shop)
    assert await take(uow_factory, shop, since=NOW + SECOND) is None
    assert await take(uow_factory, shop, since=NOW) is not None  # confirmed at the limit


async def test_a_newer_confirmation_refreshes_the_sign_up_and_an_older_one_does_not(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    await keep(uow_factory, shop, notification_id=1)
    assert await take(uow_factory, shop) is not None
    later = NOW + timedelta(days=40)
    await keep(
        uow_factory, shop, "ZOE@example.cz", confirmed_at=later, list_id="8", notification_id=2
    )
    await keep(uow_factory, shop, confirmed_at=NOW + SECOND, notification_id=3)  # older: ignored
    taken = await take(uow_factory, shop, since=later, at=later)  # unused again
    assert taken == KeptSignup("ZOE@example.cz", "8", later - SECOND, later, 2)


async def test_concurrent_takers_of_a_sign_up_get_it_once(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    await keep(uow_factory, shop)
    taken = await asyncio.gather(*(take(uow_factory, shop) for _ in range(5)))
    assert sum(t is not None for t in taken) == 1


async def test_each_merchant_keeps_its_own_sign_ups(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    other = await new_merchant(uow_factory, "other")
    await keep(uow_factory, shop, notification_id=1)
    await keep(uow_factory, other, notification_id=2)
    mine = await take(uow_factory, shop)
    theirs = await take(uow_factory, other)
    assert mine is not None and mine.notification_id == 1
    assert theirs is not None and theirs.notification_id == 2


async def test_old_sign_ups_are_purged(uow_factory: UnitOfWorkFactory, shop: MerchantId) -> None:
    await keep(uow_factory, shop, "old@example.cz", confirmed_at=NOW - SECOND)
    await keep(uow_factory, shop, "new@example.cz", confirmed_at=NOW)
    async with uow_factory() as uow:
        assert await uow.newsletter.purge_signups(before=NOW) == 1
        await uow.commit()
    since = NOW - timedelta(days=1)
    assert await take(uow_factory, shop, "old@example.cz", since=since) is None
    assert await take(uow_factory, shop, "new@example.cz", since=since) is not None


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


async def test_a_claim_is_renewed_by_its_holder_and_a_dropped_one_is_due_at_once_uncounted(
    uow_factory: UnitOfWorkFactory, shop: MerchantId
) -> None:
    [first, second] = await receive(uow_factory, DIGEST_A, note("a@example.cz"), note("b@x.cz"))
    await claim(uow_factory, "alive")
    async with uow_factory() as uow:
        assert await uow.newsletter.renew_claim(token="alive", until=NOW + 2 * LEASE) == 2
        assert await uow.newsletter.renew_claim(token="nobody", until=NOW + 9 * LEASE) == 0
        await uow.commit()
    assert await claim(uow_factory, "other", now=NOW + LEASE) == []
    assert await settle(uow_factory, first, "alive")
    async with uow_factory() as uow:
        assert await uow.newsletter.drop_claim(token="alive") == 1
        await uow.commit()
    [taken] = await claim(uow_factory, "other")
    assert (taken.id, taken.attempts) == (second, 1)
