"""System emails are recorded in the outbox in the same transaction as the change that causes
them, only while the merchant's switch is on and only for customers with an email."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ellity.domain.model.errors import InsufficientPoints
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services.customers import CustomerInput, regenerate_pin, update_customer
from ellity.domain.services.merchants import change_settings
from ellity.domain.services.points import (
    adjust_points,
    earn_points,
    expire_due_points,
    spend_points,
)
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakeRandom, InMemoryStore, OutboxRecord
from tests.unit.conftest import NewCustomer, Upsert

P = Points.parse


def outbox(store: InMemoryStore) -> list[OutboxRecord]:
    return sorted(store.state.outbox.values(), key=lambda record: record.id)


def topics(store: InMemoryStore) -> list[tuple[str, int | None]]:
    return [(record.topic, record.customer_id) for record in outbox(store)]


@pytest.fixture
async def emails_on(merchant: Merchant, uow_factory: UnitOfWorkFactory) -> Merchant:
    """Anna's shop with "Send emails from Ellity" switched on."""
    return await change_settings(
        merchant.slug, {"send_system_emails": "true"}, clock=FakeClock(), uow=uow_factory()
    )


async def test_earning_records_the_change_the_new_balance_and_the_next_expiry(
    emails_on: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(emails_on, email="ann@example.cz", registered=True)
    commits = store.commits
    await earn_points(
        emails_on.id, ann.id, P("120.50"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    assert store.commits == commits + 1  # one transaction for the points and the email
    [record] = outbox(store)
    assert (record.topic, record.customer_id, record.status) == (
        "email.points_changed",
        ann.id,
        "pending",
    )
    assert record.available_at == clock.now()
    assert record.payload == (
        '{"kind": "earn", "change": 12050, "balance": 12050, "next_expiry_on": "2025-03-10",'
        ' "next_expiry_points": 12050, "at": "2024-03-10T09:00:00+00:00"}'
    )


async def test_spending_and_adjusting_each_record_an_email(
    emails_on: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(emails_on, email="ann@example.cz", registered=True)
    await earn_points(
        emails_on.id, ann.id, P("100"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    await spend_points(emails_on.id, ann.id, P("30"), uow=uow_factory(), clock=clock)
    await adjust_points(emails_on.id, ann.id, P("-5"), note="typo", uow=uow_factory(), clock=clock)
    payloads = [json.loads(record.payload) for record in outbox(store)]
    assert [(p["kind"], p["change"], p["balance"]) for p in payloads] == [
        ("earn", 10000, 10000),
        ("spend", -3000, 7000),
        ("adjust", -500, 6500),
    ]


async def test_the_referrer_gets_an_email_about_the_referral_bonus(
    emails_on: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(emails_on, email="ann@example.cz", registered=True)
    bob = await new_customer(
        emails_on, email="bob@example.cz", registered=True, referred_by=ann.referral_code
    )
    await earn_points(
        emails_on.id, bob.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    # the referrer's (lower id) first: one transaction takes customers in id order
    assert topics(store) == [("email.points_changed", ann.id), ("email.points_changed", bob.id)]
    bonus = json.loads(outbox(store)[0].payload)
    assert (bonus["kind"], bonus["change"], bonus["balance"]) == ("referral_bonus", 5000, 5000)


async def test_with_the_switch_off_nothing_is_recorded(
    merchant: Merchant,
    new_customer: NewCustomer,
    clock: FakeClock,
    rng: FakeRandom,
    store: InMemoryStore,
) -> None:
    assert merchant.settings.send_system_emails is False
    ann = await new_customer(merchant, email="ann@example.cz")  # anonymous: has a PIN
    await earn_points(
        merchant.id, ann.id, P("10"), order_ref="o-1", uow=store.unit_of_work(), clock=clock
    )
    await regenerate_pin(merchant.id, ann.id, uow=store.unit_of_work(), clock=clock, rng=rng)
    assert outbox(store) == []


async def test_a_customer_without_an_email_gets_no_email(
    emails_on: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    walk_in = await new_customer(emails_on, shop_customer_id="shop-7")  # anonymous, no email
    await earn_points(
        emails_on.id, walk_in.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    assert outbox(store) == []


async def test_a_refused_spend_and_a_repeated_order_record_nothing(
    emails_on: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(emails_on, email="ann@example.cz", registered=True)
    await earn_points(
        emails_on.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    with pytest.raises(InsufficientPoints):
        await spend_points(emails_on.id, ann.id, P("11"), uow=uow_factory(), clock=clock)
    await earn_points(
        emails_on.id, ann.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    assert len(outbox(store)) == 1


async def test_the_set_based_expiry_records_a_points_changed_email_per_customer_with_an_email(
    emails_on: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(emails_on, email="ann@example.cz", registered=True)
    shop_only = await new_customer(emails_on, shop_customer_id="s-1", registered=True)
    for n, customer in enumerate((ann, shop_only)):
        await earn_points(
            emails_on.id, customer.id, P("10"), order_ref=f"o-{n}", uow=uow_factory(), clock=clock
        )
    clock.advance(days=800)
    assert await expire_due_points(emails_on.id, uow_factory=uow_factory, clock=clock) == 2
    *_, expired = outbox(store)  # Ann's earn, then her expiry; no email without an address
    assert len(outbox(store)) == 2
    assert (expired.topic, expired.customer_id) == ("email.points_changed", ann.id)
    assert expired.entry_id is not None  # a reference to her expiry entry: built when claimed
    async with uow_factory() as uow:
        [claimed] = [
            item
            for item in await uow.outbox.claim(
                token="t", now=clock.now(), lease=timedelta(minutes=1), limit=10
            )
            if item.id == expired.id
        ]
    assert claimed.payload == {
        "kind": "expire",
        "change": -1000,
        "balance": 0,
        "next_expiry_on": None,
        "next_expiry_points": None,
        "at": clock.now().isoformat(),
    }


async def test_a_new_anonymous_customer_with_an_email_gets_a_pin_email_without_the_pin_stored(
    emails_on: Merchant, new_customer: NewCustomer, store: InMemoryStore
) -> None:
    ann = await new_customer(emails_on, email="ann@example.cz")
    await new_customer(emails_on, email="reg@example.cz", registered=True)
    [record] = outbox(store)
    assert (record.topic, record.customer_id) == ("email.pin_issued", ann.id)
    assert record.payload == '{"reason": "created"}'
    assert ann.pin is not None and ann.pin not in record.payload


async def test_regenerating_a_pin_and_becoming_anonymous_each_record_a_pin_email(
    emails_on: Merchant,
    new_customer: NewCustomer,
    clock: FakeClock,
    rng: FakeRandom,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(emails_on, email="ann@example.cz", registered=True)
    await update_customer(
        emails_on.id,
        ann.id,
        CustomerInput(registered=False),
        uow=store.unit_of_work(),
        clock=clock,
        rng=rng,
    )
    await regenerate_pin(emails_on.id, ann.id, uow=store.unit_of_work(), clock=clock, rng=rng)
    await update_customer(  # already anonymous: no new PIN, no email
        emails_on.id,
        ann.id,
        CustomerInput(registered=False),
        uow=store.unit_of_work(),
        clock=clock,
        rng=rng,
    )
    assert [record.payload for record in outbox(store)] == [
        '{"reason": "anonymous"}',
        '{"reason": "regenerated"}',
    ]


async def test_an_email_change_gives_an_anonymous_customer_a_new_pin_and_its_email(
    emails_on: Merchant,
    new_customer: NewCustomer,
    clock: FakeClock,
    rng: FakeRandom,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(emails_on, email="ann@exmaple.cz")  # anonymous: has a PIN
    bob = await new_customer(emails_on, email="bob@exmaple.cz", registered=True)
    cyril = await new_customer(emails_on, email="Cyril@Example.cz")
    dana = await new_customer(emails_on, email="dana@exmaple.cz", registered=True)
    before = len(outbox(store))

    async def change(customer_id: CustomerId | None, **fields: object) -> str | None:
        assert customer_id is not None
        view = await update_customer(
            emails_on.id,
            customer_id,
            CustomerInput(**fields),  # type: ignore[arg-type]
            uow=store.unit_of_work(),
            clock=clock,
            rng=rng,
        )
        return view.customer.pin

    assert await change(ann.id, email="ann@example.cz") not in (None, ann.pin)
    assert await change(bob.id, email="bob@example.cz") is None  # registered: no PIN
    assert await change(cyril.id, email="cyril@example.cz") == cyril.pin  # the same address
    # made anonymous while moving: one new PIN
    assert await change(dana.id, email="dana@example.cz", registered=False) is not None
    assert [(r.topic, r.customer_id, r.payload) for r in outbox(store)[before:]] == [
        ("email.pin_issued", ann.id, '{"reason": "regenerated"}'),
        ("email.pin_issued", dana.id, '{"reason": "anonymous"}'),
    ]


async def test_the_shop_moving_an_anonymous_customer_to_another_email_gives_a_new_pin(
    emails_on: Merchant, new_customer: NewCustomer, upsert: Upsert, store: InMemoryStore
) -> None:
    ann = await new_customer(emails_on, email="ann@exmaple.cz", shop_customer_id="s-1")
    before = len(outbox(store))
    result = await upsert(emails_on, email="ann@example.cz", shop_customer_id="s-1")
    assert result.view.customer.id == ann.id
    assert result.view.customer.pin not in (None, ann.pin)
    assert [(r.topic, r.payload) for r in outbox(store)[before:]] == [
        ("email.pin_issued", '{"reason": "regenerated"}')
    ]
