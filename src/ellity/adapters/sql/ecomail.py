"""Storage of the Ecomail integration and of the contacts waiting to be written to Ecomail.

Marking, claiming and settling contacts are set-based statements: a backfill of a million
customers is a few hundred statements, never a statement per customer.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.expiry_run import hit_by
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.contact_sync import (
    ecomail_contacts,
    ecomail_integrations,
    ecomail_old_addresses,
)
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.work_queue import NO_CLAIM, claim_due, earliest, unclaimed
from ellity.domain.model.customer import email_key
from ellity.domain.model.integration import Backfill, EcomailIntegration
from ellity.ports.storage import (
    ClaimedContact,
    ExpiredChunk,
    OldAddress,
)

_i = ecomail_integrations.c
_c = ecomail_contacts.c
_o = ecomail_old_addresses.c

_NO_CLAIM: dict[str, Any] = {**NO_CLAIM, "claimed_seq": None}
MARK_BATCH = 10_000


def _later(a: Any, b: Any) -> Any:
    """The later of two nullable instants (SQL has no portable ``greatest`` that skips NULL)."""
    return sa.case((b.is_(None), a), (a.is_(None), b), (a > b, a), else_=b)


class SqlEcomailRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, merchant_id: int) -> EcomailIntegration | None:
        row = (
            await self.conn.execute(
                sa.select(ecomail_integrations).where(_i.merchant_id == merchant_id)
            )
        ).first()
        if row is None:
            return None
        backfill = None
        if row.backfill_requested_at is not None:
            backfill = Backfill(
                requested_at=row.backfill_requested_at,
                after_id=row.backfill_after_id,
                marked=row.backfill_marked,
                finished_marking_at=row.backfill_finished_at,
            )
        return EcomailIntegration(
            merchant_id=row.merchant_id,
            key_hint=row.key_hint,
            list_id=row.list_id,
            list_name=row.list_name,
            active=row.active,
            activated_at=row.activated_at,
            backfill=backfill,
            last_success_at=row.last_success_at,
        )

    async def api_key(self, merchant_id: int) -> str | None:
        result = await self.conn.execute(
            sa.select(_i.api_key_encrypted).where(_i.merchant_id == merchant_id)
        )
        key: str | None = result.scalar_one_or_none()
        return key

    async def save_key(self, merchant_id: int, *, encrypted: str, hint: str, at: datetime) -> None:
        values = {
            "api_key_encrypted": encrypted,
            "key_hint": hint,
            "list_id": None,
            "list_name": "",
            "active": False,
            "backfill_requested_at": None,
            "backfill_after_id": 0,
            "backfill_marked": 0,
            "backfill_finished_at": None,
            "updated_at": at,
        }
        insert = dialect_insert(self.conn.dialect, ecomail_integrations).values(
            merchant_id=merchant_id, **values
        )
        await self.conn.execute(
            insert.on_conflict_do_update(index_elements=[_i.merchant_id], set_=values)
        )

    async def activate(
        self, merchant_id: int, *, list_id: str, list_name: str, at: datetime
    ) -> None:
        await self._update(
            merchant_id,
            list_id=list_id,
            list_name=list_name[:200],
            active=True,
            activated_at=at,
            **_backfill_from_start(at),
        )

    async def deactivate(self, merchant_id: int, *, at: datetime) -> None:
        await self._update(merchant_id, active=False, updated_at=at)

    async def request_backfill(self, merchant_id: int, *, at: datetime) -> None:
        await self._update(merchant_id, **_backfill_from_start(at))

    async def advance_backfill(
        self, merchant_id: int, *, after_id: int, marked: int, finished_at: datetime | None
    ) -> None:
        await self._update(
            merchant_id,
            backfill_after_id=after_id,
            backfill_marked=marked,
            backfill_finished_at=finished_at,
        )

    async def record_success(self, merchant_id: int, *, at: datetime) -> None:
        await self._update(merchant_id, last_success_at=at)

    async def active_list(self, merchant_id: int) -> str | None:
        result = await self.conn.execute(
            sa.select(_i.list_id).where(_i.merchant_id == merchant_id, _i.active.is_(True))
        )
        list_id: str | None = result.scalar_one_or_none()
        return list_id

    async def backfilling(self) -> list[int]:
        result = await self.conn.execute(
            sa.select(_i.merchant_id)
            .where(
                _i.active.is_(True),
                _i.backfill_requested_at.is_not(None),
                _i.backfill_finished_at.is_(None),
            )
            .order_by(_i.merchant_id)
        )
        return list(result.scalars())

    async def _update(self, merchant_id: int, **values: Any) -> None:
        await self.conn.execute(
            ecomail_integrations.update().where(_i.merchant_id == merchant_id).values(**values)
        )


def _backfill_from_start(at: datetime) -> dict[str, Any]:
    return {
        "backfill_requested_at": at,
        "backfill_after_id": 0,
        "backfill_marked": 0,
        "backfill_finished_at": None,
        "updated_at": at,
    }


class SqlContactSyncRepository:
    """On PostgreSQL a claim picks its rows with ``FOR UPDATE SKIP LOCKED``; on SQLite the
    writer's ``BEGIN IMMEDIATE`` serializes claimers. ``made_work`` tells the unit of work
    to nudge the worker after the commit.

    On PostgreSQL every statement that writes many contacts takes their rows in customer id
    order: marks upsert them sorted, and a claim's settle, release or fail locks its rows in
    that order first. A settle of thousands of contacts and the nightly expiry's marks (which
    come after the chunk's customers, locked in id order too) then wait for each other at
    most, never deadlock."""

    def __init__(self, conn: AsyncConnection, *, locks_rows: bool) -> None:
        self.conn = conn
        self.locks_rows = locks_rows
        self.made_work = False

    def _upsert_pending(self, rows: Any, *, moved: bool) -> Any:
        if self.locks_rows:
            rows = rows.order_by(customers.c.id)
        insert = dialect_insert(self.conn.dialect, ecomail_contacts)
        statement = insert.from_select(
            ["customer_id", "merchant_id", "pending_since", "change_seq", "attempts", "in_list"],
            rows,
        )
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=[_c.customer_id],
            set_={
                "pending_since": sa.func.coalesce(_c.pending_since, excluded.pending_since),
                "change_seq": _c.change_seq + 1,
                "failed_at": None,
                "in_list": sa.false() if moved else _c.in_list,
            },
        )

    def _customers(self, merchant_id: int, at: datetime) -> Any:
        return sa.select(
            customers.c.id,
            customers.c.merchant_id,
            instant(at),
            sa.literal(0),
            sa.literal(0),
            sa.false(),
        ).where(customers.c.merchant_id == merchant_id, customers.c.email.is_not(None))

    async def mark_changed(
        self, merchant_id: int, customer_ids: Sequence[int], *, at: datetime, moved: bool = False
    ) -> None:
        if not customer_ids:
            return
        ids = sorted(set(customer_ids))
        # a statement per MARK_BATCH ids: the drivers bind each id as its own parameter, and
        # SQLite and asyncpg take at most 32 766 / 32 767 of them
        for start in range(0, len(ids), MARK_BATCH):
            batch = ids[start : start + MARK_BATCH]
            rows = self._customers(merchant_id, at).where(customers.c.id.in_(batch))
            await self.conn.execute(self._upsert_pending(rows, moved=moved))
        self.made_work = True

    async def mark_moved(
        self, merchant_id: int, customer_id: int, *, old_email: str, at: datetime
    ) -> None:
        key = email_key(old_email)
        written = sa.exists().where(
            _c.customer_id == customer_id,
            _c.merchant_id == merchant_id,
            sa.or_(_c.in_list.is_(True), _c.claim_token.is_not(None)),
        )
        remembered = sa.exists().where(_o.merchant_id == merchant_id, _o.email_key == key)
        rows = sa.select(
            customers.c.merchant_id,
            customers.c.id,
            sa.literal(old_email, sa.String()),
            sa.literal(key, sa.String()),
            instant(at),
        ).where(
            customers.c.id == customer_id,
            customers.c.merchant_id == merchant_id,
            sa.or_(written, remembered),
        )
        insert = dialect_insert(self.conn.dialect, ecomail_old_addresses).from_select(
            ["merchant_id", "customer_id", "email", "email_key", "left_at"], rows
        )
        # before the mark: it forgets that the contact was in the list
        await self.conn.execute(
            insert.on_conflict_do_nothing(index_elements=[_o.customer_id, _o.email_key])
        )
        await self.mark_changed(merchant_id, [customer_id], at=at, moved=True)

    async def old_addresses(
        self, merchant_id: int, customer_ids: Sequence[int]
    ) -> list[OldAddress]:
        if not customer_ids:
            return []
        held = sa.exists().where(
            customers.c.merchant_id == merchant_id, customers.c.email_key == _o.email_key
        )
        found: list[OldAddress] = []
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), MARK_BATCH):
            rows = await self.conn.execute(
                sa.select(_o.id, _o.customer_id, _o.email)
                .where(
                    _o.merchant_id == merchant_id,
                    _o.customer_id.in_(ids[start : start + MARK_BATCH]),
                    ~held,
                )
                .order_by(_o.id)
            )
            found += [OldAddress(r.id, r.customer_id, r.email) for r in rows]
        return found

    async def forget_old_addresses(
        self, merchant_id: int, address_ids: Sequence[int], *, at: datetime
    ) -> int:
        if not address_ids:
            return 0
        ids = sorted(set(address_ids))
        forgotten = 0
        for start in range(0, len(ids), MARK_BATCH):
            batch = ids[start : start + MARK_BATCH]
            mine = [_o.merchant_id == merchant_id, _o.id.in_(batch)]
            taken = self._customers(merchant_id, at).where(
                customers.c.email_key.in_(sa.select(_o.email_key).where(*mine))
            )
            if (await self.conn.execute(self._upsert_pending(taken, moved=False))).rowcount:
                self.made_work = True
            result = await self.conn.execute(ecomail_old_addresses.delete().where(*mine))
            forgotten += int(result.rowcount)
        return forgotten

    async def mark_expired(self, chunk: ExpiredChunk) -> int:
        rows = self._customers(chunk.merchant_id, chunk.at).where(*hit_by(chunk))
        result = await self.conn.execute(self._upsert_pending(rows, moved=False))
        if result.rowcount:
            self.made_work = True
        return int(result.rowcount)

    async def mark_all(
        self, merchant_id: int, *, after_id: int, limit: int, at: datetime
    ) -> tuple[int, int | None]:
        chunk = (
            sa.select(customers.c.id)
            .where(
                customers.c.merchant_id == merchant_id,
                customers.c.id > after_id,
                customers.c.email.is_not(None),
            )
            .order_by(customers.c.id)
            .limit(limit)
            .subquery()
        )
        count, last = (
            await self.conn.execute(sa.select(sa.func.count(), sa.func.max(chunk.c.id)))
        ).one()
        if not count:
            return 0, None
        rows = self._customers(merchant_id, at).where(
            customers.c.id > after_id, customers.c.id <= last
        )
        await self.conn.execute(self._upsert_pending(rows, moved=False))
        self.made_work = True
        return int(count), int(last)

    def _due(self, now: datetime) -> list[Any]:
        return [
            _c.pending_since.is_not(None),
            _c.failed_at.is_(None),
            sa.or_(_c.next_attempt_at.is_(None), _c.next_attempt_at <= now),
            unclaimed(_c.claimed_until, now),
        ]

    async def claim(
        self, merchant_id: int, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedContact]:
        rows = await claim_due(
            self.conn,
            _c.customer_id,
            due=[_c.merchant_id == merchant_id, *self._due(now)],
            order_by=[_c.pending_since, _c.customer_id],
            limit=limit,
            locks_rows=self.locks_rows,
            values={
                "claim_token": token,
                "claimed_until": now + lease,
                "claimed_seq": _c.change_seq,
            },
            returning=[_c.customer_id, _c.in_list],
        )
        claimed = [ClaimedContact(customer_id=r.customer_id, in_list=r.in_list) for r in rows]
        return sorted(claimed, key=lambda contact: contact.customer_id)

    async def settle(
        self,
        merchant_id: int,
        customer_ids: Sequence[int],
        *,
        token: str,
        added: Collection[int] = (),
        at: datetime,
    ) -> int:
        if not customer_ids:
            return 0
        unchanged = _c.change_seq == _c.claimed_seq
        values: dict[str, Any] = {
            "pending_since": sa.case((unchanged, None), else_=_c.pending_since),
            "in_list": sa.case((unchanged, sa.true()), else_=_c.in_list),
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": None,
            "synced_at": at,
            **_NO_CLAIM,
        }
        if added:
            values["added_at"] = sa.case(
                (_c.customer_id.in_(sorted(set(added))), instant(at)), else_=_c.added_at
            )
        mine = [
            _c.merchant_id == merchant_id,
            _c.claim_token == token,
            _c.customer_id.in_(sorted(set(customer_ids))),
        ]
        await self._lock_in_order(*mine)
        result = await self.conn.execute(ecomail_contacts.update().where(*mine).values(**values))
        return int(result.rowcount)

    async def release(
        self, merchant_id: int, *, token: str, error: str, retry_at: datetime, at: datetime
    ) -> int:
        return await self._unclaim(merchant_id, token, next_attempt_at=retry_at, last_error=error)

    async def fail(
        self,
        merchant_id: int,
        customer_ids: Sequence[int] | None,
        *,
        token: str,
        error: str,
        at: datetime,
    ) -> int:
        return await self._unclaim(merchant_id, token, customer_ids, failed_at=at, last_error=error)

    async def _unclaim(
        self,
        merchant_id: int,
        token: str,
        customer_ids: Sequence[int] | None = None,
        **values: Any,
    ) -> int:
        mine = [_c.merchant_id == merchant_id, _c.claim_token == token]
        if customer_ids is not None:
            mine.append(_c.customer_id.in_(sorted(set(customer_ids))))
        await self._lock_in_order(*mine)
        statement = ecomail_contacts.update().where(*mine)
        result = await self.conn.execute(
            statement.values(attempts=_c.attempts + 1, **_NO_CLAIM, **values)
        )
        return int(result.rowcount)

    async def _lock_in_order(self, *where: Any) -> None:
        """PostgreSQL: lock the rows ``where`` in customer id order before an ``UPDATE``
        changes them (it takes its rows in whatever order its plan meets them)."""
        if self.locks_rows:
            await self.conn.execute(
                sa.select(_c.customer_id).where(*where).order_by(_c.customer_id).with_for_update()
            )

    async def record_written(
        self, merchant_id: int, customer_id: int, *, added_at: datetime | None, at: datetime
    ) -> None:
        values: dict[str, Any] = {"in_list": True, "synced_at": at}
        if added_at is not None:
            values["added_at"] = added_at
        own = sa.select(
            customers.c.id,
            customers.c.merchant_id,
            sa.literal(0),
            sa.literal(0),
            sa.true(),
            instant(at),
            instant(added_at),
        ).where(customers.c.id == customer_id, customers.c.merchant_id == merchant_id)
        insert = dialect_insert(self.conn.dialect, ecomail_contacts).from_select(
            [
                "customer_id",
                "merchant_id",
                "change_seq",
                "attempts",
                "in_list",
                "synced_at",
                "added_at",
            ],
            own,
        )
        await self.conn.execute(
            insert.on_conflict_do_update(
                index_elements=[_c.customer_id],
                set_=values,
                where=_c.merchant_id == merchant_id,
            )
        )

    async def attempts(self, merchant_id: int, *, token: str) -> int:
        result = await self.conn.execute(
            sa.select(sa.func.max(_c.attempts)).where(
                _c.merchant_id == merchant_id, _c.claim_token == token
            )
        )
        return int(result.scalar_one_or_none() or 0)

    async def is_pending(self, merchant_id: int, customer_id: int) -> bool:
        result = await self.conn.execute(
            sa.select(_c.customer_id).where(
                _c.merchant_id == merchant_id,
                _c.customer_id == customer_id,
                _c.pending_since.is_not(None),
                _c.failed_at.is_(None),
            )
        )
        return result.scalar_one_or_none() is not None

    def _active(self) -> Any:
        return sa.exists().where(_i.merchant_id == _c.merchant_id, _i.active.is_(True))

    async def due_merchants(self, *, now: datetime) -> list[int]:
        due = (
            sa.select(_c.customer_id)
            .where(_c.merchant_id == _i.merchant_id, *self._due(now))
            .limit(1)
            .exists()
        )
        result = await self.conn.execute(
            sa.select(_i.merchant_id).where(_i.active.is_(True), due).order_by(_i.merchant_id)
        )
        return list(result.scalars())

    async def next_due(self) -> datetime | None:
        claimable_from = _later(_later(_c.pending_since, _c.next_attempt_at), _c.claimed_until)
        return await earliest(
            self.conn,
            claimable_from,
            _c.pending_since.is_not(None),
            _c.failed_at.is_(None),
            self._active(),
        )

    async def retry_failed(self, merchant_id: int, *, at: datetime) -> int:
        result = await self.conn.execute(
            ecomail_contacts.update()
            .where(_c.merchant_id == merchant_id, _c.failed_at.is_not(None))
            .values(
                failed_at=None,
                attempts=0,
                next_attempt_at=None,
                pending_since=sa.func.coalesce(_c.pending_since, instant(at)),
            )
        )
        if result.rowcount:
            self.made_work = True
        return int(result.rowcount)

    async def added_at(self, merchant_id: int, customer_id: int) -> datetime | None:
        result = await self.conn.execute(
            sa.select(_c.added_at).where(
                _c.merchant_id == merchant_id, _c.customer_id == customer_id
            )
        )
        added: datetime | None = result.scalar_one_or_none()
        return added
