"""Pacing the calls to Ecomail: at most N requests per sliding window for each API key.

Ecomail allows 1,000 requests per minute per API key and answers 429 beyond that. Ellity
stays under it on its own side, across every worker process, so that one merchant's big import
neither burns 429s nor starves its other work:

- The budget is per API key, not per merchant: it is Ecomail's key that is counted, so two
  merchants who (oddly) share one key share one budget. The limiter key is a hash of the API
  key (``limiter_key``), so Redis never holds the key itself.
- The default budget is 950 requests in any 62 seconds. Ecomail counts requests when they
  arrive, Ellity when they leave; a request held up on a slow connection can arrive after one
  sent later, so a burst sent as a slot frees could land inside Ecomail's minute. The two extra
  seconds absorb that; the 50 fewer requests leave room for the merchant's other tools.
- ``acquire`` takes a slot, waiting when one frees up soon (``max_wait``, 5 s by default);
  otherwise it raises ``BudgetExhausted`` with the wait: nothing was sent, and the caller
  defers its work without counting an attempt.
- ``block(key, seconds)`` records Ecomail's ``Retry-After``: every process waits it out before
  its next call with that key (also through ``BudgetExhausted``).
- ``acquire(key, share=0.3)`` is background work's call (the reconciliation of a list): the
  slot counts against the key's whole budget as usual and also against the key's share lane,
  a second log that holds at most ``max(1, floor(share * limit))`` requests per window. A slot
  is taken in both logs or in neither, so the background work never takes more than its share
  and the live sync keeps the rest. Every caller with a share uses the key's one lane, each
  stopping at its own share of it. A hold caused by the lane is ``BudgetHold.SPENT`` with the
  lane's wait; ``used()`` still counts every request of the key.

``RedisRequestLimiter`` shares the budget through Redis (a sliding log in a sorted set, checked
and updated by one Lua script, timed by the Redis server's clock so the workers' clocks do not
matter). When Redis cannot be reached it raises ``MarketingUnavailable`` rather than letting
traffic through unpaced. ``LocalRequestLimiter`` has the same rules inside one process, for runs
without Redis (``ellity worker --burst``, one-off commands); it starts empty with the process.

A restart never resets the budget:

- Every key's log has a marker saying since when it is complete. A Redis that keeps its data
  (append-only file: the embedded server of ``ellity serve`` writes one in ``var/``, as may an
  operator's Redis) brings the log and the marker back, and the budget goes on where it was.
- A Redis that comes back empty has lost the marker. When the limiter finds none, it asks Redis
  how long it has kept its data: with the append-only file on, or up longer than the window,
  the log holds every request of the window (a key without a marker has had no traffic). A
  Redis started less than a window ago without it may have lost requests sent just before:
  the limiter treats that part of the window as full and sends nothing with the key until a
  whole window has passed since the server started (at most 62 s, only after such a restart).
  A Redis that persists only RDB snapshots restores an old log: run Redis either with the
  append-only file or without persistence.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ellity.ports.marketing import (
    BudgetExhausted,
    BudgetHold,
    MarketingUnavailable,
    check_share,
)
from ellity.ports.operations import OperationsUnavailable

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 950  # requests per window; Ecomail's own limit is 1,000 a minute
DEFAULT_WINDOW = 62.0  # seconds: Ecomail's minute plus an allowance for network delays
DEFAULT_MAX_WAIT = 5.0  # seconds acquire() may sleep before giving up
DEFAULT_PREFIX = "ellity:ecomail:limit"
REDIS_TIMEOUT = 2.0  # seconds for one Redis round trip


def limiter_key(api_key: str) -> str:
    """The budget's name for an API key: 64 bits of its SHA-256, never the key itself."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class RequestLimiter(Protocol):
    async def acquire(self, key: str, *, share: float | None = None) -> None:
        """Take one request slot; with a ``share`` (0 < share <= 1) also one of the key's share
        lane. Raises ``BudgetExhausted`` (wait ``retry_after``, nothing was sent) or
        ``MarketingUnavailable`` (the budget cannot be checked)."""
        ...

    async def block(self, key: str, seconds: float) -> None:
        """Ecomail said "retry after ``seconds``": no slot for ``key`` until then."""
        ...

    async def aclose(self) -> None: ...


class Hold(IntEnum):
    """Why no slot is free now (the Lua script's numbers)."""

    BUDGET = 0  # the window's requests are spent
    RETRY_AFTER = 1  # Ecomail's Retry-After is running
    RESTART = 2  # Redis came back empty less than a window ago


class _WaitingLimiter:
    """The waiting rule shared by both limiters; subclasses say how long a slot is away."""

    def __init__(self, *, limit: int, window: float, max_wait: float) -> None:
        if limit < 1 or window <= 0 or max_wait < 0:
            raise ValueError("limit must be at least 1, window positive, max_wait not negative")
        self.limit = limit
        self.window = window
        self.max_wait = max_wait

    def lane_limit(self, share: float) -> int:
        """Requests per window of the share lane for ``share`` of the budget."""
        check_share(share)
        return max(1, math.floor(share * self.limit + 1e-9))  # 0.3 * 10 is 3, not 2.99...

    async def _attempt(self, key: str, lane_limit: int | None) -> tuple[float, Hold]:
        """Take a slot (and one of the lane's, with a ``lane_limit``) and return ``(0, ...)``,
        or return the seconds to wait and why."""
        raise NotImplementedError

    async def acquire(self, key: str, *, share: float | None = None) -> None:
        lane_limit = None if share is None else self.lane_limit(share)
        deadline = time.monotonic() + self.max_wait
        while True:
            wait, hold = await self._attempt(key, lane_limit)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise BudgetExhausted(retry_after=wait, hold=_HOLDS[hold])
            await asyncio.sleep(wait)


_HOLDS = {
    Hold.BUDGET: BudgetHold.SPENT,
    Hold.RETRY_AFTER: BudgetHold.SLOW_DOWN,
    Hold.RESTART: BudgetHold.COUNT_LOST,
}


class LocalRequestLimiter(_WaitingLimiter):
    """The same budget inside one process (no Redis)."""

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        super().__init__(limit=limit, window=window, max_wait=max_wait)
        self._log: dict[str, deque[float]] = {}
        self._lanes: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    async def _attempt(self, key: str, lane_limit: int | None) -> tuple[float, Hold]:
        # No await inside: the check and the update are one step on the event loop.
        now = time.monotonic()
        blocked = self._blocked_until.get(key, 0.0) - now
        if blocked > 0:
            return blocked, Hold.RETRY_AFTER
        log = self._pruned(self._log, key, now)
        wait = _free_in(log, self.limit, self.window, now)
        lane = None
        if lane_limit is not None:
            lane = self._pruned(self._lanes, key, now)
            wait = max(wait, _free_in(lane, lane_limit, self.window, now))
        if wait > 0:
            return wait, Hold.BUDGET
        log.append(now)
        if lane is not None:
            lane.append(now)
        return 0.0, Hold.BUDGET

    def _pruned(self, logs: dict[str, deque[float]], key: str, now: float) -> deque[float]:
        log = logs.setdefault(key, deque())
        while log and log[0] <= now - self.window:
            log.popleft()
        return log

    async def block(self, key: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    async def used(self) -> dict[str, int]:
        """Requests taken in the current window per key (``ports.operations.RequestBudget``)."""
        since = time.monotonic() - self.window
        counts = {key: sum(1 for sent in log if sent > since) for key, log in self._log.items()}
        return {key: count for key, count in counts.items() if count}

    async def aclose(self) -> None:
        self._log.clear()
        self._lanes.clear()
        self._blocked_until.clear()


def _free_in(log: deque[float], limit: int, window: float, now: float) -> float:
    """Seconds until ``log`` holds fewer than ``limit`` times of the last ``window``; 0 now."""
    if len(log) < limit:
        return 0.0
    # the time that must leave the window before one more fits (the log may hold more than
    # ``limit`` when a caller with a larger share filled it)
    return max(log[len(log) - limit] + window - now, 0.001)


# KEYS[1]: the sorted set of recent requests (score: server time in ms); KEYS[2]: the
# "blocked until" marker; KEYS[3]: since when (server ms) the log is complete; KEYS[4]: the
# share lane's log. ARGV: limit, window in ms, a unique member for this request, how many ms
# the store has kept its data ("" when not asked yet), and the lane's limit ("" for a request
# outside the lane). A slot is taken in both logs or in neither. Returns {0, 0} when a slot
# was taken, {-1, 0} when the store must be asked (no marker), else {ms to wait, Hold}.
_ACQUIRE = """
local blocked = redis.call('PTTL', KEYS[2])
if blocked > 0 then return {blocked, 1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local since = tonumber(redis.call('GET', KEYS[3]))
if not since then
  if ARGV[4] == '' then return {-1, 0} end
  since = math.max(0, now - tonumber(ARGV[4]))
  redis.call('SET', KEYS[3], since)
end
redis.call('PEXPIRE', KEYS[3], 2 * window)
if now < since + window then return {since + window - now, 2} end
local function free_in(log, limit)
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  local count = redis.call('ZCARD', log)
  if count < limit then return 0 end
  local leaving = redis.call('ZRANGE', log, count - limit, count - limit, 'WITHSCORES')
  return math.max(1, tonumber(leaving[2]) + window - now)
end
local wait = free_in(KEYS[1], tonumber(ARGV[1]))
local lane = ARGV[5] ~= ''
if lane then wait = math.max(wait, free_in(KEYS[4], tonumber(ARGV[5]))) end
if wait > 0 then return {wait, 0} end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
if lane then
  redis.call('ZADD', KEYS[4], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[4], window)
end
return {0, 0}
"""

# KEYS[1]: the "blocked until" marker; ARGV[1]: ms. Only ever lengthens a block.
_BLOCK = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


class RedisRequestLimiter(_WaitingLimiter):
    """The budget shared by every process that uses the same Redis and ``prefix``.

    Pass a URL (the limiter owns the connection and closes it in ``aclose``) or a
    ``redis.asyncio.Redis`` client (the caller closes it).
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        max_wait: float = DEFAULT_MAX_WAIT,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = REDIS_TIMEOUT,
    ) -> None:
        super().__init__(limit=limit, window=window, max_wait=max_wait)
        if isinstance(redis, str):
            self._redis: Redis = Redis.from_url(
                redis, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._owns_redis = True
        else:
            self._redis = redis
            self._owns_redis = False
        self._prefix = prefix
        self._timeout = timeout
        self._acquire_script = self._redis.register_script(_ACQUIRE)
        self._block_script = self._redis.register_script(_BLOCK)

    def _keys(self, key: str) -> list[str]:
        # One hash tag for all four keys, so a Redis Cluster keeps them on one node. The
        # lane's name does not end in ":log": ``used()`` counts only the whole logs.
        return [
            f"{self._prefix}:{{{key}}}:log",
            f"{self._prefix}:{{{key}}}:blocked",
            f"{self._prefix}:{{{key}}}:since",
            f"{self._prefix}:{{{key}}}:share-lane",
        ]

    async def _attempt(self, key: str, lane_limit: int | None) -> tuple[float, Hold]:
        window_ms = max(1, round(self.window * 1000))
        lane = "" if lane_limit is None else lane_limit
        args: list[Any] = [self.limit, window_ms, uuid.uuid4().hex, "", lane]
        keys = self._keys(key)
        reply = await self._run(lambda: self._acquire_script(keys=keys, args=args))
        if int(reply[0]) == -1:  # no marker: the log may have been lost with a restart
            args[3] = await self._kept_for_ms()
            reply = await self._run(lambda: self._acquire_script(keys=keys, args=args))
        wait_ms, hold = int(reply[0]), Hold(int(reply[1]))
        return max(wait_ms, 0) / 1000, hold

    async def _kept_for_ms(self) -> int:
        """How long Redis has kept its data: for ever with the append-only file on (it comes
        back after a restart), else since it started."""
        info = await self._run(self._redis.info)
        if int(info.get("aof_enabled", 0)) == 1:
            return 2**52  # beyond any window; exact in Lua's numbers
        return int(info.get("uptime_in_seconds", 0)) * 1000

    async def block(self, key: str, seconds: float) -> None:
        ms = math.ceil(seconds * 1000)
        if ms > 0:
            keys = self._keys(key)[1:2]
            await self._run(lambda: self._block_script(keys=keys, args=[ms]))

    async def used(self) -> dict[str, int]:
        """Requests taken in the current window per key (``ports.operations.RequestBudget``):
        the keys' logs found by a SCAN, each counted on the Redis server's clock."""
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self._prefix) + ":{*}:log"
        try:
            async with asyncio.timeout(self._timeout):
                logs = [key async for key in self._redis.scan_iter(match=pattern, count=500)]
                seconds, micros = await self._redis.time()
                since = seconds * 1000 + micros // 1000 - max(1, round(self.window * 1000))
                pipe = self._redis.pipeline(transaction=False)
                for log in logs:
                    pipe.zcount(log, f"({since}", "+inf")
                counts = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise OperationsUnavailable(
                f"the request budget cannot be read: {type(exc).__name__}"
            ) from None
        used = {}
        for log, count in zip(logs, counts, strict=True):
            name = log.decode() if isinstance(log, bytes) else str(log)
            if count:
                used[name.removeprefix(self._prefix + ":{").removesuffix("}:log")] = int(count)
        return used

    async def _run(self, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning(
                "the Ecomail request limiter cannot reach Redis: %s", str(exc) or type(exc).__name__
            )
            raise MarketingUnavailable(
                "Ellity cannot pace its calls to Ecomail right now; it will try again shortly."
            ) from None

    async def aclose(self) -> None:
        if self._owns_redis:
            await self._redis.aclose()


def request_limiter(
    redis_url: str | None,
    *,
    limit: int = DEFAULT_LIMIT,
    window: float = DEFAULT_WINDOW,
    max_wait: float = DEFAULT_MAX_WAIT,
) -> RedisRequestLimiter | LocalRequestLimiter:
    """Shared through Redis when there is one, else this process's own."""
    if redis_url:
        return RedisRequestLimiter(redis_url, limit=limit, window=window, max_wait=max_wait)
    return LocalRequestLimiter(limit=limit, window=window, max_wait=max_wait)
