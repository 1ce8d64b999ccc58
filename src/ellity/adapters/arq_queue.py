"""Nudging the worker through arq (Redis).

A nudge queues a ``deliver_outbox`` job. Many nudges close together become one job: the job
id names a half-second slot and the job is deferred to the slot's end, so the job always
starts after every commit that nudged it (no nudge is lost to a job that already claimed), and
a burst of commits costs one job per slot. A nudge for a later time gets the id of that
second. arq keeps no result of these jobs (``keep_result=0`` in the worker), so an id is free
again as soon as its job has run. A process asks Redis once per slot: later nudges in the same
slot are covered by the job already queued (a burst of webhook requests costs no Redis call
each).

The nightly run of a merchant is a ``run_nightly`` job of its own, one per merchant and local
date: its id names both, so a second tick (or worker) asking for it while it waits or runs
queues nothing more, and as arq keeps no result of it (``keep_result=0``), a run that failed
or was cancelled can be queued again by the next tick.

A process talks to Redis one nudge at a time, each given ``NUDGE_TIMEOUT``. After a nudge
fails or times out, the process leaves Redis alone for a while (``BACKOFF_FIRST`` seconds,
doubled after each further failure up to ``BACKOFF_MAX``): the nudges waiting meanwhile and
those of the back-off period are dropped at once, and the worker's minute cron delivers their
work. A Redis that accepts connections and never answers so costs one timeout per back-off
period, not one per commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from redis.exceptions import RedisError

from ellity.domain.model.ids import MerchantId

logger = logging.getLogger(__name__)

DELIVER_JOB = "deliver_outbox"
NIGHTLY_JOB = "run_nightly"
RECONCILE_JOB = "run_reconciliation"
SLOT_SECONDS = 0.5
NUDGE_TIMEOUT = 1.0
BACKOFF_FIRST = 5.0  # seconds without nudges after a failed one, doubled after each failure
BACKOFF_MAX = 30.0


def redis_settings(redis_url: str) -> RedisSettings:
    return RedisSettings.from_dsn(redis_url)


class ArqJobQueue:
    def __init__(
        self,
        redis_url: str,
        *,
        queue_name: str,
        nudge_timeout: float = NUDGE_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = dataclasses.replace(redis_settings(redis_url), conn_retries=0)
        self._queue_name = queue_name
        self._nudge_timeout = nudge_timeout
        self._monotonic = monotonic
        self._pool: ArqRedis | None = None
        self._talking = asyncio.Lock()  # one nudge at a time talks to Redis
        self._queued_slot = 0  # the last slot this process queued a job for
        self._quiet_until = 0.0  # no nudges before this (time.monotonic) after a failure
        self._backoff = 0.0  # the last back-off period; 0 after a nudge went through

    async def nudge_delivery(self, *, at: datetime | None = None) -> None:
        if self._backing_off():
            return
        slot = 0
        if at is None:
            slot = int(time.time() / SLOT_SECONDS) + 1
            if slot == self._queued_slot:
                return  # that job starts after this commit anyway: no need to ask Redis again
            job_id = f"{self._queue_name}:deliver:slot:{slot}"
            at = datetime.fromtimestamp(slot * SLOT_SECONDS, UTC)
        else:
            job_id = f"{self._queue_name}:deliver:at:{int(at.timestamp())}"
        async with self._talking:
            if self._backing_off() or (slot and slot == self._queued_slot):
                return  # the nudge before this one failed, or queued this slot's job
            failure = await self._enqueue(DELIVER_JOB, job_id=job_id, _defer_until=at)
            if failure is not None:
                self._back_off()
                logger.warning(
                    "could not nudge the worker (%s); no nudges for %.0f s, it delivers within"
                    " a minute anyway",
                    failure,
                    self._backoff,
                )
                return
            self._backoff = 0.0
            if slot:
                self._queued_slot = slot

    def _backing_off(self) -> bool:
        return self._monotonic() < self._quiet_until

    def _back_off(self) -> None:
        self._backoff = min(BACKOFF_MAX, self._backoff * 2 or BACKOFF_FIRST)
        self._quiet_until = self._monotonic() + self._backoff

    async def queue_nightly(self, merchant_id: MerchantId, *, local_date: date) -> None:
        job_id = f"{self._queue_name}:nightly:{merchant_id}:{local_date.isoformat()}"
        async with self._talking:  # one talk to Redis at a time, as for the nudges
            failure = await self._enqueue(NIGHTLY_JOB, merchant_id, local_date, job_id=job_id)
        if failure is not None:
            logger.warning(
                "could not queue the nightly run of merchant %s (%s); the next tick asks again",
                merchant_id,
                failure,
            )

    async def queue_reconciliation(self, merchant_id: MerchantId) -> None:
        job_id = f"{self._queue_name}:reconcile:{merchant_id}"
        async with self._talking:
            failure = await self._enqueue(RECONCILE_JOB, merchant_id, job_id=job_id)
        if failure is not None:
            logger.warning(
                "could not queue the reconciliation of merchant %s (%s); the next tick asks again",
                merchant_id,
                failure,
            )

    async def _enqueue(self, function: str, *args: Any, job_id: str, **options: Any) -> str | None:
        """Queue one job within the nudge timeout (the caller holds ``_talking``); None when
        it went through, else what went wrong."""
        try:
            async with asyncio.timeout(self._nudge_timeout):
                pool = await self._connected()
                await pool.enqueue_job(
                    function, *args, _job_id=job_id, _queue_name=self._queue_name, **options
                )
        except (RedisError, OSError, TimeoutError) as exc:
            return str(exc) or type(exc).__name__
        return None

    async def _connected(self) -> ArqRedis:
        if self._pool is None:
            self._pool = await create_pool(self._settings, default_queue_name=self._queue_name)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose(close_connection_pool=True)
            self._pool = None


class NoJobQueue:
    """Without Redis (one-off commands): nothing to nudge; a worker delivers on its cron."""

    async def nudge_delivery(self, *, at: datetime | None = None) -> None:
        return None

    async def queue_nightly(self, merchant_id: MerchantId, *, local_date: date) -> None:
        return None  # no worker ticks without Redis; ``ellity run-nightly`` runs it by hand

    async def queue_reconciliation(self, merchant_id: MerchantId) -> None:
        return None  # ``ellity ecomail reconcile`` runs it by hand

    async def close(self) -> None:
        return None
