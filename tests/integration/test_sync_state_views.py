"""What the customer's page and the integration page read of the Ecomail sync: a customer's
contact sync row, their latest events, the merchant's events sent last; on the in-memory
fake, SQLite and PostgreSQL, never another merchant's rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ellity.domain.model.contact_state import SubscriptionStatus
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import OutboxStatus, Payload, Topic
from ellity.domain.services import nightly
from ellity.domain.services.points import earn_points
from ellity.ports.storage import ContactSyncRow, SentEvent, UnitOfWorkFactory
from tests.fakes import FakeClock
from tests.integration.test_contact_sync_storage import (
    add_customers,
    add_merchant,
    claim,
    connect,
    fail,
    mark,
    settle,
)

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
EVENT = Topic.ECOMAIL_EVENT.value
FAR = datetime(2100, 1, 1, tzinfo=UTC)


async def row_of(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId
) -> ContactSyncRow | None:
    async with uow_factory(read_only=True) as uow:
        return await uow.views.contact_sync_row(merchant_id, customer_id)


async def events_of(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_id: CustomerId,
    *,
    limit: int = 10,
) -> list[SentEvent]:
    async with uow_factory(read_only=True) as uow:
        return await uow.views.customer_events(merchant_id, customer_id, limit=limit)


async def sent(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *, limit: int = 100
) -> list[SentEvent]:
    async with uow_factory(read_only=True) as uow:
        return await uow.views.sent_events(merchant_id, limit=limit)


def event(n: int, label: str = "credit") -> Payload:
    return {"label": label, "value": {"n": n, "note": "žluťoučký"}}


async def record(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_id: CustomerId,
    topic: str,
    payload: Payload,
    *,
    at: datetime,
) -> int:
    async with uow_factory() as uow:
        item_id = await uow.outbox.add(merchant_id, topic, payload, customer_id=customer_id, at=at)
        await uow.commit()
    return item_id


async def deliver(
    uow_factory: UnitOfWorkFactory, item_ids: list[int], *, at: datetime, skip: bool = False
) -> None:
    """Settles each item in turn, a minute apart from ``at`` on (the others are given back)."""
    for n, item_id in enumerate(item_ids):
        async with uow_factory() as uow:
            token = f"deliver-{item_id}"
            await uow.outbox.claim(token=token, now=FAR, lease=MINUTE, limit=1000)
            when = at + n * MINUTE
            if skip:
                await uow.outbox.mark_skipped(item_id, token=token, reason="gone", at=when)
            else:
                await uow.outbox.mark_delivered(item_id, token=token, at=when)
            await uow.outbox.drop_claim(token=token)
            await uow.commit()


# -- the contact sync row -----------------------------------------------------------------


async def test_a_customer_never_marked_has_no_contact_sync_row(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    assert await row_of(uow_factory, shop, ann) is None


async def test_the_contact_sync_row_tells_what_the_sync_did_and_the_status_last_seen(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann, bob)
    assert await row_of(uow_factory, shop, ann) == ContactSyncRow(
        in_list=False,
        added_at=None,
        synced_at=None,
        pending_since=NOW,
        last_error=None,
        failed_at=None,
        unsubscribe_due=False,
        list_status=None,
        list_status_at=None,
    )
    await claim(uow_factory, shop, "w")
    written = NOW + MINUTE
    await settle(uow_factory, shop, [ann], "w", added=[ann], at=written)
    await fail(uow_factory, shop, [bob], "w", error="Ecomail refused bob", at=written)
    seen = NOW + 2 * MINUTE
    async with uow_factory() as uow:
        await uow.contacts.record_status(shop, ann, SubscriptionStatus.UNSUBSCRIBED, at=seen)
        await uow.commit()

    ann_row, bob_row = await row_of(uow_factory, shop, ann), await row_of(uow_factory, shop, bob)
    assert ann_row is not None and bob_row is not None
    assert (ann_row.in_list, ann_row.added_at, ann_row.synced_at, ann_row.pending_since) == (
        True,
        written,
        written,
        None,
    )
    assert (ann_row.list_status, ann_row.list_status_at) == (SubscriptionStatus.UNSUBSCRIBED, seen)
    assert (bob_row.last_error, bob_row.failed_at, bob_row.in_list) == (
        "Ecomail refused bob",
        written,
        False,
    )
    assert bob_row.list_status is None


async def test_a_status_is_recorded_only_for_a_customer_with_a_contact_row(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    async with uow_factory() as uow:
        await uow.contacts.record_status(shop, ann, SubscriptionStatus.SUBSCRIBED, at=NOW)
        await uow.commit()
    assert await row_of(uow_factory, shop, ann) is None


# -- the customer's latest events -----------------------------------------------------------


async def test_a_customers_latest_events_are_theirs_newest_first_whatever_their_status(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    ids = []
    for n in range(12):
        at = NOW + n * MINUTE
        ids.append(await record(uow_factory, shop, ann, EVENT, event(n), at=at))
        await record(uow_factory, shop, ann, Topic.POINTS_CHANGED_EMAIL.value, {"n": n}, at=at)
        await record(uow_factory, shop, bob, EVENT, event(100 + n), at=at)
    await deliver(uow_factory, ids[-2:-1], at=NOW + timedelta(hours=1))
    await deliver(uow_factory, ids[-3:-2], at=NOW + timedelta(hours=1), skip=True)

    found = await events_of(uow_factory, shop, ann)

    assert [e.id for e in found] == list(reversed(ids[2:]))
    assert [e.value for e in found] == [{"n": n, "note": "žluťoučký"} for n in range(11, 1, -1)]
    assert {e.label for e in found} == {"credit"}
    assert {(e.customer_id, e.email) for e in found} == {(ann, "ann@example.cz")}
    assert [e.status for e in found[:3]] == [
        OutboxStatus.PENDING,
        OutboxStatus.DELIVERED,
        OutboxStatus.SKIPPED,
    ]
    assert found[0].created_at == NOW + 11 * MINUTE and found[0].delivered_at is None
    assert found[1].delivered_at == NOW + timedelta(hours=1)
    assert [e.error for e in found[:3]] == [None, None, "gone"]  # why it was skipped
    assert [e.id for e in await events_of(uow_factory, shop, ann, limit=3)] == ids[-1:-4:-1]


async def test_an_expiry_event_shows_the_value_built_from_its_ledger_entry(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await earn_points(
        shop, ann, Points.parse("12.50"), order_ref="o-1", uow=uow_factory(), clock=FakeClock(NOW)
    )
    a_year_later = NOW + timedelta(days=400)
    await nightly.expire_points(shop, uow_factory=uow_factory, clock=FakeClock(a_year_later))

    expired, earned = await events_of(uow_factory, shop, ann)

    assert expired.label == earned.label == "credit"
    assert isinstance(expired.value, dict) and isinstance(earned.value, dict)
    assert (expired.value["reason"], expired.value["change"], expired.value["balance"]) == (
        "expire",
        "-12.50",
        "0.00",
    )
    assert (earned.value["change"], earned.value["order_ref"]) == ("12.50", "o-1")
    assert expired.created_at == a_year_later


# -- the merchant's events sent last ----------------------------------------------------------


async def test_the_events_sent_last_are_the_delivered_ones_newest_delivery_first(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    first = await record(uow_factory, shop, ann, EVENT, event(1), at=NOW)
    second = await record(uow_factory, shop, bob, EVENT, event(2, "pin"), at=NOW + MINUTE)
    await record(uow_factory, shop, ann, EVENT, event(3), at=NOW)  # still pending
    skipped = await record(uow_factory, shop, bob, EVENT, event(4), at=NOW)
    email = await record(uow_factory, shop, ann, Topic.PIN_ISSUED_EMAIL.value, {}, at=NOW)
    # the later item is delivered first: the order is by delivery
    await deliver(uow_factory, [second, first, email], at=NOW + timedelta(hours=1))
    await deliver(uow_factory, [skipped], at=NOW + timedelta(hours=2), skip=True)

    found = await sent(uow_factory, shop)

    assert [(e.id, e.customer_id, e.email, e.label) for e in found] == [
        (first, ann, "ann@example.cz", "credit"),
        (second, bob, "bob@example.cz", "pin"),
    ]
    assert [e.delivered_at for e in found] == [
        NOW + timedelta(minutes=61),
        NOW + timedelta(hours=1),
    ]
    assert {e.status for e in found} == {OutboxStatus.DELIVERED}
    assert [e.id for e in await sent(uow_factory, shop, limit=1)] == [first]


# -- tenant isolation ---------------------------------------------------------------------------


async def test_another_merchants_contacts_and_events_are_never_read(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    other = await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    await connect(uow_factory, other)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    [zoe] = await add_customers(uow_factory, other, "zoe@example.cz", first=1)
    await mark(uow_factory, other, zoe)
    theirs = await record(uow_factory, other, zoe, EVENT, event(1), at=NOW)
    mine = await record(uow_factory, shop, ann, EVENT, event(2), at=NOW)
    await deliver(uow_factory, [theirs, mine], at=NOW)

    assert await row_of(uow_factory, shop, zoe) is None
    assert await row_of(uow_factory, other, zoe) is not None
    assert await events_of(uow_factory, shop, zoe) == []
    assert [e.id for e in await sent(uow_factory, shop)] == [mine]
    assert [e.id for e in await sent(uow_factory, other)] == [theirs]
