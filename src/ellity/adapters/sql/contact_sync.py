"""The contacts waiting to be written to the merchants' Ecomail lists, in SQL.

Marking, claiming and settling contacts are set-based statements: a backfill of a million
customers is a few hundred statements, never a statement per customer. The marks are
``contact_marks.SqlContactMarks``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.contact_marks import MARK_BATCH, SqlContactMarks
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.contact_sync import ecomail_contacts, ecomail_integrations
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.newsletter import newsletter_notifications
from ellity.adapters.sql.work_queue import (
    NO_CLAIM,
    claim_due,
    drop_claim,
    earliest,
    renew_claim,
    unclaimed,
)
from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.contact_state import SubscriptionStatus
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.newsletter import AddAttempt, SubscriptionChange
from ellity.ports.storage.contact_sync import ClaimedContact, ContactSyncRepository

_i = ecomail_integrations.c
_c = ecomail_contacts.c
_n = newsletter_notifications.c

_NO_CLAIM: dict[str, Any] = {**NO_CLAIM, "claimed_seq": None}


def _unsubscribed_since_attempt() -> Any:
    """An ``UNSUBSCRIBED`` notification for the contact's email (its customer's
    ``email_key``, same merchant) was received after its ``add_attempted_at``."""
    email = (
        sa.select(customers.c.email_key)
        .where(customers.c.id == _c.customer_id)
        .correlate(ecomail_contacts)
        .scalar_subquery()
    )
    return (
        sa.select(_n.id)
        .where(
            _n.merchant_id == _c.merchant_id,
            _n.email_key == email,
            _n.status == SubscriptionChange.UNSUBSCRIBED.value,
            _n.received_at > _c.add_attempted_at,
        )
        .correlate(ecomail_contacts)
        .exists()
    )


def _later(a: Any, b: Any) -> Any:
    """The later of two nullable instants (SQL has no portable ``greatest`` that skips NULL)."""
    return sa.case((b.is_(None), a), (a.is_(None), b), (a > b, a), else_=b)


class SqlContactSyncRepository(SqlContactMarks, ContactSyncRepository):
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

    def _due(self, now: datetime) -> list[Any]:
        return [
            _c.pending_since.is_not(None),
            _c.failed_at.is_(None),
            sa.or_(_c.next_attempt_at.is_(None), _c.next_attempt_at <= now),
            unclaimed(_c.claimed_until, now),
        ]

    async def claim(
        self, merchant_id: MerchantId, *, token: str, now: datetime, lease: timedelta, limit: int
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
            returning=[_c.customer_id, _c.in_list, _c.unsubscribe_due],
        )
        claimed = [
            ClaimedContact(
                customer_id=CustomerId(r.customer_id),
                in_list=r.in_list,
                unsubscribe=bool(r.unsubscribe_due),
            )
            for r in rows
        ]
        return sorted(claimed, key=lambda contact: contact.customer_id)

    async def settle(
        self,
        merchant_id: MerchantId,
        customer_ids: Sequence[CustomerId],
        *,
        token: str,
        members: Collection[CustomerId],
        added: Collection[CustomerId] = (),
        unsubscribed: Collection[CustomerId] = (),
        at: datetime,
    ) -> int:
        if not customer_ids:
            return 0
        unchanged = _c.change_seq == _c.claimed_seq
        values: dict[str, Any] = {
            "pending_since": sa.case((unchanged, None), else_=_c.pending_since),
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": None,
            "synced_at": at,
            **_NO_CLAIM,
        }
        if members:
            values["in_list"] = sa.case(
                (sa.and_(unchanged, _c.customer_id.in_(sorted(set(members)))), sa.true()),
                else_=_c.in_list,
            )
        if added:
            values["added_at"] = sa.case(
                (_c.customer_id.in_(sorted(set(added))), instant(at)), else_=_c.added_at
            )
        if unsubscribed:
            values["unsubscribe_due"] = sa.case(
                (sa.and_(unchanged, _c.customer_id.in_(sorted(set(unsubscribed)))), sa.false()),
                else_=_c.unsubscribe_due,
            )
        mine = [
            _c.merchant_id == merchant_id,
            _c.claim_token == token,
            _c.customer_id.in_(sorted(set(customer_ids))),
        ]
        await self._lock_in_order(*mine)
        result = await self.conn.execute(ecomail_contacts.update().where(*mine).values(**values))
        return int(result.rowcount)

    async def record_add_attempts(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId], *, at: datetime
    ) -> None:
        ids = sorted(set(customer_ids))
        for start in range(0, len(ids), MARK_BATCH):
            batch = ids[start : start + MARK_BATCH]
            await self._add_missing_rows(merchant_id, batch)
            mine = [_c.merchant_id == merchant_id, _c.customer_id.in_(batch)]
            await self._lock_in_order(*mine)
            same_episode = sa.and_(
                _c.add_attempted_at.is_not(None),
                _c.echo_taken_at.is_(None),
                ~_unsubscribed_since_attempt(),
            )
            await self.conn.execute(
                ecomail_contacts.update()
                .where(*mine)
                .values(
                    add_attempted_at=sa.case(
                        (same_episode, _c.add_attempted_at), else_=instant(at)
                    ),
                    echo_taken_at=sa.case((same_episode, _c.echo_taken_at), else_=None),
                    echo_subscribed_at=sa.case((same_episode, _c.echo_subscribed_at), else_=None),
                )
            )

    async def _add_missing_rows(self, merchant_id: MerchantId, ids: list[CustomerId]) -> None:
        """A contact row (not pending) for each of these customers of the merchant with an
        email who has none yet."""
        rows = sa.select(
            customers.c.id, customers.c.merchant_id, sa.literal(0), sa.literal(0), sa.false()
        ).where(
            customers.c.merchant_id == merchant_id,
            customers.c.id.in_(ids),
            customers.c.email.is_not(None),
        )
        if self.locks_rows:
            rows = rows.order_by(customers.c.id)
        insert = dialect_insert(self.conn.dialect, ecomail_contacts).from_select(
            ["customer_id", "merchant_id", "change_seq", "attempts", "in_list"], rows
        )
        await self.conn.execute(insert.on_conflict_do_nothing(index_elements=[_c.customer_id]))

    async def first_customer(
        self, merchant_id: MerchantId, *, consents: Collection[MarketingConsent] | None = None
    ) -> CustomerId | None:
        query = sa.select(customers.c.id).where(
            customers.c.merchant_id == merchant_id, customers.c.email.is_not(None)
        )
        if consents is not None:
            if not consents:
                return None
            query = query.where(
                customers.c.marketing_consent.in_(sorted(c.value for c in consents))
            )
        found = (await self.conn.execute(query.order_by(customers.c.id).limit(1))).scalar()
        return None if found is None else CustomerId(found)

    async def renew_claim(self, *, token: str, until: datetime) -> int:
        return await renew_claim(self.conn, ecomail_contacts, token=token, until=until)

    async def drop_claim(self, *, token: str) -> int:
        # attempts are counted when a call fails, not by the claim: nothing to take back
        return await drop_claim(
            self.conn, ecomail_contacts, token=token, values={"claimed_seq": None}
        )

    async def release(
        self, merchant_id: MerchantId, *, token: str, error: str, retry_at: datetime, at: datetime
    ) -> int:
        return await self._unclaim(merchant_id, token, next_attempt_at=retry_at, last_error=error)

    async def defer(self, merchant_id: MerchantId, *, token: str, until: datetime) -> int:
        return await self._unclaim(merchant_id, token, counts=False, next_attempt_at=until)

    async def fail(
        self,
        merchant_id: MerchantId,
        customer_ids: Sequence[CustomerId] | None,
        *,
        token: str,
        error: str,
        at: datetime,
    ) -> int:
        return await self._unclaim(merchant_id, token, customer_ids, failed_at=at, last_error=error)

    async def _unclaim(
        self,
        merchant_id: MerchantId,
        token: str,
        customer_ids: Sequence[CustomerId] | None = None,
        *,
        counts: bool = True,
        **values: Any,
    ) -> int:
        """End the claim of these contacts (all of this claim's with ``None``), setting
        ``values``; ``counts``: the claim was a failed attempt."""
        mine = [_c.merchant_id == merchant_id, _c.claim_token == token]
        if customer_ids is not None:
            mine.append(_c.customer_id.in_(sorted(set(customer_ids))))
        await self._lock_in_order(*mine)
        statement = ecomail_contacts.update().where(*mine)
        if counts:
            values["attempts"] = _c.attempts + 1
        result = await self.conn.execute(statement.values(**_NO_CLAIM, **values))
        return int(result.rowcount)

    async def _lock_in_order(self, *where: Any) -> None:
        """PostgreSQL: lock the rows ``where`` in customer id order before an ``UPDATE``
        changes them (it takes its rows in whatever order its plan meets them)."""
        if self.locks_rows:
            await self.conn.execute(
                sa.select(_c.customer_id).where(*where).order_by(_c.customer_id).with_for_update()
            )

    async def record_written(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        added_at: datetime | None,
        at: datetime,
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

    async def attempts(self, merchant_id: MerchantId, *, token: str) -> int:
        result = await self.conn.execute(
            sa.select(sa.func.max(_c.attempts)).where(
                _c.merchant_id == merchant_id, _c.claim_token == token
            )
        )
        return int(result.scalar_one_or_none() or 0)

    async def is_pending(self, merchant_id: MerchantId, customer_id: CustomerId) -> bool:
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

    async def due_merchants(self, *, now: datetime) -> list[MerchantId]:
        due = (
            sa.select(_c.customer_id)
            .where(_c.merchant_id == _i.merchant_id, *self._due(now))
            .limit(1)
            .exists()
        )
        result = await self.conn.execute(
            sa.select(_i.merchant_id).where(_i.active.is_(True), due).order_by(_i.merchant_id)
        )
        return [MerchantId(merchant_id) for merchant_id in result.scalars()]

    async def next_due(self) -> datetime | None:
        claimable_from = _later(_later(_c.pending_since, _c.next_attempt_at), _c.claimed_until)
        return await earliest(
            self.conn,
            claimable_from,
            _c.pending_since.is_not(None),
            _c.failed_at.is_(None),
            self._active(),
        )

    async def retry_failed(self, merchant_id: MerchantId, *, at: datetime) -> int:
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

    async def added_at(self, merchant_id: MerchantId, customer_id: CustomerId) -> datetime | None:
        result = await self.conn.execute(
            sa.select(_c.added_at).where(
                _c.merchant_id == merchant_id, _c.customer_id == customer_id
            )
        )
        added: datetime | None = result.scalar_one_or_none()
        return added

    # -- Ellity's add attempts and their echoes

    async def add_attempt(
        self, merchant_id: MerchantId, customer_id: CustomerId
    ) -> AddAttempt | None:
        row = (
            await self.conn.execute(
                sa.select(_c.add_attempted_at, _c.echo_taken_at, _c.echo_subscribed_at).where(
                    _c.merchant_id == merchant_id, _c.customer_id == customer_id
                )
            )
        ).first()
        if row is None or row.add_attempted_at is None:
            return None
        return AddAttempt(row.add_attempted_at, row.echo_taken_at, row.echo_subscribed_at)

    async def take_echo(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        at: datetime,
        subscribed_at: datetime | None,
    ) -> None:
        await self.conn.execute(
            ecomail_contacts.update()
            .where(_c.merchant_id == merchant_id, _c.customer_id == customer_id)
            .values(echo_taken_at=at, echo_subscribed_at=subscribed_at)
        )

    async def record_status(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        status: SubscriptionStatus,
        *,
        at: datetime,
    ) -> None:
        await self.conn.execute(
            ecomail_contacts.update()
            .where(_c.customer_id == customer_id, _c.merchant_id == merchant_id)
            .values(list_status=int(status), list_status_at=at)
        )

    async def mark_member(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, at: datetime
    ) -> None:
        active = sa.exists().where(_i.merchant_id == merchant_id, _i.active.is_(True))
        member = sa.select(
            customers.c.id,
            customers.c.merchant_id,
            instant(at),
            sa.literal(0),
            sa.literal(0),
            sa.true(),
        ).where(
            customers.c.id == customer_id,
            customers.c.merchant_id == merchant_id,
            customers.c.email.is_not(None),
            active,
        )
        insert = dialect_insert(self.conn.dialect, ecomail_contacts)
        statement = insert.from_select(
            ["customer_id", "merchant_id", "pending_since", "change_seq", "attempts", "in_list"],
            member,
        )
        result = await self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[_c.customer_id],
                set_={
                    "pending_since": sa.func.coalesce(
                        _c.pending_since, statement.excluded.pending_since
                    ),
                    "change_seq": _c.change_seq + 1,
                    "failed_at": None,
                    "in_list": sa.true(),
                },
            )
        )
        if result.rowcount:
            self.made_work = True
