"""Fakes of the operations ports: heartbeats on the fake clock, counters in memory, the
queues' stats from the in-memory store, a fixed schema revision and request budget."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

from ellity.domain.model.newsletter import NotificationState
from ellity.domain.model.outbox import OutboxStatus
from ellity.ports.operations import (
    HEARTBEAT_WINDOW,
    OperationsUnavailable,
    QueueStats,
    QueueStatsSource,
    RequestBudget,
    Sample,
    SchemaRevisions,
    SchemaVersion,
    Tally,
    WorkCounters,
    WorkerHeartbeats,
)
from tests.fakes.clock import FakeClock
from tests.fakes.storage.unit_of_work import InMemoryStore

_Key = tuple[str, tuple[tuple[str, str], ...]]


class FakeWorkerHeartbeats(WorkerHeartbeats):
    """Beats kept with the fake clock's time; ``down`` makes every call fail as when Redis
    does not answer."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.beats: dict[str, datetime] = {}
        self.down = False

    def _answer(self) -> None:
        if self.down:
            raise OperationsUnavailable("Redis did not answer (fake): ConnectionError")

    async def ping(self) -> None:
        self._answer()

    async def beat(self, worker: str) -> None:
        self._answer()
        self.beats[worker] = self.clock.now()

    async def forget(self, worker: str) -> None:
        self.beats.pop(worker, None)

    async def workers_seen(self) -> int:
        self._answer()
        since = self.clock.now() - HEARTBEAT_WINDOW
        return sum(1 for at in self.beats.values() if at > since)


class FakeWorkCounters(WorkCounters):
    def __init__(self) -> None:
        self.counts: defaultdict[_Key, float] = defaultdict(float)
        self.gauges: dict[_Key, float] = {}

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counts[name, tuple(sorted(labels.items()))] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name, tuple(sorted(labels.items()))] = value

    def count(self, name: str, **labels: str) -> float:
        """The counter's value for exactly these labels."""
        return self.counts.get((name, tuple(sorted(labels.items()))), 0.0)

    async def tally(self) -> Tally:
        return Tally(
            counters=tuple(Sample(n, ls, v) for (n, ls), v in sorted(self.counts.items())),
            gauges=tuple(Sample(n, ls, v) for (n, ls), v in sorted(self.gauges.items())),
        )

    async def flush(self) -> None:
        return None


class InMemoryQueueStats(QueueStatsSource):
    """The same figures as ``adapters.sql.queue_stats`` from the in-memory store."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store  # a commit replaces its state: read at each call

    async def queue_stats(self, *, now: datetime) -> list[QueueStats]:
        state = self.store.state

        def dead(token: str | None, until: datetime | None) -> bool:
            return token is not None and until is not None and until <= now

        outbox = [r for r in state.outbox.values() if r.status == OutboxStatus.PENDING.value]
        contacts = [c for c in state.contacts.values() if c.waiting]
        notes = [n for n in state.notifications.values() if n.state is NotificationState.PENDING]
        return [
            QueueStats(
                "outbox",
                len(outbox),
                min((r.created_at for r in outbox), default=None),
                sum(dead(r.claim_token, r.claimed_until) for r in outbox),
            ),
            QueueStats(
                "ecomail_contacts",
                len(contacts),
                min((c.pending_since for c in contacts if c.pending_since), default=None),
                sum(dead(c.claim_token, c.claimed_until) for c in contacts),
            ),
            QueueStats(
                "newsletter_notifications",
                len(notes),
                min((n.received_at for n in notes), default=None),
                sum(dead(n.claim_token, n.claimed_until) for n in notes),
            ),
        ]


class FakeSchemaVersion(SchemaVersion):
    def __init__(self, database: str | None = "head", code: str = "head") -> None:
        self.database = database
        self.code = code

    async def revisions(self) -> SchemaRevisions:
        return SchemaRevisions(database=self.database, code=self.code)


class FakeRequestBudget(RequestBudget):
    def __init__(self, limit: int = 950, used: Mapping[str, int] | None = None) -> None:
        self._limit = limit
        self.taken = dict(used or {})

    @property
    def limit(self) -> int:
        return self._limit

    async def used(self) -> Mapping[str, int]:
        return dict(self.taken)
