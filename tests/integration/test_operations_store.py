"""The workers' heartbeats and the shared counters (``ports.operations``), on the fakes and
on the real Redis at 127.0.0.1:6379 (``ELLITY_TEST_REDIS_URL``), each test in a namespace of
its own; and the Ecomail request budget each limiter reports."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from ellity.adapters.ecomail.limiter import (
    LocalRequestLimiter,
    RedisRequestLimiter,
    RequestLimiter,
)
from ellity.adapters.redis_operations import (
    LocalWorkCounters,
    NoWorkerHeartbeats,
    RedisOperations,
)
from ellity.ports.operations import (
    HEARTBEAT_WINDOW,
    OperationsUnavailable,
    Sample,
    WorkCounters,
    WorkerHeartbeats,
)
from tests.fakes import FakeClock, FakeWorkCounters, FakeWorkerHeartbeats
from tests.processes import free_port

REDIS_URL = os.environ.get("ELLITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Store:
    """Two processes' views of one store, and a way to make time pass the window."""

    heartbeats: WorkerHeartbeats
    other: WorkerHeartbeats  # another process of the same deployment
    stranger: WorkerHeartbeats  # another deployment (namespace) on the same store
    outlive_window: Callable[[str], Awaitable[None]]


@pytest.fixture(params=["fake", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "fake":
        clock = FakeClock()
        shared = FakeWorkerHeartbeats(clock)

        async def advance(worker: str) -> None:
            clock.advance(seconds=HEARTBEAT_WINDOW.total_seconds())

        yield Store(shared, shared, FakeWorkerHeartbeats(clock), advance)
        return
    namespace = f"ellity-test-ops:{uuid.uuid4().hex}"
    ours, theirs, strangers = (
        RedisOperations(REDIS_URL, namespace=namespace),
        RedisOperations(REDIS_URL, namespace=namespace),
        RedisOperations(REDIS_URL, namespace=namespace + "-other"),
    )
    redis = Redis.from_url(REDIS_URL)

    async def expire(worker: str) -> None:
        # what Redis does when the key's time to live has passed
        key = f"{namespace}:heartbeat:{worker}"
        ttl = await redis.ttl(key)
        assert 0 < ttl <= HEARTBEAT_WINDOW.total_seconds()
        await redis.pexpire(key, 1)
        await asyncio.sleep(0.01)

    try:
        yield Store(ours.heartbeats, theirs.heartbeats, strangers.heartbeats, expire)
    finally:
        for operations in (ours, theirs, strangers):
            await operations.aclose()
        await redis.aclose()


async def test_a_worker_is_seen_from_its_beat_until_the_window_passes(store: Store) -> None:
    await store.heartbeats.ping()
    assert await store.heartbeats.workers_seen() == 0
    await store.heartbeats.beat("host:1:a")
    assert await store.other.workers_seen() == 1
    await store.outlive_window("host:1:a")
    assert await store.other.workers_seen() == 0


async def test_every_worker_of_the_deployment_counts_and_no_other_deployment(
    store: Store,
) -> None:
    await store.heartbeats.beat("host:1:a")
    await store.other.beat("host:2:b")
    await store.heartbeats.beat("host:1:a")  # a beat again is the same worker
    await store.stranger.beat("elsewhere:1:c")
    assert await store.heartbeats.workers_seen() == 2
    assert await store.stranger.workers_seen() == 1


async def test_a_worker_that_stops_is_forgotten_at_once(store: Store) -> None:
    await store.heartbeats.beat("host:1:a")
    await store.other.beat("host:2:b")
    await store.heartbeats.forget("host:1:a")
    assert await store.other.workers_seen() == 1


async def test_a_store_that_does_not_answer_says_so() -> None:
    fake = FakeWorkerHeartbeats(FakeClock())
    fake.down = True
    closed = RedisOperations(f"redis://127.0.0.1:{free_port()}/0", namespace="x", timeout=1)
    try:
        for heartbeats in (fake, closed.heartbeats, NoWorkerHeartbeats()):
            with pytest.raises(OperationsUnavailable):
                await heartbeats.ping()
            with pytest.raises(OperationsUnavailable):
                await heartbeats.workers_seen()
        with pytest.raises(OperationsUnavailable):
            await closed.heartbeats.beat("host:1:a")
        await closed.heartbeats.forget("host:1:a")  # best effort: no error
    finally:
        await closed.aclose()


# -- counters ---------------------------------------------------------------------------


@pytest.fixture(params=["fake", "local", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[list[WorkCounters]]:
    """Two processes' counters of one deployment (the same object without Redis)."""
    if request.param != "redis":
        one: WorkCounters = FakeWorkCounters() if request.param == "fake" else LocalWorkCounters()
        yield [one, one]
        return
    namespace = f"ellity-test-ops:{uuid.uuid4().hex}"
    processes = [RedisOperations(REDIS_URL, namespace=namespace) for _ in range(2)]
    try:
        yield [p.counters for p in processes]
    finally:
        for p in processes:
            await p.aclose()


async def test_counts_of_every_process_add_up_and_gauges_keep_the_latest(
    counters: list[WorkCounters],
) -> None:
    web, worker = counters
    worker.add("deliveries", kind="ecomail.event", outcome="delivered")
    worker.add("deliveries", 2, outcome="delivered", kind="ecomail.event")  # labels' order
    web.add("deliveries", kind="ecomail.event", outcome="retry")
    worker.add("ecomail_rate_limited")
    web.add("ecomail_rate_limited")
    worker.set("nightly_last_finished", 100.0)
    worker.set("nightly_last_finished", 200.5)
    for each in counters:
        await each.flush()
    tally = await web.tally()
    assert sorted(tally.counters, key=lambda s: (s.name, s.labels)) == [
        Sample("deliveries", (("kind", "ecomail.event"), ("outcome", "delivered")), 3.0),
        Sample("deliveries", (("kind", "ecomail.event"), ("outcome", "retry")), 1.0),
        Sample("ecomail_rate_limited", (), 2.0),
    ]
    assert tally.gauges == (Sample("nightly_last_finished", (), 200.5),)


async def test_counts_are_written_shortly_without_being_flushed() -> None:
    namespace = f"ellity-test-ops:{uuid.uuid4().hex}"
    worker = RedisOperations(REDIS_URL, namespace=namespace, flush_delay=0.05)
    web = RedisOperations(REDIS_URL, namespace=namespace)
    try:
        for _ in range(100):
            worker.counters.add("deliveries", kind="k", outcome="delivered")
        await asyncio.sleep(0.3)
        assert (await web.counters.tally()).counters == (
            Sample("deliveries", (("kind", "k"), ("outcome", "delivered")), 100.0),
        )
    finally:
        await worker.aclose()
        await web.aclose()


async def test_counts_that_could_not_be_written_are_kept_and_never_raise_where_counted() -> None:
    closed = RedisOperations(
        f"redis://127.0.0.1:{free_port()}/0", namespace="x", timeout=0.5, flush_delay=0.01
    )
    try:
        closed.counters.add("deliveries", kind="k", outcome="failed")
        await asyncio.sleep(0.1)  # the write in the background failed, and was logged
        with pytest.raises(OperationsUnavailable):
            await closed.counters.flush()
        with pytest.raises(OperationsUnavailable):
            await closed.counters.tally()
    finally:
        await closed.aclose()  # logs that the counts are lost; no error


# -- the Ecomail budget as the limiters report it ---------------------------------------


@pytest.fixture(params=["local", "redis"])
async def limiter(
    request: pytest.FixtureRequest,
) -> AsyncIterator[LocalRequestLimiter | RedisRequestLimiter]:
    if request.param == "local":
        yield LocalRequestLimiter(limit=5, window=0.5)
        return
    redis = RedisRequestLimiter(
        REDIS_URL, limit=5, window=0.5, prefix=f"ellity-test-budget:{uuid.uuid4().hex}"
    )
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_the_budget_used_counts_each_keys_requests_in_the_current_window(
    limiter: LocalRequestLimiter | RedisRequestLimiter,
) -> None:
    taking: RequestLimiter = limiter
    assert await limiter.used() == {}
    for _ in range(3):
        await taking.acquire("aaaa")
    await taking.acquire("bbbb")
    assert await limiter.used() == {"aaaa": 3, "bbbb": 1}
    assert limiter.limit == 5
    await asyncio.sleep(0.6)  # the window passed
    assert await limiter.used() == {}
