"""The work queues' state for the metrics endpoint (``ports.operations.QueueStatsSource``).

One aggregate query per queue over its pending rows only, each read through the index that
the worker's claims use (``ix_outbox_status_available_at``, the partial
``ix_ecomail_contacts_pending`` and ``ix_newsletter_notifications_pending``): the cost
grows with the backlog, never with the customers or the settled history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.tables.columns import UtcDateTime, instant
from ellity.adapters.sql.tables.contact_sync import ecomail_contacts
from ellity.adapters.sql.tables.newsletter import newsletter_notifications
from ellity.adapters.sql.tables.outbox import outbox
from ellity.domain.model.newsletter import NotificationState
from ellity.domain.model.outbox import OutboxStatus
from ellity.ports.operations import QueueStats, QueueStatsSource

OUTBOX = "outbox"
ECOMAIL_CONTACTS = "ecomail_contacts"
NEWSLETTER_NOTIFICATIONS = "newsletter_notifications"

QUEUES: tuple[tuple[str, sa.Table, Any, tuple[Any, ...]], ...] = (
    (OUTBOX, outbox, outbox.c.created_at, (outbox.c.status == OutboxStatus.PENDING.value,)),
    (
        ECOMAIL_CONTACTS,
        ecomail_contacts,
        ecomail_contacts.c.pending_since,
        (ecomail_contacts.c.pending_since.is_not(None), ecomail_contacts.c.failed_at.is_(None)),
    ),
    (
        NEWSLETTER_NOTIFICATIONS,
        newsletter_notifications,
        newsletter_notifications.c.received_at,
        (newsletter_notifications.c.state == NotificationState.PENDING.value,),
    ),
)


def queue_stats_query(table: sa.Table, since: Any, pending: tuple[Any, ...], now: datetime) -> Any:
    """How many pending rows, the oldest, and how many are held by a claim that ran out."""
    dead = sa.and_(table.c.claim_token.is_not(None), table.c.claimed_until <= instant(now))
    return sa.select(
        sa.func.count(),
        sa.func.min(since),
        sa.func.coalesce(sa.func.sum(sa.case((dead, 1), else_=0)), 0),
    ).where(*pending)


class SqlQueueStats(QueueStatsSource):
    def __init__(self, database: Database) -> None:
        self._database = database

    async def queue_stats(self, *, now: datetime) -> list[QueueStats]:
        stats = []
        async with self._database.engine.connect() as conn:
            for name, table, since, pending in QUEUES:
                depth, oldest, dead = (
                    await conn.execute(queue_stats_query(table, since, pending, now))
                ).one()
                if oldest is not None and oldest.tzinfo is None:  # SQLite's min() is text-typed
                    oldest = UtcDateTime().process_result_value(oldest, conn.dialect)
                stats.append(QueueStats(name, int(depth), oldest, int(dead)))
        return stats
