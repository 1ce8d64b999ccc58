"""What an operator watches: the workers' heartbeats, the counts of what the processes did,
the queues' state, the Ecomail request budget and the schema's revision.

None of these carries a customer's data or a secret: counters are labelled only by bounded
values (a queue, an outbox topic, an outcome, a route template).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

#: A worker that has not beaten for this long counts as gone.
HEARTBEAT_WINDOW = timedelta(seconds=60)
#: How often a worker beats: well inside the window, so one late beat does not lose it.
HEARTBEAT_EVERY = timedelta(seconds=15)


# What the processes count (``WorkCounters``), with the labels each takes.
DELIVERIES = "deliveries"  # kind (an outbox topic, or a queue), outcome (below)
DELIVERED, SKIPPED, RETRIED, FAILED = "delivered", "skipped", "retry", "failed"
ECOMAIL_RATE_LIMITED = "ecomail_rate_limited"  # Ecomail's 429 answers
#: kind (an outbox topic): items taken over whose earlier call began and never ended (its
#: worker died during the call), so they may be delivered twice
INTERRUPTED = "interrupted_deliveries"
NIGHTLY_RUNS = "nightly_runs"  # outcome: finished or failed
NIGHTLY_SECONDS = "nightly_seconds"  # the time the finished runs took, summed
NIGHTLY_LAST_FINISHED = "nightly_last_finished"  # gauge: when the latest run finished (Unix)
HTTP_SECONDS = "http_request_seconds"  # a histogram: method, route (its template), le
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class OperationsUnavailable(Exception):
    """The store of heartbeats and counts (Redis) does not answer."""


class WorkerHeartbeats(Protocol):
    """Each worker process beats every ``HEARTBEAT_EVERY``; a beat is seen for
    ``HEARTBEAT_WINDOW``. Shared by every process of the deployment."""

    async def ping(self) -> None:
        """Raise ``OperationsUnavailable`` when the store does not answer."""
        ...

    async def beat(self, worker: str) -> None:
        """``worker`` (its token, unique per process) is alive now; raises
        ``OperationsUnavailable``."""
        ...

    async def forget(self, worker: str) -> None:
        """``worker`` stops (a graceful shutdown): its beat is seen no longer. Best effort."""
        ...

    async def workers_seen(self) -> int:
        """How many workers beat within ``HEARTBEAT_WINDOW``; raises
        ``OperationsUnavailable``."""
        ...


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a counter or gauge: its name and labels."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class Tally:
    """What every process counted, summed: ``counters`` only grow (apart from a reset of
    the store); ``gauges`` hold the latest value set."""

    counters: tuple[Sample, ...]
    gauges: tuple[Sample, ...]


class WorkCounters(Protocol):
    """Counts kept across processes (the worker counts, the web process serves them).

    ``add`` and ``set`` never wait and never fail: an adapter buffers them and writes them
    out shortly after; what a killed process had not written yet is lost.
    """

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the counter ``name`` with ``labels``."""
        ...

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set the gauge ``name`` with ``labels`` to ``value``."""
        ...

    async def tally(self) -> Tally:
        """Everything written so far by every process; raises ``OperationsUnavailable``."""
        ...

    async def flush(self) -> None:
        """Write out what this process buffered (on shutdown, and in tests)."""
        ...


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue of claimable work (outbox items, Ecomail contacts, newsletter
    notifications) at an instant."""

    queue: str
    depth: int  # pending items, due or not
    oldest: datetime | None  # when the oldest pending item was created
    held_by_dead_workers: int  # pending items still claimed after their lease ran out


class QueueStatsSource(Protocol):
    async def queue_stats(self, *, now: datetime) -> list[QueueStats]:
        """Every queue's stats as of ``now``: one set-based query per queue."""
        ...


class RequestBudget(Protocol):
    """The Ecomail request limiter, as far as it can report cheaply."""

    @property
    def limit(self) -> int:
        """Requests allowed per window for one API key."""
        ...

    async def used(self) -> Mapping[str, int]:
        """Requests taken in the current window per budget (named by a hash of the API
        key, never the key); raises ``OperationsUnavailable``."""
        ...


@dataclass(frozen=True, slots=True)
class SchemaRevisions:
    database: str | None  # None: the database has no migrations applied
    code: str

    @property
    def current(self) -> bool:
        return self.database == self.code


class SchemaVersion(Protocol):
    async def revisions(self) -> SchemaRevisions:
        """The database's migration revision and the code's newest; may raise when the
        database does not answer."""
        ...
