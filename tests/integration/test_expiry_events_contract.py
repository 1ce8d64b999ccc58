"""What the nightly expiry tells the outside world, byte for byte, on the in-memory fake,
SQLite and PostgreSQL: the ``credit`` event's value as it goes to Ecomail (the JSON text of
the tracker event's ``value``) and the "points changed" email's payload (which the email's
values are read from), for customers who keep points after the expiry and who keep nothing,
with amounts under ten hundredths."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import Topic
from ellity.domain.services import nightly
from ellity.domain.services.points import earn_points, spend_points
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock

PRAGUE = ZoneInfo("Europe/Prague")
T0 = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)  # points earned now last through 10 March 2025
AT = datetime(2025, 3, 11, 2, 0, 0, 123456, tzinfo=PRAGUE).astimezone(UTC)
FAR = datetime(2100, 1, 1, tzinfo=UTC)


async def _shop(uow_factory: UnitOfWorkFactory) -> tuple[MerchantId, list[CustomerId]]:
    async with uow_factory() as uow:
        settings = MerchantSettings(name="Anna", send_system_emails=True)
        merchant = await uow.merchants.add(Merchant(slug="anna", settings=settings), at=T0)
        assert merchant.id is not None
        await uow.ecomail.save_key(merchant.id, encrypted="sealed", hint="1234", at=T0)
        await uow.ecomail.activate(merchant.id, list_id="7", list_name="List", at=T0)
        ids = []
        for n, email in enumerate(["ann@example.cz", "bob@example.cz", "cid@example.cz", None]):
            customer = await uow.customers.add(
                Customer(
                    merchant_id=merchant.id,
                    referral_code=f"ANN{n:05d}",
                    created_at=T0,
                    updated_at=T0,
                    email=email,
                    shop_customer_id=None if email else f"shop-{n}",
                )
            )
            assert customer.id is not None
            ids.append(customer.id)
        await uow.commit()
    return merchant.id, ids


async def test_the_expiry_events_and_emails_read_exactly_as_they_always_have(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id, [ann, bob, cid, no_email] = await _shop(uow_factory)
    later = T0 + timedelta(days=40)
    earned = [
        (ann, "1250.05", T0),
        (ann, "0.07", later),  # left after the expiry, with the next lot of the same day
        (ann, "3", later + timedelta(hours=1)),
        (bob, "0.50", T0),  # all of it expires: nothing left, nothing next
        (cid, "20", T0),  # a spend takes most of it first; 0.05 expires
        (cid, "12.10", later),
        (no_email, "5", T0),
    ]
    for n, (customer_id, points, at) in enumerate(earned):
        await earn_points(
            merchant_id,
            customer_id,
            Points.parse(points),
            order_ref=f"o-{n}",
            uow=uow_factory(),
            clock=FakeClock(at),
        )
    await spend_points(
        merchant_id,
        cid,
        Points.parse("19.95"),
        order_ref="s-1",
        uow=uow_factory(),
        clock=FakeClock(later + timedelta(days=1)),
    )

    result = await nightly.expire_points(merchant_id, uow_factory=uow_factory, clock=FakeClock(AT))

    assert result.customers == 4
    async with uow_factory() as uow:  # peeked at: rolled back
        claimed = await uow.outbox.claim(
            token="peek", now=FAR, lease=timedelta(minutes=1), limit=100
        )
    found = sorted(
        (item.topic, item.customer_id, item.created_at, item.payload)
        for item in claimed
        if item.created_at == AT
    )
    text = [
        (
            topic,
            customer_id,
            json.dumps(
                payload["value"] if topic == Topic.ECOMAIL_EVENT.value else payload,
                ensure_ascii=False,
                separators=(",", ":"),
            ),
        )
        for topic, customer_id, _, payload in found
    ]
    when = '"2025-03-11T01:00:00.123456+00:00"'
    assert text == [
        (
            Topic.ECOMAIL_EVENT.value,
            ann,
            '{"change":"-1250.05","balance":"3.07","reason":"expire","note":null,'
            f'"order_ref":null,"at":{when},"next_expiration_date":"2025-04-19",'
            '"next_expiration_points":"3.07"}',
        ),
        (
            Topic.ECOMAIL_EVENT.value,
            bob,
            '{"change":"-0.50","balance":"0.00","reason":"expire","note":null,'
            f'"order_ref":null,"at":{when},"next_expiration_date":null,'
            '"next_expiration_points":null}',
        ),
        (
            Topic.ECOMAIL_EVENT.value,
            cid,
            '{"change":"-0.05","balance":"12.10","reason":"expire","note":null,'
            f'"order_ref":null,"at":{when},"next_expiration_date":"2025-04-19",'
            '"next_expiration_points":"12.10"}',
        ),
        (
            Topic.POINTS_CHANGED_EMAIL.value,
            ann,
            '{"kind":"expire","change":-125005,"balance":307,"next_expiry_on":"2025-04-19",'
            f'"next_expiry_points":307,"at":{when}}}',
        ),
        (
            Topic.POINTS_CHANGED_EMAIL.value,
            bob,
            '{"kind":"expire","change":-50,"balance":0,"next_expiry_on":null,'
            f'"next_expiry_points":null,"at":{when}}}',
        ),
        (
            Topic.POINTS_CHANGED_EMAIL.value,
            cid,
            '{"kind":"expire","change":-5,"balance":1210,"next_expiry_on":"2025-04-19",'
            f'"next_expiry_points":1210,"at":{when}}}',
        ),
    ]
    assert all(payload.get("label", "credit") == "credit" for _, _, _, payload in found)


async def test_an_expiry_item_recorded_whole_by_an_earlier_version_is_delivered_as_stored(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """Items already in an outbox from before references keep their whole payload."""
    merchant_id, [ann, *_] = await _shop(uow_factory)
    stored = (
        '{"label":"credit","value":{"change":"-0.50","balance":"0.00","reason":"expire",'
        '"note":null,"order_ref":null,"at":"2025-03-11T01:00:00+00:00",'
        '"next_expiration_date":null,"next_expiration_points":null}}'
    )
    async with uow_factory() as uow:
        await uow.outbox.add(
            merchant_id, Topic.ECOMAIL_EVENT.value, json.loads(stored), customer_id=ann, at=AT
        )
        await uow.commit()
    async with uow_factory() as uow:
        [item] = await uow.outbox.claim(
            token="peek", now=FAR, lease=timedelta(minutes=1), limit=100
        )
    assert json.dumps(item.payload, separators=(",", ":")) == stored
