"""What an operator asks of a running Ellity: is it ready to work (``check_readiness``), and
how are its queues, budget and workers doing (``operations_snapshot``).

Both read only; each check or source is bounded by a timeout and reported on its own, so a
database or Redis that hangs makes its own check fail, not the answer. What a check reports
is fixed text and the names of error types: never an error's message, which could hold a
connection URL with its password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from ellity.ports.clock import Clock
from ellity.ports.operations import (
    HEARTBEAT_WINDOW,
    OperationsUnavailable,
    QueueStats,
    QueueStatsSource,
    RequestBudget,
    SchemaVersion,
    Tally,
    WorkCounters,
    WorkerHeartbeats,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_SECONDS = 3.0  # one readiness check; /ready answers within about this long
OK = "ok"


@dataclass(frozen=True, slots=True)
class Readiness:
    """Each check's name and ``ok``, or what is wrong."""

    checks: Mapping[str, str]

    @property
    def ready(self) -> bool:
        return all(result == OK for result in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, result in self.checks.items() if result != OK]


async def _run(check: Callable[[], Awaitable[str]], seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            return await check()
    except TimeoutError:
        return f"no answer within {seconds:g} s"
    except OperationsUnavailable as exc:
        return str(exc)  # our own text: names the operation and an error type
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer, not an error
        return f"unreachable ({type(exc).__name__})"


async def check_readiness(
    *,
    ping_database: Callable[[], Awaitable[None]],
    schema: SchemaVersion,
    heartbeats: WorkerHeartbeats,
    seconds: float = CHECK_SECONDS,
) -> Readiness:
    """Ready when the database answers and is at the code's migration revision, Redis
    answers, and a worker beat within ``HEARTBEAT_WINDOW``. The checks run at once."""

    async def database() -> str:
        await ping_database()
        return OK

    async def migrations() -> str:
        revisions = await schema.revisions()
        if revisions.current:
            return OK
        return (
            f"the database is at revision {revisions.database or 'none'}, the code at"
            f" {revisions.code}: run `ellity migrate`"
        )

    async def redis() -> str:
        await heartbeats.ping()
        return OK

    async def worker() -> str:
        if await heartbeats.workers_seen() > 0:
            return OK
        window = int(HEARTBEAT_WINDOW.total_seconds())
        return f"no worker heartbeat in the last {window} s"

    names = ("database", "migrations", "redis", "worker")
    results = await asyncio.gather(
        *(_run(check, seconds) for check in (database, migrations, redis, worker))
    )
    return Readiness(dict(zip(names, results, strict=True)))


@dataclass(frozen=True, slots=True)
class OperationsSnapshot:
    """What ``/metrics`` shows. A source that did not answer leaves its part ``None`` (and
    is named in ``unavailable``), the rest is still shown."""

    at: datetime
    queues: list[QueueStats] | None
    tally: Tally | None
    budget_used: Mapping[str, int] | None
    budget_limit: int
    workers_seen: int | None

    @property
    def unavailable(self) -> list[str]:
        parts = {
            "database": self.queues,
            "counters": self.tally,
            "budget": self.budget_used,
            "heartbeats": self.workers_seen,
        }
        return [name for name, value in parts.items() if value is None]


async def operations_snapshot(
    *,
    queue_stats: QueueStatsSource,
    counters: WorkCounters,
    budget: RequestBudget,
    heartbeats: WorkerHeartbeats,
    clock: Clock,
    seconds: float = CHECK_SECONDS,
) -> OperationsSnapshot:
    """The queues' state from the database (one query per queue), and from Redis the
    counts of every process, the Ecomail budget taken and the workers seen."""
    now = clock.now()

    queues, tally, used, seen = await asyncio.gather(
        _read("queues", lambda: queue_stats.queue_stats(now=now), seconds),
        _read("counters", counters.tally, seconds),
        _read("Ecomail budget", budget.used, seconds),
        _read("heartbeats", heartbeats.workers_seen, seconds),
    )
    return OperationsSnapshot(
        at=now,
        queues=queues,
        tally=tally,
        budget_used=used,
        budget_limit=budget.limit,
        workers_seen=seen,
    )


async def _read(what: str, source: Callable[[], Awaitable[T]], seconds: float) -> T | None:
    try:
        async with asyncio.timeout(seconds):
            return await source()
    except Exception as exc:  # noqa: BLE001 - a source that fails is left out and logged
        logger.warning("metrics: the %s could not be read (%s)", what, type(exc).__name__)
        return None
