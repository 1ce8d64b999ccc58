"""Reading an installation's database while it runs: what a worker process holds (by the
host name and pid its claim tokens begin with), what is still pending, when held items were
delivered, and what the database holds in the end."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ellity.adapters.sql.database import Database
from ellity.domain.model.outbox import Topic

HOST = socket.gethostname()[:24]  # what a worker's claim tokens start with (and its pid)


@dataclass(frozen=True)
class Held:
    """What a worker held when it was killed or stopped: outbox items (and which of them it
    was sending), contacts and newsletter notifications."""

    at: datetime
    items: frozenset[int]
    in_flight: frozenset[int]  # their call to Ecomail had begun (``sending_since`` set)
    contacts: int = 0
    notifications: int = 0


def claims_of(pid: int) -> sa.TextClause:
    """The pending outbox items claimed by the worker process ``pid`` (its claim tokens begin
    with its host name and pid), and whether it was sending each."""
    return sa.text(
        "SELECT id, sending_since IS NOT NULL AS in_flight FROM outbox"
        " WHERE status = 'pending' AND claim_token LIKE :prefix"
    ).bindparams(prefix=f"{HOST}:{pid}:%")


@dataclass(frozen=True)
class Outcome:
    """What the database holds in the end."""

    balances: dict[int, int]  # customer id -> cents
    unbalanced: list[sa.Row[Any]]  # customers whose balance is not the sum of their ledger
    failed: list[sa.Row[Any]]  # outbox items and contacts given up
    entries: list[sa.Row[Any]]  # every ledger entry, with its customer's email
    events: list[sa.Row[Any]]  # every Ecomail event recorded, with its customer's email


class Probe:
    """Reads the installation's database while it runs."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def rows(self, statement: Any) -> list[sa.Row[Any]]:
        async with self.database.engine.connect() as conn:
            return list(await conn.execute(statement))

    async def holding(self, pid: int, *, at_least: int, within: float) -> list[sa.Row[Any]]:
        """Waits until the worker ``pid`` holds ``at_least`` outbox items; returns them."""
        deadline = time.monotonic() + within
        while len(held := await self.rows(claims_of(pid))) < at_least:
            assert time.monotonic() < deadline, f"worker {pid} never held {at_least} items"
            await asyncio.sleep(0.02)
        return held

    async def held(self, pid: int, at: datetime, *rows: sa.Row[Any]) -> Held:
        """What the worker ``pid`` holds now, with ``rows`` of ``claims_of`` read before."""
        prefix = {"prefix": f"{HOST}:{pid}:%"}
        [other] = await self.rows(
            sa.text(
                "SELECT (SELECT count(*) FROM ecomail_contacts WHERE claim_token LIKE :prefix"
                "   AND pending_since IS NOT NULL) AS contacts,"
                " (SELECT count(*) FROM newsletter_notifications WHERE claim_token LIKE :prefix"
                "   AND state = 'pending') AS notifications"
            ).bindparams(**prefix)
        )
        items = [*rows, *await self.rows(claims_of(pid))]
        return Held(
            at,
            frozenset(row.id for row in items),
            frozenset(row.id for row in items if row.in_flight),
            other.contacts,
            other.notifications,
        )

    async def pending(self) -> dict[str, int]:
        [row] = await self.rows(
            sa.text(
                "SELECT (SELECT count(*) FROM outbox WHERE status = 'pending') AS outbox,"
                " (SELECT count(*) FROM ecomail_contacts"
                "   WHERE pending_since IS NOT NULL AND failed_at IS NULL) AS contacts,"
                " (SELECT count(*) FROM newsletter_notifications"
                "   WHERE state = 'pending') AS notifications"
            )
        )
        return dict(row._mapping)

    async def drain(self, *, within: float) -> tuple[float, dict[str, int]]:
        """Waits until nothing is pending, at most ``within``; how long, and what is left."""
        began = time.monotonic()
        while True:
            left = {queue: n for queue, n in (await self.pending()).items() if n}
            waited = time.monotonic() - began
            if not left or waited > within:
                return waited, left
            await asyncio.sleep(0.5)

    async def settled_after(self, held: Held) -> float | None:
        """Seconds from ``held.at`` until the last of its items was delivered (or skipped);
        None when one was not."""
        if not held.items:
            return 0.0
        rows = await self.rows(
            sa.text("SELECT status, delivered_at FROM outbox WHERE id = ANY(:ids)").bindparams(
                ids=sorted(held.items)
            )
        )
        if any(row.delivered_at is None for row in rows):  # pending or failed
            return None
        return max(float((row.delivered_at - held.at).total_seconds()) for row in rows)

    async def outcome(self) -> Outcome:
        balances = await self.rows(sa.text("SELECT id, balance_cents FROM customers"))
        unbalanced = await self.rows(
            sa.text(
                "SELECT c.id, c.balance_cents, coalesce(sum(e.points_cents), 0) AS ledger"
                " FROM customers c LEFT JOIN ledger_entries e ON e.customer_id = c.id"
                " GROUP BY c.id, c.balance_cents"
                " HAVING c.balance_cents <> coalesce(sum(e.points_cents), 0)"
            )
        )
        failed = await self.rows(
            sa.text(
                "SELECT 'outbox' AS queue, id, last_error FROM outbox WHERE status = 'failed'"
                " UNION ALL SELECT 'contacts', customer_id, last_error FROM ecomail_contacts"
                " WHERE failed_at IS NOT NULL"
            )
        )
        entries = await self.rows(
            sa.text(
                "SELECT c.email, e.kind, e.points_cents, e.balance_after_cents, e.at"
                " FROM ledger_entries e JOIN customers c ON c.id = e.customer_id"
            )
        )
        events = await self.rows(
            sa.text(
                "SELECT o.id, o.status, o.payload, c.email FROM outbox o"
                " JOIN customers c ON c.id = o.customer_id WHERE o.topic = :topic"
            ).bindparams(topic=Topic.ECOMAIL_EVENT.value)
        )
        return Outcome(
            {row.id: row.balance_cents for row in balances}, unbalanced, failed, entries, events
        )
