"""The nightly runs as a real arq worker runs them, against the real Redis on 127.0.0.1:6379 (a
queue of its own per test) and each storage backend: the cron queues one job per due merchant,
and a job that its time limit cuts off in the middle gives its night back, so the next tick
on the same day queues it again and it finishes, while the other merchant's job is not
affected."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from arq import ArqRedis, create_pool
from arq.worker import Worker

from ellity.adapters.arq_queue import NIGHTLY_JOB, ArqJobQueue, redis_settings
from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import nightly
from ellity.domain.services.points import earn_points
from ellity.ports.queue import JobQueue
from ellity.ports.storage import NightlySchedule, UnitOfWorkFactory
from ellity.worker import WorkerSettings
from tests.fakes import FakeClock, FakeWorkCounters, StallingNightly

REDIS_URL = "redis://127.0.0.1:6379/12"
T0 = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)  # points earned now last through 10 March 2025
TODAY = date(2025, 3, 11)
TICK = datetime(2025, 3, 11, 2, 15, tzinfo=ZoneInfo("Europe/Prague"))
TIME_LIMIT = 2.0  # seconds: the test's stand-in for the job's time limit (30 minutes)


@dataclass(frozen=True)
class JobDeps:
    """What the nightly jobs and the cron take from the worker's ``Deps``."""

    uow: UnitOfWorkFactory
    clock: FakeClock
    queue: JobQueue
    counters: FakeWorkCounters = field(default_factory=FakeWorkCounters)


@pytest.fixture
def queue_name() -> str:
    return f"ellity-test-nightly:{uuid.uuid4().hex}"


@pytest.fixture
async def redis() -> AsyncIterator[ArqRedis]:
    pool = await create_pool(redis_settings(REDIS_URL))
    yield pool
    await pool.aclose(close_connection_pool=True)


async def open_shop(uow_factory: UnitOfWorkFactory, slug: str) -> tuple[MerchantId, CustomerId]:
    """A merchant with one customer holding 10 points that expired at the end of 10 March
    2025; the merchant's id and the customer's."""
    async with uow_factory() as uow:
        merchant = await uow.merchants.add(
            Merchant(slug=slug, settings=MerchantSettings(name=slug.title())), at=T0
        )
        assert merchant.id is not None
        customer = await uow.customers.add(
            Customer(
                merchant_id=merchant.id,
                referral_code=f"{slug[:3].upper()}00001",
                created_at=T0,
                updated_at=T0,
                email=f"ann@{slug}.example.cz",
            )
        )
        await uow.commit()
    assert customer.id is not None
    await earn_points(
        merchant.id,
        customer.id,
        Points.parse("10"),
        order_ref=f"o-{slug}",
        uow=uow_factory(),
        clock=FakeClock(T0),
    )
    return merchant.id, customer.id


async def balance(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId
) -> Points:
    """The balance as stored: read on the day the points were earned, before any expiry."""
    async with uow_factory(read_only=True) as uow:
        [row] = await uow.ledgers.loyalty(merchant_id, [customer_id], today=T0.date())
    return row.summary.balance


async def schedules(uow_factory: UnitOfWorkFactory) -> list[NightlySchedule]:
    async with uow_factory(read_only=True) as uow:
        return await uow.merchants.nightly_schedules()


async def work_off(queue_name: str, deps: JobDeps) -> Worker:
    """A worker with the nightly job as the worker declares it (time limit aside) drains the
    queue, then stops; it tells how many jobs completed and failed."""
    [function] = [f for f in WorkerSettings.functions if f.name == NIGHTLY_JOB]
    worker = Worker(
        functions=[dataclasses.replace(function, timeout_s=TIME_LIMIT)],
        redis_settings=redis_settings(REDIS_URL),
        queue_name=queue_name,
        burst=True,
        handle_signals=False,
        poll_delay=0.05,
        ctx={"deps": deps, "worker_token": f"worker-{uuid.uuid4().hex[:8]}"},
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker


async def test_a_job_cut_off_by_its_time_limit_is_queued_again_by_the_next_tick_and_finishes(
    uow_factory: UnitOfWorkFactory, queue_name: str, redis: ArqRedis
) -> None:
    anna, ann = await open_shop(uow_factory, "anna")
    bob, bea = await open_shop(uow_factory, "bob")
    clock = FakeClock(TICK)
    queue = ArqJobQueue(REDIS_URL, queue_name=queue_name)
    try:
        deps = JobDeps(uow_factory, clock, queue)
        for _ in range(2):  # two ticks before any worker: still one job per merchant and date
            await nightly.queue_due_nightlies(uow_factory=uow_factory, clock=clock, queue=queue)
        jobs = await redis.queued_jobs(queue_name=queue_name)
        assert sorted((job.job_id, tuple(job.args)) for job in jobs) == [
            (f"{queue_name}:nightly:{anna}:{TODAY}", (anna, TODAY)),
            (f"{queue_name}:nightly:{bob}:{TODAY}", (bob, TODAY)),
        ]

        # Anna's run stalls after claiming her night: the time limit cancels it there
        stalling = StallingNightly(uow_factory, anna, stall_at=1, inside="read")
        worker = await work_off(queue_name, dataclasses.replace(deps, uow=stalling))
        assert stalling.stalled.is_set()
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 1)
        assert await balance(uow_factory, anna, ann) == Points.parse("10")
        assert await balance(uow_factory, bob, bea) == Points.parse("0")  # Bob's job finished
        assert await schedules(uow_factory) == [
            NightlySchedule(anna, "Europe/Prague", None),  # given back, not done
            NightlySchedule(bob, "Europe/Prague", TODAY),
        ]

        clock.set(TICK.replace(minute=30))  # the next tick, the same local day
        due = await nightly.queue_due_nightlies(uow_factory=uow_factory, clock=clock, queue=queue)
        assert [(d.merchant_id, d.local_date) for d in due] == [(anna, TODAY)]
        worker = await work_off(queue_name, deps)
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
        assert await balance(uow_factory, anna, ann) == Points.parse("0")
        assert await schedules(uow_factory) == [
            NightlySchedule(anna, "Europe/Prague", TODAY),
            NightlySchedule(bob, "Europe/Prague", TODAY),
        ]
    finally:
        await queue.close()
