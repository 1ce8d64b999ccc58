"""Marking contacts pending, in SQL: the half of ``SqlContactSyncRepository`` that the
changes to customers write into.

A mark is an upsert (``INSERT ... SELECT ... ON CONFLICT DO UPDATE``) of the contacts of a set of
customers: however many changes, one pending row per contact, its ``change_seq`` bumped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.expiry_run import hit_by
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.contact_sync import ecomail_contacts, ecomail_old_addresses
from ellity.adapters.sql.tables.customers import customers
from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.ports.storage.contact_sync import OldAddress
from ellity.ports.storage.ledger import ExpiredChunk

_c = ecomail_contacts.c
_o = ecomail_old_addresses.c

MARK_BATCH = 10_000


class SqlContactMarks:
    """Marks for ``SqlContactSyncRepository``; on PostgreSQL they upsert their rows in
    customer id order (see there)."""

    conn: AsyncConnection
    locks_rows: bool
    made_work: bool

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

    def _customers(self, merchant_id: MerchantId, at: datetime) -> Any:
        return sa.select(
            customers.c.id,
            customers.c.merchant_id,
            instant(at),
            sa.literal(0),
            sa.literal(0),
            sa.false(),
        ).where(customers.c.merchant_id == merchant_id, customers.c.email.is_not(None))

    async def mark_changed(
        self,
        merchant_id: MerchantId,
        customer_ids: Sequence[CustomerId],
        *,
        at: datetime,
        moved: bool = False,
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

    async def request_unsubscribe(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, at: datetime
    ) -> None:
        await self.mark_changed(merchant_id, [customer_id], at=at)
        await self.conn.execute(
            ecomail_contacts.update()
            .where(_c.customer_id == customer_id, _c.merchant_id == merchant_id)
            .values(unsubscribe_due=True)
        )

    async def mark_moved(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, old_email: str, at: datetime
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
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId]
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
            found += [OldAddress(r.id, CustomerId(r.customer_id), r.email) for r in rows]
        return found

    async def forget_old_addresses(
        self, merchant_id: MerchantId, address_ids: Sequence[int], *, at: datetime
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
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, at: datetime
    ) -> tuple[int, CustomerId | None]:
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
        return int(count), CustomerId(int(last))
