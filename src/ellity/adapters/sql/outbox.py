"""The outbox in SQL: items are written in the transaction that causes them, claimed by a
worker for a lease and settled while that claim holds. The items that follow an expiry chunk
are one ``INSERT ... SELECT`` of references (the customer's ``expire`` entry and the next
expiration after it), whose payloads are built by the domain (``balance_change``) when they
are claimed. An item written while a web request is handled keeps the request's id
(``ports.request_context``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.expiry_run import expiry_entry_id, hit_by
from ellity.adapters.sql.ledger import entry_of_row
from ellity.adapters.sql.tables.columns import instant
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import ledger_entries
from ellity.adapters.sql.tables.outbox import outbox
from ellity.adapters.sql.work_queue import (
    NO_CLAIM,
    available_or_claim_end,
    claim_due,
    drop_claim,
    earliest,
    renew_claim,
    settle_claimed,
    unclaimed,
)
from ellity.domain.model.balance_change import CHANGE_TOPICS, change_payload
from ellity.domain.model.ids import CustomerId, MerchantId, optional_customer_id
from ellity.domain.model.ledger import Entry, Expiration
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import OutboxItem, OutboxStatus, Payload
from ellity.ports.request_context import current_request_id
from ellity.ports.storage.ledger import ExpiredChunk
from ellity.ports.storage.outbox import OutboxRepository

_OUTBOX_CLAIMED = (
    outbox.c.id,
    outbox.c.merchant_id,
    outbox.c.customer_id,
    outbox.c.topic,
    outbox.c.payload,
    outbox.c.attempts,
    outbox.c.created_at,
    outbox.c.sending_since,
    outbox.c.request_id,
    outbox.c.entry_id,
    outbox.c.next_expiry_on,
    outbox.c.next_expiry_cents,
)

_PENDING = OutboxStatus.PENDING.value


_REFERENCE = "{}"  # the payload of an item that refers to its ledger entry


def _json(payload: Payload) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _payload(row: Any, entries: dict[int, Entry]) -> Payload:
    """The item's payload: as stored, or built from the ledger entry it refers to."""
    if row.entry_id is None:
        return dict(json.loads(row.payload))
    nxt = (
        None
        if row.next_expiry_on is None
        else Expiration(row.next_expiry_on, Points(row.next_expiry_cents))
    )
    return change_payload(row.topic, entries[row.entry_id], nxt)


async def built_payloads(conn: AsyncConnection, rows: Sequence[Any]) -> list[Payload]:
    """The payloads of outbox ``rows`` (with their ``topic``, ``payload``, ``entry_id`` and
    ``next_expiry_*`` columns), in order: as stored, or built from the ledger entry each
    refers to (the entries read at once)."""
    ids = [row.entry_id for row in rows if row.entry_id is not None]
    entries: dict[int, Entry] = {}
    if ids:
        found = await conn.execute(sa.select(ledger_entries).where(ledger_entries.c.id.in_(ids)))
        entries = {row.id: entry_of_row(row) for row in found}
    return [_payload(row, entries) for row in rows]


class SqlOutboxRepository(OutboxRepository):
    """The outbox table. On PostgreSQL a claim picks its rows with ``FOR UPDATE SKIP LOCKED``,
    so claimers never wait for each other; on SQLite the claim runs inside the writer's
    ``BEGIN IMMEDIATE`` transaction, which serializes claimers.

    ``made_work`` tells the unit of work that this transaction gave the worker something to
    do (it nudges the worker after the commit).
    """

    def __init__(self, conn: AsyncConnection, *, locks_rows: bool) -> None:
        self.conn = conn
        self.locks_rows = locks_rows
        self.made_work = False

    async def add(
        self,
        merchant_id: MerchantId,
        topic: str,
        payload: Payload,
        *,
        customer_id: CustomerId | None = None,
        at: datetime,
    ) -> int:
        result = await self.conn.execute(
            outbox.insert()
            .values(
                merchant_id=merchant_id,
                customer_id=customer_id,
                topic=topic,
                payload=_json(payload),
                status=_PENDING,
                attempts=0,
                created_at=at,
                available_at=at,
                request_id=current_request_id(),
            )
            .returning(outbox.c.id)
        )
        self.made_work = True
        return int(result.scalar_one())

    async def add_many(
        self,
        merchant_id: MerchantId,
        topic: str,
        items: Sequence[tuple[CustomerId | None, Payload]],
        *,
        at: datetime,
    ) -> int:
        if not items:
            return 0
        request_id = current_request_id()
        await self.conn.execute(
            outbox.insert(),
            [
                {
                    "merchant_id": merchant_id,
                    "customer_id": customer_id,
                    "topic": topic,
                    "payload": _json(payload),
                    "status": _PENDING,
                    "attempts": 0,
                    "created_at": at,
                    "available_at": at,
                    "request_id": request_id,
                }
                for customer_id, payload in items
            ],
        )
        self.made_work = True
        return len(items)

    async def add_for_expired(self, chunk: ExpiredChunk, topic: str) -> int:
        if topic not in CHANGE_TOPICS:
            raise ValueError(f"no payload for expired points in {topic} items")
        at = instant(chunk.at)
        rows = sa.select(
            customers.c.merchant_id,
            customers.c.id,
            sa.literal(topic),
            sa.literal(_REFERENCE),
            sa.literal(_PENDING),
            sa.literal(0),
            at,
            at,
            expiry_entry_id(chunk),
            customers.c.next_expiry_on,
            customers.c.next_expiry_cents,
        ).where(*hit_by(chunk))
        result = await self.conn.execute(
            outbox.insert().from_select(
                [
                    "merchant_id",
                    "customer_id",
                    "topic",
                    "payload",
                    "status",
                    "attempts",
                    "created_at",
                    "available_at",
                    "entry_id",
                    "next_expiry_on",
                    "next_expiry_cents",
                ],
                rows,
            )
        )
        if result.rowcount:
            self.made_work = True
        return int(result.rowcount)

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        rows = await claim_due(
            self.conn,
            outbox.c.id,
            due=[
                outbox.c.status == _PENDING,
                outbox.c.available_at <= now,
                unclaimed(outbox.c.claimed_until, now),
            ],
            order_by=[outbox.c.available_at, outbox.c.id],
            limit=limit,
            locks_rows=self.locks_rows,
            values={
                "claim_token": token,
                "claimed_until": now + lease,
                "attempts": sa.case(
                    # a claim taken over before its item was tried: that claim's count stands
                    (
                        sa.and_(
                            outbox.c.claim_token.is_not(None), outbox.c.sending_since.is_(None)
                        ),
                        outbox.c.attempts,
                    ),
                    else_=outbox.c.attempts + 1,
                ),
                "last_attempt_at": now,
            },
            returning=_OUTBOX_CLAIMED,
        )
        payloads = await built_payloads(self.conn, rows)
        items = [
            OutboxItem(
                id=row.id,
                merchant_id=MerchantId(row.merchant_id),
                customer_id=optional_customer_id(row.customer_id),
                topic=row.topic,
                payload=payload,
                attempts=row.attempts,
                created_at=row.created_at,
                interrupted=row.sending_since is not None,
                request_id=row.request_id,
            )
            for row, payload in zip(rows, payloads, strict=True)
        ]
        return sorted(items, key=lambda item: item.id)

    async def renew_claim(self, *, token: str, until: datetime) -> int:
        return await renew_claim(self.conn, outbox, token=token, until=until)

    async def drop_claim(self, *, token: str) -> int:
        # the claim counted an attempt: taken back unless the item's call began
        attempts = sa.case(
            (outbox.c.sending_since.is_(None), outbox.c.attempts - 1), else_=outbox.c.attempts
        )
        return await drop_claim(self.conn, outbox, token=token, values={"attempts": attempts})

    async def mark_sending(self, item_id: int, *, token: str, at: datetime) -> bool:
        result = await self.conn.execute(
            outbox.update()
            .where(
                outbox.c.id == item_id,
                outbox.c.status == _PENDING,
                outbox.c.claim_token == token,
            )
            .values(sending_since=at)
        )
        return result.rowcount == 1

    async def mark_delivered(self, item_id: int, *, token: str, at: datetime) -> bool:
        return await self._settle(
            item_id, token, status=OutboxStatus.DELIVERED.value, delivered_at=at, last_error=None
        )

    async def mark_skipped(self, item_id: int, *, token: str, reason: str, at: datetime) -> bool:
        return await self._settle(
            item_id, token, status=OutboxStatus.SKIPPED.value, delivered_at=at, last_error=reason
        )

    async def mark_failed(
        self, item_id: int, *, token: str, error: str, retry_at: datetime | None, at: datetime
    ) -> bool:
        if retry_at is None:
            return await self._settle(
                item_id, token, status=OutboxStatus.FAILED.value, last_error=error
            )
        return await self._settle(item_id, token, available_at=retry_at, last_error=error)

    async def defer(self, item_id: int, *, token: str, until: datetime) -> bool:
        # the claim counted an attempt (``attempts`` is at least 1 here): take it back
        return await self._settle(
            item_id, token, available_at=until, attempts=outbox.c.attempts - 1
        )

    async def _settle(self, item_id: int, token: str, **values: Any) -> bool:
        return await settle_claimed(
            self.conn,
            outbox,
            outbox.c.id == item_id,
            outbox.c.status == _PENDING,
            token=token,
            values={"sending_since": None, **values},
        )

    async def next_due(self) -> datetime | None:
        claimable = available_or_claim_end(outbox.c.available_at, outbox.c.claimed_until)
        return await earliest(self.conn, claimable, outbox.c.status == _PENDING)

    async def retry_failed(
        self, merchant_id: MerchantId, item_id: int | None, *, at: datetime
    ) -> int:
        query = outbox.update().where(
            outbox.c.merchant_id == merchant_id, outbox.c.status == OutboxStatus.FAILED.value
        )
        if item_id is not None:
            query = query.where(outbox.c.id == item_id)
        result = await self.conn.execute(
            query.values(status=_PENDING, attempts=0, available_at=at, **NO_CLAIM)
        )
        if result.rowcount:
            self.made_work = True
        return int(result.rowcount)

    async def purge_settled(self, *, before: datetime) -> int:
        result = await self.conn.execute(
            outbox.delete().where(
                outbox.c.status.in_([OutboxStatus.DELIVERED.value, OutboxStatus.SKIPPED.value]),
                outbox.c.delivered_at < before,
            )
        )
        return int(result.rowcount)
