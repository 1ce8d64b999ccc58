"""The nightly run's storage contract and the run itself, on the in-memory fake, SQLite and
PostgreSQL: expiry chunks by id range, what follows a chunk (contact marks, ``credit`` events,
emails) built set-based exactly as the domain builds them for one customer, pre-expiry notices
once per customer and last valid day (also when two runs race), the nightly claim (a lease),
and a run cancelled in the middle, failed or killed being run again by the next tick."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ellity.adapters.sql import contact_marks
from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.integration import credit_event_value, expiry_event_value
from ellity.domain.model.ledger import Expiration
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import OutboxItem, Topic
from ellity.domain.model.system_email import PointsChanged
from ellity.domain.services import nightly
from ellity.domain.services.merchants import change_settings
from ellity.domain.services.points import earn_points, spend_points
from ellity.ports.storage import ExpiredChunk, ExpiryNotice, NightlySchedule, UnitOfWorkFactory
from tests.fakes import FakeClock, FakeJobQueue, StallingNightly

P = Points.parse
PRAGUE = ZoneInfo("Europe/Prague")
T0 = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)  # points earned now last through 10 March 2025
LAST_DAY = date(2025, 3, 10)


def prague(day: date, hour: int = 2) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=PRAGUE).astimezone(UTC)


@dataclass
class Shop:
    uow: UnitOfWorkFactory
    clock: FakeClock
    merchant_id: MerchantId
    slug: str

    async def customer(self, email: str | None, n: int) -> CustomerId:
        async with self.uow() as uow:
            customer = await uow.customers.add(
                Customer(
                    merchant_id=self.merchant_id,
                    referral_code=f"{self.slug[:3].upper()}{n:05d}",
                    created_at=T0,
                    updated_at=T0,
                    email=email,
                    shop_customer_id=None if email else f"shop-{n}",
                )
            )
            await uow.commit()
        assert customer.id is not None
        return customer.id

    async def earn(self, customer_id: CustomerId, points: str, *, at: datetime = T0) -> None:
        self.clock.set(at)
        await earn_points(
            self.merchant_id,
            customer_id,
            P(points),
            order_ref=f"o-{customer_id}-{at.isoformat()}-{points}",
            uow=self.uow(),
            clock=self.clock,
        )

    async def activate_ecomail(self) -> None:
        async with self.uow() as uow:
            await uow.ecomail.save_key(self.merchant_id, encrypted="sealed", hint="1234", at=T0)
            await uow.ecomail.activate(self.merchant_id, list_id="7", list_name="List", at=T0)
            await uow.commit()

    async def settings(self, **changes: str) -> None:
        await change_settings(self.slug, changes, uow=self.uow(), clock=FakeClock())

    async def outbox(self, topic: str) -> list[OutboxItem]:
        """The pending items of ``topic`` (claimed in a transaction that is rolled back)."""
        async with self.uow() as uow:
            claimed = await uow.outbox.claim(token="peek", now=FAR, lease=LEASE, limit=1000)
        return [item for item in claimed if item.topic == topic]

    async def events(self, label: str) -> list[tuple[int | None, object]]:
        return [
            (item.customer_id, item.payload["value"])
            for item in await self.outbox(Topic.ECOMAIL_EVENT.value)
            if item.payload["label"] == label
        ]

    async def pending_contacts(self) -> list[int]:
        """The customers whose contacts wait to be written (peeked at like ``outbox``)."""
        async with self.uow() as uow:
            claimed = await uow.contacts.claim(
                self.merchant_id, token="peek", now=FAR, lease=LEASE, limit=1000
            )
        return sorted(contact.customer_id for contact in claimed)


FAR = datetime(2100, 1, 1, tzinfo=UTC)
LEASE = timedelta(minutes=1)


async def open_shop(uow_factory: UnitOfWorkFactory, slug: str = "anna") -> Shop:
    async with uow_factory() as uow:
        merchant = await uow.merchants.add(
            Merchant(slug=slug, settings=MerchantSettings(name=slug.title())), at=T0
        )
        await uow.commit()
    assert merchant.id is not None
    return Shop(uow_factory, FakeClock(T0), merchant.id, slug)


CLAIM_LEASE = timedelta(hours=1)


async def schedules(shop: Shop) -> list[NightlySchedule]:
    async with shop.uow(read_only=True) as uow:
        return await uow.merchants.nightly_schedules()


async def expire(
    shop: Shop,
    *,
    at: datetime,
    after_id: CustomerId = BEFORE_FIRST_CUSTOMER,
    up_to_id: CustomerId | None = None,
) -> int:
    async with shop.uow() as uow:
        count = await uow.ledgers.expire_due(
            shop.merchant_id,
            at=at,
            today=at.astimezone(PRAGUE).date(),
            after_id=after_id,
            up_to_id=up_to_id,
        )
        await uow.commit()
    return count


async def balances(shop: Shop, *customer_ids: CustomerId) -> list[Points]:
    """The stored balances (read as of the day the points were earned)."""
    async with shop.uow(read_only=True) as uow:
        rows = await uow.ledgers.loyalty(shop.merchant_id, list(customer_ids), today=T0.date())
    return [row.summary.balance for row in rows]


# -- expiry chunks ---------------------------------------------------------------------------


async def test_an_expiry_chunk_takes_only_the_customers_of_its_id_range(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ids = [await shop.customer(f"c{n}@example.cz", n) for n in range(4)]
    for cid in ids:
        await shop.earn(cid, "10")
    at = prague(date(2025, 3, 11))
    assert await expire(shop, at=at, after_id=ids[0], up_to_id=ids[2]) == 2
    assert await balances(shop, *ids) == [P("10"), P("0"), P("0"), P("10")]
    assert await expire(shop, at=at, after_id=ids[2]) == 1  # the next chunk
    assert await expire(shop, at=at, up_to_id=ids[0]) == 1  # and the one before
    assert await balances(shop, *ids) == [P("0")] * 4


async def test_the_chunk_end_counts_the_merchants_customers_in_id_order(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    other = await open_shop(uow_factory, "bob")
    ids = []
    for n in range(5):
        ids.append(await shop.customer(f"c{n}@example.cz", n))
        await other.customer(f"c{n}@example.com", n)
    async with uow_factory(read_only=True) as uow:
        ends = [
            await uow.customers.chunk_end(shop.merchant_id, after_id=after, size=2)
            for after in (CustomerId(0), ids[1], ids[3], ids[4])
        ]
    assert ends == [ids[1], ids[3], ids[4], None]


async def test_what_follows_an_expired_chunk_reads_exactly_as_the_domain_writes_it(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ann = await shop.customer("ann@example.cz", 1)
    bob = await shop.customer("bob@example.cz", 2)
    cid = await shop.customer("cid@example.cz", 3)
    no_email = await shop.customer(None, 4)
    await shop.earn(ann, "1250.05")
    await shop.earn(ann, "0.07", at=T0 + timedelta(days=40))  # left after the expiry
    await shop.earn(ann, "3", at=T0 + timedelta(days=40, hours=1))  # the same last day
    await shop.earn(bob, "0.50")  # all of it expires: nothing left, nothing next
    await shop.earn(cid, "10", at=T0 + timedelta(days=40))  # nothing due
    await shop.earn(no_email, "5")
    at = prague(date(2025, 3, 11))
    assert await expire(shop, at=at) == 3
    chunk = ExpiredChunk(shop.merchant_id, at=at)
    async with uow_factory() as uow:
        assert await uow.contacts.mark_expired(chunk) == 2
        assert await uow.outbox.add_for_expired(chunk, Topic.ECOMAIL_EVENT.value) == 2
        assert await uow.outbox.add_for_expired(chunk, Topic.POINTS_CHANGED_EMAIL.value) == 2
        await uow.commit()

    expected_events, expected_emails = [], []
    async with uow_factory(read_only=True) as uow:
        for customer_id in (ann, bob):
            [newest] = await uow.ledgers.entries(shop.merchant_id, customer_id, limit=1)
            [loyalty] = await uow.ledgers.loyalty(
                shop.merchant_id, [customer_id], today=date(2025, 3, 11)
            )
            nxt = loyalty.summary.next_expiration
            expected_events.append(
                (customer_id, credit_event_value(newest.entry, next_expiration=nxt))
            )
            expected_emails.append((customer_id, PointsChanged.of(newest.entry, nxt).to_payload()))
    assert expected_events[0][1]["change"] == "-1250.05"
    assert expected_events[0][1]["next_expiration_points"] == "3.07"
    assert expected_events[1][1]["change"] == "-0.50"
    assert expected_events[1][1]["next_expiration_date"] is None
    assert await shop.events("credit") == expected_events
    emails = await shop.outbox(Topic.POINTS_CHANGED_EMAIL.value)
    assert [(item.customer_id, item.payload) for item in emails] == expected_emails
    assert all(item.created_at == at for item in emails)
    assert await shop.pending_contacts() == [ann, bob]


async def test_what_follows_a_chunk_leaves_out_other_runs_and_other_ranges(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ann = await shop.customer("ann@example.cz", 1)
    bob = await shop.customer("bob@example.cz", 2)
    await shop.earn(ann, "5")
    await shop.earn(bob, "5")
    await shop.earn(bob, "6", at=T0 + timedelta(days=1))
    first = prague(date(2025, 3, 11))
    await expire(shop, at=first, up_to_id=ann)
    second = prague(date(2025, 3, 12))
    await expire(shop, at=second)  # bob: both lots by now
    async with uow_factory() as uow:
        assert await uow.outbox.add_for_expired(
            ExpiredChunk(shop.merchant_id, at=second, after_id=CustomerId(0), up_to_id=ann),
            Topic.ECOMAIL_EVENT.value,
        ) == 0  # fmt: skip
        assert await uow.outbox.add_for_expired(
            ExpiredChunk(shop.merchant_id, at=second), Topic.ECOMAIL_EVENT.value
        ) == 1  # fmt: skip
        await uow.commit()
    assert [cid for cid, _ in await shop.events("credit")] == [bob]


async def test_contacts_of_more_customers_than_one_statement_binds_are_all_marked(
    uow_factory: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contact_marks, "MARK_BATCH", 2)
    shop = await open_shop(uow_factory)
    ids = [await shop.customer(f"c{n}@example.cz", n) for n in range(5)]
    async with uow_factory() as uow:
        await uow.contacts.mark_changed(shop.merchant_id, list(reversed(ids)), at=T0)
        await uow.commit()
    assert await shop.pending_contacts() == ids


async def test_outbox_items_added_together_are_each_delivered_on_their_own(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ann = await shop.customer("ann@example.cz", 1)
    async with uow_factory() as uow:
        added = await uow.outbox.add_many(
            shop.merchant_id, "email.points_expiring", [(ann, {"n": 1}), (None, {"n": 2})], at=T0
        )
        assert await uow.outbox.add_many(shop.merchant_id, "x", [], at=T0) == 0
        await uow.commit()
    assert added == 2
    items = await shop.outbox("email.points_expiring")
    assert [(i.customer_id, i.payload, i.created_at) for i in items] == [
        (ann, {"n": 1}, T0),
        (None, {"n": 2}, T0),
    ]


# -- pre-expiry notices ----------------------------------------------------------------------


AFTER_EVERY_CUSTOMER = CustomerId(10**9)


async def notices(
    shop: Shop, *, first: date, last: date, up_to_id: CustomerId = AFTER_EVERY_CUSTOMER
) -> list[ExpiryNotice]:
    async with shop.uow() as uow:
        noted = await uow.ledgers.record_expiry_notices(
            shop.merchant_id,
            first_day=first,
            last_day=last,
            after_id=CustomerId(0),
            up_to_id=up_to_id,
            at=prague(first),
        )
        await uow.commit()
    return noted


async def test_a_notice_is_recorded_once_per_customer_and_last_valid_day(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    other = await open_shop(uow_factory, "bob")
    ann = await shop.customer("ann@example.cz", 1)
    bea = await shop.customer("bea@example.cz", 2)
    no_email = await shop.customer(None, 3)
    foreign = await other.customer("ann@example.com", 1)
    await shop.earn(ann, "10")
    await shop.earn(ann, "2.50", at=T0 + timedelta(hours=2))  # same last day
    await shop.earn(ann, "4", at=T0 + timedelta(days=5))  # 15 March: beyond the window
    await shop.earn(bea, "3", at=T0 - timedelta(days=6))  # 4 March: the window's first day
    await shop.earn(bea, "1", at=T0 - timedelta(days=7))  # 3 March: before it
    await shop.earn(no_email, "9")
    await other.earn(foreign, "9")
    window: dict[str, Any] = {"first": date(2025, 3, 4), "last": date(2025, 3, 14)}

    assert await notices(shop, **window, up_to_id=ann) == [
        ExpiryNotice(ann, Expiration(LAST_DAY, P("12.50")), balance=P("16.50"))
    ]
    assert await notices(shop, **window) == [
        ExpiryNotice(bea, Expiration(date(2025, 3, 4), P("3")), balance=P("4"))
    ]
    assert await notices(shop, **window) == []  # all noted before
    assert await notices(shop, first=date(2025, 3, 4), last=date(2025, 3, 15)) == [
        ExpiryNotice(ann, Expiration(date(2025, 3, 15), P("4")), balance=P("16.50"))
    ]


async def test_spent_lots_are_not_noted(uow_factory: UnitOfWorkFactory) -> None:
    shop = await open_shop(uow_factory)
    ann = await shop.customer("ann@example.cz", 1)
    await shop.earn(ann, "10")
    await spend_points(shop.merchant_id, ann, P("10"), uow=uow_factory(), clock=shop.clock)
    assert await notices(shop, first=date(2025, 3, 1), last=LAST_DAY) == []


async def test_two_transactions_noting_at_once_note_each_customer_and_day_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ids = [await shop.customer(f"c{n}@example.cz", n) for n in range(6)]
    for cid in ids:
        await shop.earn(cid, "10")
    noted = await asyncio.gather(
        *(notices(shop, first=date(2025, 3, 1), last=LAST_DAY) for _ in range(4))
    )
    assert sorted(n.customer_id for batch in noted for n in batch) == ids


# -- the nightly claim -----------------------------------------------------------------------


async def test_a_night_is_claimed_once_and_a_released_claim_can_be_taken_again(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    other = await open_shop(uow_factory, "bob")
    today, at = date(2025, 3, 11), prague(date(2025, 3, 11), 2)
    until = at + CLAIM_LEASE

    async def claim(day: date, token: str, *, now: datetime = at) -> bool:
        async with uow_factory() as uow:
            claimed = await uow.merchants.claim_nightly(
                shop.merchant_id, today=day, token=token, at=now, until=now + CLAIM_LEASE
            )
            await uow.commit()
        return claimed

    async def release(token: str) -> None:
        async with uow_factory() as uow:
            await uow.merchants.release_nightly(shop.merchant_id, token=token)
            await uow.commit()

    async def finish(token: str) -> bool:
        async with uow_factory() as uow:
            finished = await uow.merchants.finish_nightly(
                shop.merchant_id, today=today, token=token
            )
            await uow.commit()
        return finished

    claims = await asyncio.gather(*(claim(today, f"w{i}") for i in range(5)))
    assert claims in ([i == n for i in range(5)] for n in range(5))
    holder = f"w{claims.index(True)}"
    assert await schedules(shop) == [
        NightlySchedule(shop.merchant_id, "Europe/Prague", None, until),
        NightlySchedule(other.merchant_id, "Europe/Prague", None, None),
    ]
    await release("somebody else")  # only the holder's token releases the claim
    assert not await claim(today, "w9")
    await release(holder)
    assert (await schedules(shop))[0] == NightlySchedule(shop.merchant_id, "Europe/Prague", None)
    assert await claim(today, "w9")
    assert not await finish(holder)  # released: its token no longer finishes the night
    assert await finish("w9")
    assert (await schedules(shop))[0] == NightlySchedule(shop.merchant_id, "Europe/Prague", today)
    assert not await claim(today, "w10")  # done for the day
    assert not await claim(today - timedelta(days=1), "w10")
    assert await claim(today + timedelta(days=1), "w10")


async def test_a_claim_whose_worker_died_runs_out_and_the_night_can_be_claimed_again(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    today, at = date(2025, 3, 11), prague(date(2025, 3, 11), 2)

    async def claim(token: str, now: datetime) -> bool:
        async with uow_factory() as uow:
            claimed = await uow.merchants.claim_nightly(
                shop.merchant_id, today=today, token=token, at=now, until=now + CLAIM_LEASE
            )
            await uow.commit()
        return claimed

    assert await claim("killed", at)  # ... and its process never finishes nor releases it
    assert not await claim("next", at + CLAIM_LEASE - timedelta(seconds=1))
    assert await claim("next", at + CLAIM_LEASE)
    async with uow_factory() as uow:  # the dead run's token no longer counts
        await uow.merchants.release_nightly(shop.merchant_id, token="killed")
        assert not await uow.merchants.finish_nightly(shop.merchant_id, today=today, token="killed")
        assert await uow.merchants.finish_nightly(shop.merchant_id, today=today, token="next")
        await uow.commit()
    assert (await schedules(shop))[0] == NightlySchedule(shop.merchant_id, "Europe/Prague", today)


# -- the cron's jobs: cancelled, failed or killed runs are run again -------------------------


async def tick(shop: Shop, at: datetime) -> list[tuple[MerchantId, date]]:
    """The cron at ``at``: the nightly jobs it queues."""
    shop.clock.set(at)
    queue = FakeJobQueue()
    await nightly.queue_due_nightlies(uow_factory=shop.uow, clock=shop.clock, queue=queue)
    return queue.take_nightlies()


async def run_job(
    shop: Shop, job: tuple[MerchantId, date], *, uow_factory: UnitOfWorkFactory | None = None
) -> nightly.NightlyResult | None:
    merchant_id, day = job
    return await nightly.run_claimed_nightly(
        merchant_id,
        today=day,
        uow_factory=uow_factory or shop.uow,
        clock=shop.clock,
        token=f"worker-{merchant_id}-{shop.clock.now().isoformat()}",
        lease=CLAIM_LEASE,
        chunk_size=1,
    )


async def test_a_run_cancelled_inside_a_chunk_is_run_again_by_the_next_tick_the_same_day(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ids = [await shop.customer(f"c{n}@example.cz", n) for n in range(3)]
    for cid in ids:
        await shop.earn(cid, "10")
    await shop.activate_ecomail()
    today = date(2025, 3, 11)

    [job] = await tick(shop, prague(today, 2))
    assert job == (shop.merchant_id, today)
    # the second chunk's points are expired in its transaction, then the job is cancelled
    # there (as arq's time limit or a worker shutting down cancels it), before the commit
    stalling = StallingNightly(uow_factory, shop.merchant_id, stall_at=2, inside="expiry")
    running = asyncio.create_task(run_job(shop, job, uow_factory=stalling))
    await stalling.stalled.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await balances(shop, *ids) == [P("0"), P("10"), P("10")]  # the first chunk only
    assert (await schedules(shop))[0] == NightlySchedule(shop.merchant_id, "Europe/Prague", None)

    [again] = await tick(shop, prague(today, 2) + timedelta(minutes=15))
    assert again == (shop.merchant_id, today)
    result = await run_job(shop, again)
    assert result is not None
    assert result.expiry.customers == 2
    assert await balances(shop, *ids) == [P("0"), P("0"), P("0")]
    assert sorted(cid for cid, _ in await shop.events("credit")) == ids  # once each
    assert (await schedules(shop))[0] == NightlySchedule(shop.merchant_id, "Europe/Prague", today)
    assert await tick(shop, prague(today, 2) + timedelta(minutes=30)) == []


async def test_the_night_of_a_killed_worker_is_run_by_the_first_tick_after_its_claim_ran_out(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ann = await shop.customer("ann@example.cz", 1)
    await shop.earn(ann, "10")
    today, start = date(2025, 3, 11), prague(date(2025, 3, 11), 2)
    async with uow_factory() as uow:  # a worker claimed the night, then was killed (SIGKILL)
        assert await uow.merchants.claim_nightly(
            shop.merchant_id, today=today, token="killed", at=start, until=start + CLAIM_LEASE
        )
        await uow.commit()

    assert await tick(shop, start + CLAIM_LEASE - timedelta(minutes=15)) == []
    [job] = await tick(shop, start + CLAIM_LEASE)
    result = await run_job(shop, job)
    assert result is not None
    assert result.expiry.customers == 1
    assert (await schedules(shop))[0] == NightlySchedule(shop.merchant_id, "Europe/Prague", today)


# -- the run ---------------------------------------------------------------------------------


async def test_points_expire_at_the_end_of_their_last_valid_day_with_a_credit_event_each(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ann = await shop.customer("ann@example.cz", 1)
    bob = await shop.customer("bob@example.cz", 2)
    await shop.earn(ann, "10")
    await shop.earn(bob, "20", at=T0 + timedelta(days=1))
    await shop.activate_ecomail()

    shop.clock.set(prague(LAST_DAY, 23) + timedelta(minutes=59, seconds=59))
    result = await nightly.run_nightly(
        shop.merchant_id, uow_factory=uow_factory, clock=shop.clock, chunk_size=1
    )
    assert result.expiry.customers == 0
    shop.clock.set(prague(date(2025, 3, 11), 0))
    result = await nightly.run_nightly(
        shop.merchant_id, uow_factory=uow_factory, clock=shop.clock, chunk_size=1
    )
    assert (result.expiry.customers, result.expiry.recorded.events) == (1, 1)
    assert await balances(shop, ann, bob) == [P("0"), P("20")]
    assert [cid for cid, _ in await shop.events("credit")] == [ann]
    assert await shop.pending_contacts() == [ann]


async def test_the_pre_expiry_event_goes_out_once_after_a_missed_night_and_with_two_runs_at_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    await shop.settings(pre_expiry_notify="true", pre_expiry_days="14")
    await shop.activate_ecomail()
    ids = [await shop.customer(f"c{n}@example.cz", n) for n in range(3)]
    for cid in ids:
        await shop.earn(cid, "10")

    async def run_twice_at_once(day: date) -> int:
        shop.clock.set(prague(day))
        results = await asyncio.gather(
            *(
                nightly.run_nightly(
                    shop.merchant_id, uow_factory=uow_factory, clock=shop.clock, chunk_size=2
                )
                for _ in range(2)
            )
        )
        return sum(result.notices.notices for result in results)

    assert await run_twice_at_once(date(2025, 2, 23)) == 0  # 15 days ahead
    assert await run_twice_at_once(date(2025, 2, 26)) == 3  # 24 and 25 February were missed
    assert await run_twice_at_once(date(2025, 2, 27)) == 0
    assert await shop.events("expiry") == [
        (cid, expiry_event_value(P("10"), LAST_DAY, balance=P("10"))) for cid in ids
    ]


async def test_nothing_is_noted_with_the_notification_off_or_no_channel_open(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await open_shop(uow_factory)
    ann = await shop.customer("ann@example.cz", 1)
    await shop.earn(ann, "10")
    await shop.activate_ecomail()
    shop.clock.set(prague(date(2025, 3, 1)))
    run = nightly.notify_upcoming_expiry
    off = await run(shop.merchant_id, uow_factory=uow_factory, clock=shop.clock)
    assert off.skipped == nightly.NOTIFY_OFF
    await shop.settings(pre_expiry_notify="true")
    async with uow_factory() as uow:
        await uow.ecomail.deactivate(shop.merchant_id, at=T0)
        await uow.commit()
    closed = await run(shop.merchant_id, uow_factory=uow_factory, clock=shop.clock)
    assert closed.skipped == nightly.NOBODY_TO_TELL
    assert await shop.outbox(Topic.ECOMAIL_EVENT.value) == []
    await shop.settings(send_system_emails="true")  # the email alone, no event
    emailed = await run(shop.merchant_id, uow_factory=uow_factory, clock=shop.clock)
    assert (emailed.notices, emailed.recorded.events, emailed.recorded.emails) == (1, 0, 1)
    [email] = await shop.outbox(Topic.POINTS_EXPIRING_EMAIL.value)
    assert (email.customer_id, email.payload) == (
        ann,
        {"points": 1000, "expires_on": "2025-03-10", "balance": 1000},
    )
