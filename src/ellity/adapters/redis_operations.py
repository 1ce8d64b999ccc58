"""Heartbeats and counters shared by every process through Redis (the arq queue's Redis,
real or embedded), under the queue's name as a namespace.

- A worker's heartbeat is a key ``<namespace>:heartbeat:<worker token>`` set with a time to
  live of ``HEARTBEAT_WINDOW``: Redis expires it by its own clock, so the processes' clocks
  do not matter, and a killed worker's beat simply runs out. ``workers_seen`` counts the
  keys (a SCAN over that small namespace).
- Counters are fields of the hash ``<namespace>:metrics`` (``HINCRBYFLOAT``), gauges of
  ``<namespace>:metrics:gauges`` (``HSET``); a field names the metric and its labels.

Why Redis and not prometheus-client's multiprocess mode: the counts happen in worker
processes, often on other machines than the web process that serves ``/metrics``, and in as
many web processes as are behind the load balancer; multiprocess mode shares files on one
machine only. Redis is already shared by all of them, and its counts outlive a restart of
any one process. A process buffers its counts and writes them at most once a second (one
round trip, whatever the traffic); what a killed process had not written yet is lost, and
a Redis that comes back empty starts the counters again (Prometheus reads that as a reset).

``LocalWorkCounters`` and ``NoWorkerHeartbeats`` stand in where there is no Redis (one-off
commands, ``ellity worker --burst``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from contextlib import suppress
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ellity.ports.operations import (
    HEARTBEAT_WINDOW,
    OperationsUnavailable,
    Sample,
    Tally,
    WorkCounters,
    WorkerHeartbeats,
)

logger = logging.getLogger(__name__)

REDIS_TIMEOUT = 2.0  # seconds for one round trip
FLUSH_DELAY = 1.0  # seconds a count waits to be written with the others
WARN_EVERY = 60.0  # seconds between two warnings that counts could not be written

T = TypeVar("T")
_Key = tuple[str, tuple[tuple[str, str], ...]]


def _key(name: str, labels: Mapping[str, str]) -> _Key:
    return name, tuple(sorted(labels.items()))


def _field(key: _Key) -> str:
    return json.dumps([key[0], [list(pair) for pair in key[1]]], separators=(",", ":"))


def _sample(field: bytes | str, value: bytes | str) -> Sample | None:
    try:
        name, labels = json.loads(field)
        return Sample(str(name), tuple((str(k), str(v)) for k, v in labels), float(value))
    except (ValueError, TypeError):
        return None  # not ours: skipped


def _glob_escaped(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


class RedisOperations:
    """One Redis connection for both the heartbeats and the counters of a process."""

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str,
        timeout: float = REDIS_TIMEOUT,
        flush_delay: float = FLUSH_DELAY,
    ) -> None:
        self._redis: Redis = Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.heartbeats = RedisWorkerHeartbeats(self._redis, namespace=namespace, timeout=timeout)
        self.counters = RedisWorkCounters(
            self._redis, namespace=namespace, timeout=timeout, flush_delay=flush_delay
        )

    async def aclose(self) -> None:
        try:
            await self.counters.close()
        finally:
            await self._redis.aclose()


async def _ask(redis_call: Awaitable[T], what: str, seconds: float) -> T:
    """One Redis round trip within ``seconds``; Redis's errors become
    ``OperationsUnavailable`` (the text names the operation, never the URL)."""
    try:
        async with asyncio.timeout(seconds):
            return await redis_call
    except (RedisError, OSError, TimeoutError) as exc:
        raise OperationsUnavailable(
            f"Redis did not answer ({what}): {type(exc).__name__}"
        ) from None


class RedisWorkerHeartbeats(WorkerHeartbeats):
    def __init__(self, redis: Redis, *, namespace: str, timeout: float = REDIS_TIMEOUT) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:heartbeat:"
        self._timeout = timeout

    async def ping(self) -> None:
        await _ask(self._redis.ping(), "PING", self._timeout)

    async def beat(self, worker: str) -> None:
        seconds = int(HEARTBEAT_WINDOW.total_seconds())
        beat = self._redis.set(self._prefix + worker, f"{time.time():.3f}", ex=seconds)
        await _ask(beat, "heartbeat", self._timeout)

    async def forget(self, worker: str) -> None:
        try:
            await _ask(self._redis.delete(self._prefix + worker), "forget", self._timeout)
        except OperationsUnavailable as exc:
            logger.warning("the worker's heartbeat stays until it runs out: %s", exc)

    async def workers_seen(self) -> int:
        async def count() -> int:
            pattern = _glob_escaped(self._prefix) + "*"
            return len([key async for key in self._redis.scan_iter(match=pattern, count=500)])

        return await _ask(count(), "heartbeats", self._timeout)


class RedisWorkCounters(WorkCounters):
    """Buffered: ``add`` and ``set`` change this process's buffer and make sure a write is
    on its way within ``flush_delay``. A write that fails keeps the counts for the next."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        timeout: float = REDIS_TIMEOUT,
        flush_delay: float = FLUSH_DELAY,
    ) -> None:
        self._redis = redis
        self._counters_key = f"{namespace}:metrics"
        self._gauges_key = f"{namespace}:metrics:gauges"
        self._timeout = timeout
        self._flush_delay = flush_delay
        self._counts: defaultdict[_Key, float] = defaultdict(float)
        self._gauges: dict[_Key, float] = {}
        self._writer: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()
        self._warned_at = -WARN_EVERY

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counts[_key(name, labels)] += amount
        self._write_soon()

    def set(self, name: str, value: float, **labels: str) -> None:
        self._gauges[_key(name, labels)] = value
        self._write_soon()

    def _write_soon(self) -> None:
        if self._writer is not None and not self._writer.done():
            return
        try:
            self._writer = asyncio.get_running_loop().create_task(self._write_later())
        except RuntimeError:  # no event loop: written by the next count or flush()
            self._writer = None

    async def _write_later(self) -> None:
        await asyncio.sleep(self._flush_delay)
        try:
            await self.flush()
        except OperationsUnavailable as exc:
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                logger.warning("counts for the metrics wait to be written: %s", exc)

    async def flush(self) -> None:
        async with self._writing:
            counts, self._counts = self._counts, defaultdict(float)
            gauges, self._gauges = self._gauges, {}
            if not counts and not gauges:
                return
            pipe = self._redis.pipeline(transaction=False)
            for key, amount in counts.items():
                pipe.hincrbyfloat(self._counters_key, _field(key), amount)
            if gauges:
                pipe.hset(self._gauges_key, mapping={_field(k): v for k, v in gauges.items()})
            try:
                await _ask(pipe.execute(), "counts", self._timeout)
            except OperationsUnavailable:
                for key, amount in counts.items():
                    self._counts[key] += amount
                for key, value in gauges.items():
                    self._gauges.setdefault(key, value)  # a newer value wins
                raise

    async def tally(self) -> Tally:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self._counters_key)
        pipe.hgetall(self._gauges_key)
        counters, gauges = await _ask(pipe.execute(), "counts", self._timeout)
        return Tally(counters=_samples(counters), gauges=_samples(gauges))

    async def close(self) -> None:
        """Write out what is buffered (best effort) and stop the pending write."""
        if self._writer is not None:
            self._writer.cancel()
            with suppress(asyncio.CancelledError):
                await self._writer
        try:
            await self.flush()
        except OperationsUnavailable as exc:
            logger.warning("counts for the metrics not written on shutdown: %s", exc)


def _samples(fields: Mapping[bytes, bytes]) -> tuple[Sample, ...]:
    samples = (_sample(field, value) for field, value in fields.items())
    return tuple(sorted((s for s in samples if s is not None), key=lambda s: (s.name, s.labels)))


class LocalWorkCounters(WorkCounters):
    """This process's counts only (no Redis)."""

    def __init__(self) -> None:
        self._counts: defaultdict[_Key, float] = defaultdict(float)
        self._gauges: dict[_Key, float] = {}

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counts[_key(name, labels)] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._gauges[_key(name, labels)] = value

    async def tally(self) -> Tally:
        return Tally(
            counters=tuple(Sample(n, ls, v) for (n, ls), v in sorted(self._counts.items())),
            gauges=tuple(Sample(n, ls, v) for (n, ls), v in sorted(self._gauges.items())),
        )

    async def flush(self) -> None:
        return None


class NoWorkerHeartbeats(WorkerHeartbeats):
    """Without Redis there is no worker to hear from (``ellity worker`` needs Redis)."""

    async def ping(self) -> None:
        raise OperationsUnavailable("no Redis is configured (REDIS_URL)")

    async def beat(self, worker: str) -> None:
        return None

    async def forget(self, worker: str) -> None:
        return None

    async def workers_seen(self) -> int:
        raise OperationsUnavailable("no Redis is configured (REDIS_URL)")
