"""The nightly run on the in-memory fakes: points expire at the end of their last valid day,
the expiry marks the contacts and records a ``credit`` event per customer, the pre-expiry
notice goes out once per customer and last valid day (also after a missed night and when two
runs race), only through the open channels, and the cron runs each merchant once a local day
as a job of its own, under a claim that a failed run gives back.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ellity.adapters.arq_queue import NIGHTLY_JOB
from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import InsufficientPoints
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.integration import credit_event_value, expiry_event_value
from ellity.domain.model.ledger import Entry, EntryKind, Expiration
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.model.nightly import nightly_date, notice_window
from ellity.domain.services import nightly
from ellity.domain.services.customers import get_customer
from ellity.domain.services.merchants import change_settings
from ellity.domain.services.points import earn_points, ledger_entries, spend_points
from ellity.ports.storage import UnitOfWorkFactory
from ellity.worker import (
    NIGHTLY_LEASE,
    NIGHTLY_TIMEOUT,
    WorkerSettings,
    run_nightlies,
    run_nightly,
)
from tests.fakes import (
    FakeClock,
    FakeJobQueue,
    FakeWorkCounters,
    InMemoryStore,
    OutboxRecord,
    payload_of,
)
from tests.unit.conftest import NewCustomer

P = Points.parse
PRAGUE = ZoneInfo("Europe/Prague")
LAST_DAY = date(2025, 3, 10)  # of points earned at the fake clock's start, 10 March 2024


def prague(day: date, hour: int = 2, minute: int = 0, second: int = 0) -> datetime:
    """The instant of a Prague wall-clock time, in UTC (as clocks give it)."""
    local = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=PRAGUE)
    return local.astimezone(UTC)


def records(store: InMemoryStore, topic: str, label: str | None = None) -> list[OutboxRecord]:
    found = [r for r in sorted(store.state.outbox.values(), key=lambda r: r.id) if r.topic == topic]
    if label is not None:
        found = [r for r in found if payload_of(store.state, r)["label"] == label]
    return found


def events(store: InMemoryStore, label: str) -> list[tuple[int | None, object]]:
    return [
        (r.customer_id, payload_of(store.state, r)["value"])
        for r in records(store, "ecomail.event", label)
    ]


async def activate_ecomail(store: InMemoryStore, merchant_id: MerchantId) -> None:
    async with store.unit_of_work() as uow:
        await uow.ecomail.save_key(
            merchant_id, encrypted="sealed", hint="1234", at=prague(LAST_DAY)
        )
        await uow.ecomail.activate(
            merchant_id, list_id="7", list_name="Customers", at=prague(LAST_DAY)
        )
        await uow.commit()


async def configure(store: InMemoryStore, merchant: Merchant, **changes: str) -> Merchant:
    return await change_settings(
        merchant.slug, changes, uow=store.unit_of_work(), clock=FakeClock()
    )


async def earn(
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    merchant: Merchant,
    customer_id: CustomerId,
    points: str,
) -> None:
    await earn_points(
        merchant.id,
        customer_id,
        P(points),
        order_ref=f"o-{customer_id}-{clock.now().isoformat()}-{points}",
        uow=uow_factory(),
        clock=clock,
    )


async def run(
    uow_factory: UnitOfWorkFactory, clock: FakeClock, merchant: Merchant, **kw: int
) -> nightly.NightlyResult:
    return await nightly.run_nightly(merchant.id, uow_factory=uow_factory, clock=clock, **kw)


async def balance(
    uow_factory: UnitOfWorkFactory, merchant: Merchant, customer_id: CustomerId, clock: FakeClock
) -> Points:
    view = await get_customer(merchant.id, customer_id, uow=uow_factory(), clock=clock)
    return view.summary.balance


# -- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "last_run", "due"),
    [
        pytest.param(prague(date(2025, 3, 10), 1, 59), None, None, id="before-two"),
        pytest.param(prague(date(2025, 3, 10), 2, 0), None, date(2025, 3, 10), id="at-two"),
        pytest.param(
            prague(date(2025, 3, 10), 23, 59), date(2025, 3, 9), date(2025, 3, 10), id="late"
        ),
        pytest.param(prague(date(2025, 3, 10), 3), date(2025, 3, 10), None, id="done-today"),
        pytest.param(
            prague(date(2025, 3, 12), 9), date(2025, 3, 9), date(2025, 3, 12), id="missed"
        ),
        pytest.param(prague(date(2025, 3, 30), 2, 30), None, date(2025, 3, 30), id="dst-day"),
    ],
)
def test_the_nightly_is_due_after_two_local_time_once_a_local_day(
    now: datetime, last_run: date | None, due: date | None
) -> None:
    assert nightly_date(now, "Europe/Prague", last_run) == due


@pytest.mark.parametrize(
    ("now", "last_run", "claimed_until", "due"),
    [
        pytest.param(
            prague(date(2025, 3, 10), 2, 15),
            date(2025, 3, 9),
            prague(date(2025, 3, 10), 3, 15),
            None,
            id="a-run-holds-it",
        ),
        pytest.param(
            prague(date(2025, 3, 10), 3, 15),
            date(2025, 3, 9),
            prague(date(2025, 3, 10), 3, 15),
            date(2025, 3, 10),
            id="its-claim-ran-out",
        ),
        pytest.param(
            prague(date(2025, 3, 10), 2, 15),
            None,
            prague(date(2025, 3, 9), 3, 0),
            date(2025, 3, 10),
            id="a-claim-of-yesterday-ran-out",
        ),
        pytest.param(
            prague(date(2025, 3, 10), 1, 59),
            date(2025, 3, 9),
            prague(date(2025, 3, 9), 3, 0),
            None,
            id="before-two-all-the-same",
        ),
        pytest.param(
            prague(date(2025, 3, 10), 2, 15),
            date(2025, 3, 10),
            None,
            None,
            id="finished-today",
        ),
    ],
)
def test_a_night_held_by_a_run_is_not_due_until_its_claim_runs_out(
    now: datetime, last_run: date | None, claimed_until: datetime | None, due: date | None
) -> None:
    assert nightly_date(now, "Europe/Prague", last_run, claimed_until) == due


def test_the_nightly_follows_the_merchants_own_time_zone() -> None:
    now = datetime(2025, 3, 10, 1, 30, tzinfo=UTC)  # Prague 02:30, New York 21:30 the day before
    assert nightly_date(now, "Europe/Prague", None) == date(2025, 3, 10)
    assert nightly_date(now, "America/New_York", date(2025, 3, 9)) is None


def test_the_notice_window_starts_today_and_ends_n_days_ahead() -> None:
    assert notice_window(prague(date(2025, 2, 24)), "Europe/Prague", 14) == (
        date(2025, 2, 24),
        date(2025, 3, 10),
    )


# -- expiry ----------------------------------------------------------------------------------


async def test_points_expire_at_the_local_midnight_after_their_last_valid_day(
    merchant: Merchant, new_customer: NewCustomer, uow_factory: UnitOfWorkFactory, clock: FakeClock
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn(uow_factory, clock, merchant, ann.id, "10")

    clock.set(prague(LAST_DAY, 23, 59, 59))
    assert (await run(uow_factory, clock, merchant)).expiry.customers == 0
    assert await balance(uow_factory, merchant, ann.id, clock) == P("10")

    clock.set(prague(date(2025, 3, 11), 0, 0))
    result = await run(uow_factory, clock, merchant)
    assert (result.expiry.customers, result.local_date) == (1, date(2025, 3, 11))
    assert await balance(uow_factory, merchant, ann.id, clock) == P("0")


async def test_the_expiry_marks_each_contact_and_records_one_credit_event_per_customer(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz")
    shop_only = await new_customer(merchant, shop_customer_id="s-1")
    for customer in (ann, bob, shop_only):
        await earn(uow_factory, clock, merchant, customer.id, "10")
    await earn(uow_factory, clock, merchant, ann.id, "5")  # a second lot, same last day
    clock.advance(days=40)
    await earn(uow_factory, clock, merchant, ann.id, "7")  # still valid after the expiry
    await activate_ecomail(store, merchant.id)

    clock.set(prague(date(2025, 3, 11), 2))
    result = await run(uow_factory, clock, merchant)

    assert (result.expiry.customers, result.expiry.recorded.events) == (3, 2)
    assert result.expiry.recorded.emails == 0  # the switch is off
    now = clock.now()
    assert events(store, "credit") == [
        (
            ann.id,
            credit_event_value(
                Entry(EntryKind.EXPIRE, P("-15"), now, balance_after=P("7")),
                next_expiration=Expiration(date(2025, 4, 19), P("7")),
            ),
        ),
        (
            bob.id,
            credit_event_value(
                Entry(EntryKind.EXPIRE, P("-10"), now, balance_after=P("0")),
                next_expiration=None,
            ),
        ),
    ]
    contacts = store.state.contacts
    assert {cid for cid, c in contacts.items() if c.pending_since == now} == {ann.id, bob.id}
    assert shop_only.id not in contacts


async def test_without_an_active_integration_the_expiry_records_nothing_for_ecomail(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz", registered=True)
    await earn(uow_factory, clock, merchant, ann.id, "10")
    clock.set(prague(date(2025, 3, 11)))
    assert (await run(uow_factory, clock, merchant)).expiry.customers == 1
    assert store.state.outbox == {} and store.state.contacts == {}


async def test_chunks_of_customers_each_take_their_own_transaction_and_miss_nobody(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    customers = [await new_customer(merchant, email=f"c{n}@example.cz") for n in range(5)]
    bob = await new_customer(other_merchant, email="bob@example.com")
    for customer in customers:
        await earn(uow_factory, clock, merchant, customer.id, "3")
    await earn(uow_factory, clock, other_merchant, bob.id, "3")
    await activate_ecomail(store, merchant.id)
    clock.set(prague(date(2025, 3, 11)))
    commits = store.commits

    result = await nightly.expire_points(
        merchant.id, uow_factory=uow_factory, clock=clock, chunk_size=2
    )

    assert result.customers == 5 and store.commits == commits + 3
    assert [cid for cid, _ in events(store, "credit")] == [c.id for c in customers]
    # not Anna's to expire: Bob's points count for nothing now, but no entry says so yet
    assert await balance(uow_factory, other_merchant, bob.id, clock) == P("0")
    entries = await ledger_entries(other_merchant.id, bob.id, uow=uow_factory())
    assert [stored.entry.kind.value for stored in entries] == ["earn"]


async def test_a_second_run_the_same_night_expires_nothing_more(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn(uow_factory, clock, merchant, ann.id, "10")
    await activate_ecomail(store, merchant.id)
    clock.set(prague(date(2025, 3, 11)))
    first, second = await asyncio.gather(
        run(uow_factory, clock, merchant), run(uow_factory, clock, merchant)
    )
    assert first.expiry.customers + second.expiry.customers == 1
    assert len(events(store, "credit")) == 1
    assert await balance(uow_factory, merchant, ann.id, clock) == P("0")


# -- pre-expiry ------------------------------------------------------------------------------


@pytest.fixture
async def notifying(store: InMemoryStore, merchant: Merchant) -> Merchant:
    """Anna's shop with "Notify Ecomail" 14 days ahead and the integration active."""
    await activate_ecomail(store, merchant.id)
    return await configure(store, merchant, pre_expiry_notify="true", pre_expiry_days="14")


async def test_the_expiry_event_goes_out_n_days_ahead_once_per_customer_and_day(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(notifying, email="ann@example.cz")
    await earn(uow_factory, clock, notifying, ann.id, "10")

    clock.set(prague(date(2025, 2, 23), 2))  # 15 days ahead: not yet
    assert (await run(uow_factory, clock, notifying)).notices.notices == 0
    assert events(store, "expiry") == []

    clock.set(prague(date(2025, 2, 24), 2))  # 14 days ahead
    result = await run(uow_factory, clock, notifying)
    assert (result.notices.notices, result.notices.recorded.events) == (1, 1)
    expected = [(ann.id, expiry_event_value(P("10"), LAST_DAY, balance=P("10")))]
    assert events(store, "expiry") == expected

    for later in (prague(date(2025, 2, 24), 5), prague(date(2025, 2, 25)), prague(LAST_DAY)):
        clock.set(later)  # the same night again, the next nights: nothing new
        assert (await run(uow_factory, clock, notifying)).notices.notices == 0
    assert events(store, "expiry") == expected


async def test_a_missed_night_is_caught_up_the_next_night(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(notifying, email="ann@example.cz")
    await earn(uow_factory, clock, notifying, ann.id, "10")
    clock.set(prague(date(2025, 3, 1), 2))  # the nights from 24 February were missed
    await run(uow_factory, clock, notifying)
    assert events(store, "expiry") == [
        (ann.id, expiry_event_value(P("10"), LAST_DAY, balance=P("10")))
    ]


async def test_each_last_valid_day_gets_its_own_event_with_what_its_lots_still_hold(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(notifying, email="ann@example.cz")
    await earn(uow_factory, clock, notifying, ann.id, "10")
    await earn(uow_factory, clock, notifying, ann.id, "5")  # same last day: one event
    clock.advance(days=3)
    await earn(uow_factory, clock, notifying, ann.id, "7")
    await spend_points(notifying.id, ann.id, P("4"), uow=uow_factory(), clock=clock)  # oldest first
    clock.advance(days=30)
    await earn(uow_factory, clock, notifying, ann.id, "20")  # far beyond the window

    clock.set(prague(date(2025, 2, 27), 2))  # the window reaches 13 March
    await run(uow_factory, clock, notifying)
    assert events(store, "expiry") == [
        (ann.id, expiry_event_value(P("11"), LAST_DAY, balance=P("38"))),
        (ann.id, expiry_event_value(P("7"), date(2025, 3, 13), balance=P("38"))),
    ]


async def test_two_runs_at_once_notify_once(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(notifying, email="ann@example.cz")
    bob = await new_customer(notifying, email="bob@example.cz")
    for customer in (ann, bob):
        await earn(uow_factory, clock, notifying, customer.id, "10")
    clock.set(prague(date(2025, 2, 24), 2))
    results = await asyncio.gather(
        *(run(uow_factory, clock, notifying, chunk_size=1) for _ in range(2))
    )
    assert sum(r.notices.notices for r in results) == 2
    assert sorted(cid for cid, _ in events(store, "expiry")) == [ann.id, bob.id]


async def test_spent_points_and_customers_without_an_email_are_not_notified(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(notifying, email="ann@example.cz")
    shop_only = await new_customer(notifying, shop_customer_id="s-1")
    await earn(uow_factory, clock, notifying, ann.id, "10")
    await spend_points(notifying.id, ann.id, P("10"), uow=uow_factory(), clock=clock)
    await earn(uow_factory, clock, notifying, shop_only.id, "10")
    clock.set(prague(date(2025, 2, 24), 2))
    assert (await run(uow_factory, clock, notifying)).notices.notices == 0
    assert events(store, "expiry") == [] and store.state.expiry_notices == {}


async def test_with_the_notification_off_nothing_is_recorded(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    merchant = await configure(
        store, notifying, pre_expiry_notify="false", send_system_emails="true"
    )
    ann = await new_customer(merchant, email="ann@example.cz", registered=True)
    await earn(uow_factory, clock, merchant, ann.id, "10")
    before = len(store.state.outbox)  # the earn's email
    clock.set(prague(date(2025, 2, 24), 2))
    result = await run(uow_factory, clock, merchant)
    assert result.notices.skipped == nightly.NOTIFY_OFF
    assert len(store.state.outbox) == before and store.state.expiry_notices == {}


async def test_with_no_channel_open_nothing_is_noted_so_it_goes_out_once_one_opens(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    merchant = await configure(store, merchant, pre_expiry_notify="true")
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn(uow_factory, clock, merchant, ann.id, "10")
    clock.set(prague(date(2025, 2, 24), 2))
    result = await run(uow_factory, clock, merchant)  # integration inactive, emails off
    assert result.notices.skipped == nightly.NOBODY_TO_TELL
    assert store.state.outbox == {} and store.state.expiry_notices == {}

    await activate_ecomail(store, merchant.id)
    clock.set(prague(date(2025, 2, 25), 2))
    await run(uow_factory, clock, merchant)
    assert events(store, "expiry") == [
        (ann.id, expiry_event_value(P("10"), LAST_DAY, balance=P("10")))
    ]


async def test_the_email_goes_out_with_the_switch_on_even_without_the_integration(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    merchant = await configure(store, merchant, pre_expiry_notify="true", send_system_emails="true")
    ann = await new_customer(merchant, email="ann@example.cz", registered=True)
    await earn(uow_factory, clock, merchant, ann.id, "10")
    clock.set(prague(date(2025, 2, 24), 2))
    result = await run(uow_factory, clock, merchant)
    assert (result.notices.recorded.events, result.notices.recorded.emails) == (0, 1)
    [email] = records(store, "email.points_expiring")
    assert email.customer_id == ann.id
    assert json.loads(email.payload) == {
        "points": 1000,
        "expires_on": "2025-03-10",
        "balance": 1000,
    }
    assert records(store, "ecomail.event") == []


async def test_with_the_switch_off_only_the_event_is_recorded(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(notifying, email="ann@example.cz")
    await earn(uow_factory, clock, notifying, ann.id, "10")
    clock.set(prague(date(2025, 2, 24), 2))
    await run(uow_factory, clock, notifying)
    assert len(events(store, "expiry")) == 1
    assert [r for r in store.state.outbox.values() if r.topic.startswith("email.")] == []


# -- the cron: a job per merchant, each under its claim -------------------------------------

LEASE = timedelta(hours=1)


async def run_job(
    job: tuple[MerchantId, date], uow_factory: UnitOfWorkFactory, clock: FakeClock
) -> tuple[int, date] | None:
    """Run one queued nightly job as a worker would; the ``(merchant, date)`` it ran."""
    merchant_id, day = job
    result = await nightly.run_claimed_nightly(
        merchant_id, today=day, uow_factory=uow_factory, clock=clock, token="w1", lease=LEASE
    )
    return None if result is None else (result.merchant_id, result.local_date)


async def run_queued(
    queue: FakeJobQueue, uow_factory: UnitOfWorkFactory, clock: FakeClock
) -> list[tuple[int, date]]:
    """Run the nightly jobs queued so far, one after the other; the ones that ran."""
    done = [await run_job(job, uow_factory, clock) for job in queue.take_nightlies()]
    return [job for job in done if job is not None]


async def test_the_cron_runs_each_merchant_once_a_local_day_after_two_in_its_time_zone(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    bob_shop = await configure(store, other_merchant, timezone="America/New_York")
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn(uow_factory, clock, merchant, ann.id, "10")
    queue = FakeJobQueue()

    async def tick(at: datetime) -> list[tuple[int, date]]:
        clock.set(at)
        await nightly.queue_due_nightlies(uow_factory=uow_factory, clock=clock, queue=queue)
        return await run_queued(queue, uow_factory, clock)

    # Prague 01:30 (not yet); New York 20:30 the day before, never run: due for that day
    assert await tick(datetime(2025, 3, 11, 0, 30, tzinfo=UTC)) == [
        (bob_shop.id, date(2025, 3, 10))
    ]
    assert await tick(datetime(2025, 3, 11, 0, 45, tzinfo=UTC)) == []
    first = await tick(datetime(2025, 3, 11, 1, 0, tzinfo=UTC))  # Prague 02:00
    assert first == [(merchant.id, date(2025, 3, 11))]
    assert await balance(uow_factory, merchant, ann.id, clock) == P("0")  # the run did expire
    assert await tick(datetime(2025, 3, 11, 1, 15, tzinfo=UTC)) == []
    # New York 02:00 on 11 March (UTC-4 since 9 March)
    assert await tick(datetime(2025, 3, 11, 6, 0, tzinfo=UTC)) == [(bob_shop.id, date(2025, 3, 11))]
    assert await tick(datetime(2025, 3, 11, 22, 45, tzinfo=UTC)) == []  # Prague 23:45
    # no worker for two days: the next tick runs the night that is due, once
    assert await tick(datetime(2025, 3, 13, 14, 0, tzinfo=UTC)) == [
        (merchant.id, date(2025, 3, 13)),
        (bob_shop.id, date(2025, 3, 13)),
    ]
    assert await tick(datetime(2025, 3, 13, 14, 15, tzinfo=UTC)) == []


async def test_the_tick_queues_each_due_merchants_night_as_a_job_of_its_own(
    merchant: Merchant,
    other_merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    queue = FakeJobQueue()
    clock.set(prague(date(2025, 3, 11), 2, 15))
    due = await nightly.queue_due_nightlies(uow_factory=uow_factory, clock=clock, queue=queue)
    assert [(d.merchant_id, d.local_date) for d in due] == [
        (merchant.id, date(2025, 3, 11)),
        (other_merchant.id, date(2025, 3, 11)),
    ]
    assert queue.nightlies == [
        (merchant.id, date(2025, 3, 11)),
        (other_merchant.id, date(2025, 3, 11)),
    ]


async def test_two_workers_running_a_merchants_night_at_once_run_it_once(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock
) -> None:
    clock.set(prague(date(2025, 3, 11), 2, 15))
    runs = await asyncio.gather(
        *(
            nightly.run_claimed_nightly(
                merchant.id,
                today=date(2025, 3, 11),
                uow_factory=uow_factory,
                clock=clock,
                token=f"w{n}",
                lease=LEASE,
            )
            for n in range(3)
        )
    )
    assert [r.merchant_id for r in runs if r is not None] == [merchant.id]


async def test_a_failed_run_gives_its_claim_back_and_the_next_tick_runs_it(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    other_merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = nightly.run_nightly

    async def broken_for_anna(merchant_id: MerchantId, **kw: Any) -> nightly.NightlyResult:
        if merchant_id == merchant.id:
            raise RuntimeError("the database went away")
        return await real(merchant_id, **kw)

    queue = FakeJobQueue()
    clock.set(prague(date(2025, 3, 11), 2, 15))
    monkeypatch.setattr(nightly, "run_nightly", broken_for_anna)
    await nightly.queue_due_nightlies(uow_factory=uow_factory, clock=clock, queue=queue)
    anna_job, bob_job = queue.take_nightlies()
    with pytest.raises(RuntimeError, match="went away"):  # the job fails, as arq reports it
        await run_job(anna_job, uow_factory, clock)
    assert store.state.nightly_claims == {}
    assert await run_job(bob_job, uow_factory, clock) == (other_merchant.id, date(2025, 3, 11))
    monkeypatch.setattr(nightly, "run_nightly", real)
    clock.set(prague(date(2025, 3, 11), 2, 30))
    await nightly.queue_due_nightlies(uow_factory=uow_factory, clock=clock, queue=queue)
    assert await run_queued(queue, uow_factory, clock) == [(merchant.id, date(2025, 3, 11))]


@dataclass(frozen=True)
class JobDeps:
    uow: UnitOfWorkFactory
    clock: FakeClock
    queue: FakeJobQueue
    counters: FakeWorkCounters = field(default_factory=FakeWorkCounters)


async def test_the_worker_looks_every_quarter_hour_and_runs_each_due_night_as_a_job(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    [job] = [c for c in WorkerSettings.cron_jobs if c.name == "cron:nightly"]
    assert (job.minute, job.second, job.unique) == ({0, 15, 30, 45}, 0, True)
    [function] = [f for f in WorkerSettings.functions if f.name == NIGHTLY_JOB]
    # its own time limit, shorter than the claim's lease; no result kept, so that the next
    # tick can queue a job of the same id again after one that failed or was cut off
    assert function.timeout_s == NIGHTLY_TIMEOUT.total_seconds() < NIGHTLY_LEASE.total_seconds()
    assert (function.keep_result_s, function.max_tries) == (0, 1)
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn(uow_factory, clock, merchant, ann.id, "10")
    clock.set(prague(date(2025, 3, 11), 2, 15))
    queue = FakeJobQueue()
    ctx: dict[str, Any] = {"deps": JobDeps(uow_factory, clock, queue), "worker_token": "w1"}
    assert await run_nightlies(ctx) == 1
    [(merchant_id, day)] = queue.take_nightlies()
    assert await run_nightly(ctx, merchant_id, day) is True
    assert await run_nightly(ctx, merchant_id, day) is False  # done for the day
    assert await run_nightlies(ctx) == 0
    assert await balance(uow_factory, merchant, ann.id, clock) == P("0")


# -- between the expiry instant and the nightly run ------------------------------------------


async def half_past_midnight(
    store: InMemoryStore,
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> Customer:
    """Ann, with Ecomail active, at 00:30 after the last valid day of her 10 points (4 more,
    earned 40 days later, still valid), before any nightly run."""
    ann = await new_customer(merchant, email="ann@example.cz")
    await earn(uow_factory, clock, merchant, ann.id, "10")  # last valid day: LAST_DAY
    clock.advance(days=40)
    await earn(uow_factory, clock, merchant, ann.id, "4")
    await activate_ecomail(store, merchant.id)
    clock.set(prague(date(2025, 3, 11), 0, 30))
    return ann


async def test_before_the_nightly_run_expired_points_show_nowhere_and_cannot_be_spent(
    store: InMemoryStore,
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await half_past_midnight(store, merchant, new_customer, uow_factory, clock)

    assert await balance(uow_factory, merchant, ann.id, clock) == P("4")
    with pytest.raises(InsufficientPoints):
        await spend_points(merchant.id, ann.id, P("5"), uow=uow_factory(), clock=clock)
    assert events(store, "credit") == []  # the refused spend recorded nothing

    clock.set(prague(date(2025, 3, 11)))
    result = await run(uow_factory, clock, merchant)
    assert result.expiry.customers == 1
    assert [value["change"] for _, value in events(store, "credit")] == ["-10.00"]  # type: ignore[index]


async def test_a_spend_after_the_expiry_instant_records_the_expiry_then_the_spend(
    store: InMemoryStore,
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await half_past_midnight(store, merchant, new_customer, uow_factory, clock)

    await spend_points(merchant.id, ann.id, P("3"), uow=uow_factory(), clock=clock)

    entries = await ledger_entries(merchant.id, ann.id, uow=uow_factory())
    assert [(e.entry.kind.value, e.entry.points, e.entry.balance_after) for e in entries[:2]] == [
        ("spend", P("-3"), P("1")),
        ("expire", P("-10"), P("4")),
    ]
    changes = [(v["change"], v["reason"]) for _, v in events(store, "credit")]  # type: ignore[index]
    assert changes == [("-10.00", "expire"), ("-3.00", "spend")]
    clock.set(prague(date(2025, 3, 11)))
    assert (await run(uow_factory, clock, merchant)).expiry.customers == 0  # nothing left due
    assert await balance(uow_factory, merchant, ann.id, clock) == P("1")


async def test_a_notice_chunk_the_database_aborts_for_a_conflict_runs_again(
    notifying: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(notifying, email="ann@example.cz")
    await earn(uow_factory, clock, notifying, ann.id, "10")
    clock.set(prague(date(2025, 2, 24), 2))  # 14 days ahead
    store.conflicts = 2

    result = await nightly.notify_upcoming_expiry(
        notifying.id, uow_factory=uow_factory, clock=clock
    )

    assert (result.notices, result.recorded.events) == (1, 1)
    assert events(store, "expiry") == [
        (ann.id, expiry_event_value(P("10"), LAST_DAY, balance=P("10")))
    ]
