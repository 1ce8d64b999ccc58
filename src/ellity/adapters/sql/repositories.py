"""SQL implementations of the storage ports, on one ``AsyncConnection`` per unit of work."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.expiry_run import (
    credit_event_payload,
    expired_in,
    expiry_change,
    hit_by,
    in_range,
    points_changed_payload,
)
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import expiry_notices, ledger_entries, point_lots
from ellity.adapters.sql.tables.outbox import outbox
from ellity.adapters.sql.unique import unique_violations
from ellity.adapters.sql.valid_points import loyalty_columns, loyalty_of
from ellity.adapters.sql.work_queue import (
    NO_CLAIM,
    available_or_claim_end,
    claim_due,
    earliest,
    settle_claimed,
    unclaimed,
)
from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.ledger import (
    Entry,
    EntryKind,
    Expiration,
    LastChange,
    Ledger,
    Lot,
)
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import (
    OutboxItem,
    OutboxStatus,
    Payload,
    Topic,
)
from ellity.ports.storage import (
    ExpiredChunk,
    ExpiryNotice,
    OrderUse,
    StoredEntry,
)


def _entry(row: Any) -> Entry:
    return Entry(
        kind=EntryKind(row.kind),
        points=Points(row.points_cents),
        at=row.at,
        balance_after=Points(row.balance_after_cents),
        note=row.note,
        order_ref=row.order_ref,
    )


def _first_expiry_of_customer() -> sa.ScalarSelect[Any]:
    """The earliest last valid day among the open lots of the customer being updated."""
    lot = point_lots.alias("open_lot")
    return (
        sa.select(sa.func.min(lot.c.expires_on))
        .where(lot.c.customer_id == customers.c.id, lot.c.remaining_cents > 0)
        .correlate(customers)
        .scalar_subquery()
    )


class SqlLedgerRepository:
    def __init__(self, conn: AsyncConnection, *, locks_rows: bool) -> None:
        self.conn = conn
        self.locks_rows = locks_rows

    async def get(self, merchant_id: int, customer_id: int, policy: ExpiryPolicy) -> Ledger:
        lots = await self.conn.execute(
            sa.select(
                point_lots.c.id,
                point_lots.c.earned_at,
                point_lots.c.expires_on,
                point_lots.c.amount_cents,
                point_lots.c.remaining_cents,
            ).where(
                point_lots.c.merchant_id == merchant_id,
                point_lots.c.customer_id == customer_id,
                point_lots.c.remaining_cents > 0,
            )
        )
        last = (
            await self.conn.execute(
                sa.select(customers.c.last_change_on, customers.c.last_change_cents).where(
                    customers.c.merchant_id == merchant_id, customers.c.id == customer_id
                )
            )
        ).first()
        return Ledger(
            customer_id=customer_id,
            policy=policy,
            lots=[
                Lot(
                    id=lot_id,
                    earned_at=earned_at,
                    expires_on=expires_on,
                    amount=Points(amount),
                    remaining=Points(remaining),
                )
                for lot_id, earned_at, expires_on, amount, remaining in lots
            ],
            last_change=(
                LastChange(last[0], Points(last[1]))
                if last is not None and last[0] is not None
                else None
            ),
        )

    async def save(self, merchant_id: int, ledger: Ledger, *, at: datetime) -> None:
        for lot in ledger.lots:
            if lot.is_new:
                result = await self.conn.execute(
                    point_lots.insert()
                    .values(
                        merchant_id=merchant_id,
                        customer_id=ledger.customer_id,
                        earned_at=lot.earned_at,
                        expires_on=lot.expires_on,
                        amount_cents=lot.amount.hundredths,
                        remaining_cents=lot.remaining.hundredths,
                    )
                    .returning(point_lots.c.id)
                )
                lot.id = result.scalar_one()
            elif lot.is_changed:
                await self.conn.execute(
                    point_lots.update()
                    .where(point_lots.c.id == lot.id, point_lots.c.merchant_id == merchant_id)
                    .values(remaining_cents=lot.remaining.hundredths)
                )
            lot.loaded_remaining = lot.remaining
        if ledger.new_entries:
            async with unique_violations():
                await self.conn.execute(
                    ledger_entries.insert(),
                    [
                        {
                            "merchant_id": merchant_id,
                            "customer_id": ledger.customer_id,
                            "kind": entry.kind.value,
                            "points_cents": entry.points.hundredths,
                            "balance_after_cents": entry.balance_after.hundredths,
                            "at": entry.at,
                            "note": entry.note,
                            "order_ref": entry.order_ref,
                        }
                        for entry in ledger.new_entries
                    ],
                )
            ledger.new_entries.clear()
        summary = ledger.summary()
        nxt, last = summary.next_expiration, summary.last_change
        await self.conn.execute(
            customers.update()
            .where(customers.c.merchant_id == merchant_id, customers.c.id == ledger.customer_id)
            .values(
                balance_cents=summary.balance.hundredths,
                next_expiry_on=nxt.on if nxt else None,
                next_expiry_cents=nxt.points.hundredths if nxt else 0,
                last_change_on=last.on if last else None,
                last_change_cents=last.points.hundredths if last else None,
            )
        )

    async def find_order(
        self, merchant_id: int, kind: EntryKind, order_ref: str
    ) -> OrderUse | None:
        row = (
            await self.conn.execute(
                sa.select(ledger_entries).where(
                    ledger_entries.c.merchant_id == merchant_id,
                    ledger_entries.c.kind == kind.value,
                    ledger_entries.c.order_ref == order_ref,
                )
            )
        ).first()
        return None if row is None else OrderUse(customer_id=row.customer_id, entry=_entry(row))

    async def has_entry(self, merchant_id: int, customer_id: int, kind: EntryKind) -> bool:
        found = await self.conn.execute(
            sa.select(ledger_entries.c.id)
            .where(
                ledger_entries.c.merchant_id == merchant_id,
                ledger_entries.c.customer_id == customer_id,
                ledger_entries.c.kind == kind.value,
            )
            .limit(1)
        )
        return found.first() is not None

    async def entries(
        self, merchant_id: int, customer_id: int, *, limit: int, before_id: int | None = None
    ) -> list[StoredEntry]:
        query = (
            sa.select(ledger_entries)
            .where(
                ledger_entries.c.merchant_id == merchant_id,
                ledger_entries.c.customer_id == customer_id,
            )
            .order_by(ledger_entries.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(ledger_entries.c.id < before_id)
        rows = await self.conn.execute(query)
        return [
            StoredEntry(id=row.id, customer_id=row.customer_id, entry=_entry(row)) for row in rows
        ]

    async def expire_due(
        self,
        merchant_id: int,
        *,
        at: datetime,
        today: date,
        after_id: int = 0,
        up_to_id: int | None = None,
    ) -> int:
        """Four set-based statements, each kept to the customers of the id range; the new
        expiry entries (kind, ``at``) mark the customers hit (``expired_in``)."""
        chunk = ExpiredChunk(merchant_id, at, after_id, up_to_id)
        due = sa.and_(
            point_lots.c.merchant_id == merchant_id,
            *in_range(point_lots.c.customer_id, chunk),
            point_lots.c.remaining_cents > 0,
            point_lots.c.expires_on < today,
        )
        if self.locks_rows:  # PostgreSQL: lock the customers first, in the order spends do
            await self.conn.execute(
                sa.select(customers.c.id)
                .where(
                    customers.c.merchant_id == merchant_id,
                    *in_range(customers.c.id, chunk),
                    customers.c.id.in_(sa.select(point_lots.c.customer_id).where(due)),
                )
                .order_by(customers.c.id)
                .with_for_update()
            )
        expired = sa.func.sum(point_lots.c.remaining_cents)
        inserted = await self.conn.execute(
            ledger_entries.insert().from_select(
                ["merchant_id", "customer_id", "kind", "points_cents", "balance_after_cents", "at"],
                sa.select(
                    sa.literal(merchant_id),
                    point_lots.c.customer_id,
                    sa.literal(EntryKind.EXPIRE.value),
                    -expired,
                    customers.c.balance_cents - expired,
                    instant(at),
                )
                .select_from(point_lots.join(customers, customers.c.id == point_lots.c.customer_id))
                .where(due)
                .group_by(point_lots.c.customer_id, customers.c.balance_cents),
            )
        )
        if not inserted.rowcount:
            return 0
        await self.conn.execute(point_lots.update().where(due).values(remaining_cents=0))
        # The summary is read back from the lots (the balance is what the open lots hold), so
        # it is right however often a customer is updated; the change is the run's entry.
        held = sa.select(point_lots.c.remaining_cents).where(
            point_lots.c.customer_id == customers.c.id, point_lots.c.remaining_cents > 0
        )
        balance = (
            held.with_only_columns(sa.func.coalesce(sa.func.sum(point_lots.c.remaining_cents), 0))
            .correlate(customers)
            .scalar_subquery()
        )
        first_held = (  # what the lots of the earliest last valid day hold
            held.with_only_columns(sa.func.sum(point_lots.c.remaining_cents))
            .where(point_lots.c.expires_on.is_not(None))
            .group_by(point_lots.c.expires_on)
            .order_by(point_lots.c.expires_on)
            .limit(1)
            .correlate(customers)
            .scalar_subquery()
        )
        change = expiry_change(chunk)
        await self.conn.execute(
            customers.update()
            .where(
                customers.c.merchant_id == merchant_id,
                *in_range(customers.c.id, chunk),
                expired_in(chunk),
            )
            .values(
                balance_cents=balance,
                last_change_on=today,
                last_change_cents=change,
                next_expiry_on=_first_expiry_of_customer(),
                next_expiry_cents=sa.func.coalesce(first_held, 0),
            )
        )
        return int(inserted.rowcount)

    async def record_expiry_notices(
        self,
        merchant_id: int,
        *,
        first_day: date,
        last_day: date,
        after_id: int,
        up_to_id: int,
        at: datetime,
    ) -> list[ExpiryNotice]:
        """One INSERT ... SELECT ... ON CONFLICT DO NOTHING: the primary key (customer, day)
        decides, so of two concurrent runs only one records (and returns) a notice."""
        window = sa.and_(
            point_lots.c.merchant_id == merchant_id,
            point_lots.c.customer_id > after_id,
            point_lots.c.customer_id <= up_to_id,
            point_lots.c.remaining_cents > 0,
            point_lots.c.expires_on >= first_day,
            point_lots.c.expires_on <= last_day,
        )
        held = (
            sa.select(
                point_lots.c.customer_id,
                point_lots.c.expires_on,
                sa.literal(merchant_id),
                sa.func.sum(point_lots.c.remaining_cents),
                instant(at),
            )
            .select_from(point_lots.join(customers, customers.c.id == point_lots.c.customer_id))
            .where(window, customers.c.email.is_not(None))
            .group_by(point_lots.c.customer_id, point_lots.c.expires_on)
            # one order for every run: concurrent inserts of the same keys wait, never deadlock
            .order_by(point_lots.c.customer_id, point_lots.c.expires_on)
        )
        notices = expiry_notices.c
        statement = (
            dialect_insert(self.conn.dialect, expiry_notices)
            .from_select(
                ["customer_id", "expires_on", "merchant_id", "points_cents", "created_at"], held
            )
            .on_conflict_do_nothing(index_elements=[notices.customer_id, notices.expires_on])
            .returning(notices.customer_id, notices.expires_on, notices.points_cents)
        )
        recorded = list(await self.conn.execute(statement))
        if not recorded:
            return []
        holders = await self.conn.execute(
            sa.select(customers.c.id, customers.c.balance_cents).where(
                customers.c.merchant_id == merchant_id,
                customers.c.id > after_id,
                customers.c.id <= up_to_id,
                customers.c.id.in_(sa.select(point_lots.c.customer_id).where(window)),
            )
        )
        balances: dict[int, int] = {cid: balance for cid, balance in holders}
        return sorted(
            (
                ExpiryNotice(
                    customer_id=cid,
                    expiration=Expiration(on, Points(cents)),
                    balance=Points(balances[cid]),
                )
                for cid, on, cents in recorded
            ),
            key=lambda notice: (notice.customer_id, notice.expiration.on),
        )

    async def loyalty(
        self, merchant_id: int, customer_ids: Sequence[int], *, today: date
    ) -> list[CustomerLoyalty]:
        if not customer_ids:
            return []
        rows = await self.conn.execute(
            sa.select(*loyalty_columns(today))
            .where(customers.c.merchant_id == merchant_id, customers.c.id.in_(list(customer_ids)))
            .order_by(customers.c.id)
        )
        return [loyalty_of(row) for row in rows]


_OUTBOX_CLAIMED = (
    outbox.c.id,
    outbox.c.merchant_id,
    outbox.c.customer_id,
    outbox.c.topic,
    outbox.c.payload,
    outbox.c.attempts,
    outbox.c.created_at,
)
_PENDING = OutboxStatus.PENDING.value


def _json(payload: Payload) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class SqlOutboxRepository:
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
        merchant_id: int,
        topic: str,
        payload: Payload,
        *,
        customer_id: int | None = None,
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
            )
            .returning(outbox.c.id)
        )
        self.made_work = True
        return int(result.scalar_one())

    async def add_many(
        self,
        merchant_id: int,
        topic: str,
        items: Sequence[tuple[int | None, Payload]],
        *,
        at: datetime,
    ) -> int:
        if not items:
            return 0
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
                }
                for customer_id, payload in items
            ],
        )
        self.made_work = True
        return len(items)

    async def add_for_expired(self, chunk: ExpiredChunk, topic: str) -> int:
        payloads = {
            Topic.ECOMAIL_EVENT.value: credit_event_payload,
            Topic.POINTS_CHANGED_EMAIL.value: points_changed_payload,
        }
        if topic not in payloads:
            raise ValueError(f"no payload for expired points in {topic} items")
        at = instant(chunk.at)
        rows = sa.select(
            customers.c.merchant_id,
            customers.c.id,
            sa.literal(topic),
            payloads[topic](chunk),
            sa.literal(_PENDING),
            sa.literal(0),
            at,
            at,
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
                "attempts": outbox.c.attempts + 1,
                "last_attempt_at": now,
            },
            returning=_OUTBOX_CLAIMED,
        )
        items = [
            OutboxItem(
                id=row.id,
                merchant_id=row.merchant_id,
                customer_id=row.customer_id,
                topic=row.topic,
                payload=json.loads(row.payload),
                attempts=row.attempts,
                created_at=row.created_at,
            )
            for row in rows
        ]
        return sorted(items, key=lambda item: item.id)

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
            values=values,
        )

    async def next_due(self) -> datetime | None:
        claimable = available_or_claim_end(outbox.c.available_at, outbox.c.claimed_until)
        return await earliest(self.conn, claimable, outbox.c.status == _PENDING)

    async def retry_failed(self, merchant_id: int, item_id: int | None, *, at: datetime) -> int:
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
