"""Readiness on fakes, and what the worker's use cases count for ``/metrics``: each recorded
delivery outcome by topic, the contacts written or left to retry, the nightly runs, and
Ecomail's 429 answers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest

from ellity.adapters.ecomail.client import EcomailMarketingPlatform
from ellity.domain.model.merchant import Merchant
from ellity.domain.services import contact_sync, delivery, operations
from ellity.ports.mailer import MailerRejected, MailerUnavailable
from ellity.ports.marketing import MarketingRateLimited, MarketingUnavailable
from ellity.ports.operations import (
    DELIVERIES,
    ECOMAIL_RATE_LIMITED,
    NIGHTLY_LAST_FINISHED,
    NIGHTLY_RUNS,
    NIGHTLY_SECONDS,
)
from ellity.worker import run_nightly
from tests.fakes import (
    FakeClock,
    FakeMailer,
    FakeMarketingPlatforms,
    FakeSchemaVersion,
    FakeSecretBox,
    FakeWorkCounters,
    FakeWorkerHeartbeats,
    InMemoryStore,
)
from tests.unit import test_contact_sync as contacts
from tests.unit.conftest import NewCustomer
from tests.unit.test_delivery import earn, set_up_mail

# -- readiness ----------------------------------------------------------------------------


async def fine() -> None:
    return None


async def test_ready_when_every_check_holds() -> None:
    heartbeats = FakeWorkerHeartbeats(FakeClock())
    await heartbeats.beat("w1")
    readiness = await operations.check_readiness(
        ping_database=fine, schema=FakeSchemaVersion(), heartbeats=heartbeats
    )
    assert readiness.ready
    assert readiness.checks == {"database": "ok", "migrations": "ok", "redis": "ok", "worker": "ok"}


async def test_each_failed_check_is_named_without_the_error_s_text() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError("postgresql://user:secret@db/ellity refused")

    heartbeats = FakeWorkerHeartbeats(FakeClock())
    heartbeats.down = True
    readiness = await operations.check_readiness(
        ping_database=refused,
        schema=FakeSchemaVersion(database="0009", code="0010"),
        heartbeats=heartbeats,
    )
    assert not readiness.ready
    assert readiness.failed == ["database", "migrations", "redis", "worker"]
    assert readiness.checks["database"] == "unreachable (ConnectionRefusedError)"
    assert readiness.checks["migrations"] == (
        "the database is at revision 0009, the code at 0010: run `ellity migrate`"
    )
    assert "secret" not in str(readiness.checks)


async def test_a_check_that_hangs_fails_after_its_time_and_the_others_still_answer() -> None:
    async def hangs() -> None:
        await asyncio.sleep(10)

    heartbeats = FakeWorkerHeartbeats(FakeClock())
    await heartbeats.beat("w1")
    readiness = await operations.check_readiness(
        ping_database=hangs, schema=FakeSchemaVersion(), heartbeats=heartbeats, seconds=0.05
    )
    assert readiness.failed == ["database"]
    assert readiness.checks["database"] == "no answer within 0.05 s"


async def test_a_worker_silent_for_the_window_is_not_seen() -> None:
    clock = FakeClock()
    heartbeats = FakeWorkerHeartbeats(clock)
    await heartbeats.beat("w1")
    clock.advance(seconds=59)
    assert await heartbeats.workers_seen() == 1
    clock.advance(seconds=1)
    readiness = await operations.check_readiness(
        ping_database=fine, schema=FakeSchemaVersion(), heartbeats=heartbeats
    )
    assert readiness.checks["worker"] == "no worker heartbeat in the last 60 s"


# -- counts -------------------------------------------------------------------------------


async def test_each_recorded_delivery_outcome_is_counted_by_topic(
    merchant: Merchant, store: InMemoryStore, clock: FakeClock, new_customer: NewCustomer
) -> None:
    counters = FakeWorkCounters()
    anna = await set_up_mail(store, merchant)
    for n in range(3):
        ann = await new_customer(anna, email=f"ann{n}@example.cz", registered=True)
        await earn(store, clock, anna, ann.id)
    mailer = FakeMailer()
    mailer.fail_next(MailerUnavailable("busy"), MailerRejected("550"))
    delivered = await delivery.deliver_pending(
        uow_factory=store.unit_of_work,
        mailer=mailer,
        secret_box=FakeSecretBox(),
        clock=clock,
        worker_token="worker-1",
        limit=100,
        counters=counters,
    )
    assert delivered == 1
    topic = "email.points_changed"
    assert counters.count(DELIVERIES, kind=topic, outcome="delivered") == 1
    assert counters.count(DELIVERIES, kind=topic, outcome="retry") == 1
    assert counters.count(DELIVERIES, kind=topic, outcome="failed") == 1


@pytest.fixture
async def world(
    merchant: Merchant, store: InMemoryStore, clock: FakeClock, new_customer: NewCustomer
) -> contacts.World:
    platforms = FakeMarketingPlatforms(clock)
    ecomail = platforms.add_account(contacts.KEY)
    ecomail.add_list("Customers", list_id=contacts.LIST)
    await contacts.activate(merchant, store, clock, platforms)
    return contacts.World(merchant, store, clock, platforms, ecomail, new_customer)


async def sync(w: contacts.World, counters: FakeWorkCounters) -> int:
    return await contact_sync.sync_contacts(
        uow_factory=w.uow_factory,
        platforms=w.platforms,
        secret_box=FakeSecretBox(),
        clock=w.clock,
        worker_token="worker-1",
        counters=counters,
    )


async def test_contacts_written_and_left_to_retry_are_counted(world: contacts.World) -> None:
    counters = FakeWorkCounters()
    await world.customer("ann@example.cz")
    await world.customer("bob@example.cz")
    world.ecomail.fail_with = [MarketingUnavailable("down")]
    assert await sync(world, counters) == 0
    assert counters.count(DELIVERIES, kind="ecomail_contacts", outcome="retry") == 2
    world.clock.advance(minutes=10)
    assert await sync(world, counters) == 2
    assert counters.count(DELIVERIES, kind="ecomail_contacts", outcome="delivered") == 2


@dataclass
class JobDeps:
    """The part of ``Deps`` the nightly job reads."""

    uow: Any
    clock: FakeClock
    counters: FakeWorkCounters = field(default_factory=FakeWorkCounters)


async def test_a_nightly_run_counts_its_outcome_time_and_finish(
    merchant: Merchant, store: InMemoryStore, clock: FakeClock
) -> None:
    deps = JobDeps(store.unit_of_work, clock)
    counters = deps.counters
    ctx: dict[str, Any] = {"deps": deps, "worker_token": "w1"}
    today = clock.now().date()
    assert await run_nightly(ctx, merchant.id, today)
    assert counters.count(NIGHTLY_RUNS, outcome="finished") == 1
    assert counters.count(NIGHTLY_SECONDS) >= 0
    assert counters.gauges[NIGHTLY_LAST_FINISHED, ()] == clock.now().timestamp()
    assert not await run_nightly(ctx, merchant.id, today)  # done already: nothing counted
    assert counters.count(NIGHTLY_RUNS, outcome="finished") == 1

    def broken(**_: object) -> Any:
        raise RuntimeError("the database went away")

    deps.uow = broken
    with pytest.raises(RuntimeError):
        await run_nightly(ctx, merchant.id, date(2024, 3, 11))
    assert counters.count(NIGHTLY_RUNS, outcome="failed") == 1


async def test_ecomail_s_429_answers_are_counted() -> None:
    counters = FakeWorkCounters()

    def too_many(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3"}, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(too_many)) as http:
        platform = EcomailMarketingPlatform(http, "key-1234", counters=counters)
        for _ in range(2):
            with pytest.raises(MarketingRateLimited):
                await platform.check_key()
    assert counters.count(ECOMAIL_RATE_LIMITED) == 2
