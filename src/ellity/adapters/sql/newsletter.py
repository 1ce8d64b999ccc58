"""Storage of Ecomail's list webhook: the merchants' tokens, the notifications received, and
the newsletter reward each customer holds.

Receiving a notification is one ``INSERT ... SELECT`` that finds the merchant by the token's
digest, so the webhook answers after a single statement. Claims work like the outbox's: on
PostgreSQL ``FOR UPDATE SKIP LOCKED``, on SQLite the writer's ``BEGIN IMMEDIATE``. The
sign-ups kept for emails no customer has are one row per ``email_key``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.columns import UtcDateTime, dialect_insert, instant
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.newsletter import (
    ecomail_webhooks,
    newsletter_notifications,
    newsletter_rewards,
    newsletter_signups,
)
from ellity.adapters.sql.work_queue import (
    available_or_claim_end,
    claim_due,
    drop_claim,
    earliest,
    renew_claim,
    settle_claimed,
    unclaimed,
)
from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    ClaimedNotification,
    Notification,
    NotificationState,
    Origin,
    Outcome,
    RewardHold,
    SubscriptionChange,
)
from ellity.domain.model.reason import Reason
from ellity.ports.storage import UniqueViolation
from ellity.ports.storage.newsletter import KeptSignup, NewsletterRepository

_w = ecomail_webhooks.c
_n = newsletter_notifications.c
_r = newsletter_rewards.c
_s = newsletter_signups.c
_PENDING = NotificationState.PENDING.value


def _receive_statement() -> Any:
    """One statement finds the merchant by the token's digest and stores the notification
    (built once: the webhook runs it for every request)."""
    at = sa.bindparam("at", type_=UtcDateTime())
    owner = sa.select(
        _w.merchant_id,
        at,
        sa.bindparam("email", type_=sa.String()),
        sa.bindparam("email_key", type_=sa.String()),
        sa.bindparam("status", type_=sa.String()),
        sa.bindparam("list_id", type_=sa.String()),
        sa.bindparam("campaign_id", type_=sa.BigInteger()),
        sa.literal(_PENDING, sa.String()),
        at,
        sa.literal(0, sa.Integer()),
    ).where(_w.token_digest == sa.bindparam("digest", type_=sa.String()))
    columns = [
        "merchant_id",
        "received_at",
        "email",
        "email_key",
        "status",
        "list_id",
        "campaign_id",
    ]
    return (
        newsletter_notifications.insert()
        .from_select([*columns, "state", "available_at", "attempts"], owner)
        .returning(_n.id)
    )


_RECEIVE = _receive_statement()


def stored_reason(parts: str | None, text: str | None) -> Reason:
    """A row's reason: its clauses, or (rows stored before they were kept) its English text."""
    return Reason.stored(text or "") if parts is None else Reason.from_json(parts)


def notification_of(row: Any) -> Notification:
    return Notification(
        email=row.email,
        change=SubscriptionChange(row.status),
        list_id=row.list_id,
        campaign_id=row.campaign_id,
        origin=Origin(row.origin),
    )


class SqlNewsletterRepository(NewsletterRepository):
    """``made_work`` tells the unit of work to nudge the worker after the commit."""

    def __init__(self, conn: AsyncConnection, *, locks_rows: bool) -> None:
        self.conn = conn
        self.locks_rows = locks_rows
        self.made_work = False

    # -- the webhook token

    async def webhook_token(self, merchant_id: MerchantId) -> str | None:
        result = await self.conn.execute(
            sa.select(_w.token_encrypted).where(_w.merchant_id == merchant_id)
        )
        token: str | None = result.scalar_one_or_none()
        return token

    async def set_webhook_token(
        self, merchant_id: MerchantId, *, digest: str, encrypted: str, at: datetime, replace: bool
    ) -> bool:
        values = {"token_digest": digest, "token_encrypted": encrypted, "created_at": at}
        insert = dialect_insert(self.conn.dialect, ecomail_webhooks).values(
            merchant_id=merchant_id, **values
        )
        if replace:
            statement = insert.on_conflict_do_update(index_elements=[_w.merchant_id], set_=values)
        else:
            statement = insert.on_conflict_do_nothing(index_elements=[_w.merchant_id])
        try:
            result = await self.conn.execute(statement)
        except IntegrityError:  # another merchant's token has this digest (never by chance)
            raise UniqueViolation("token_digest") from None
        return bool(result.rowcount)

    async def webhook_merchant(self, digest: str) -> MerchantId | None:
        result = await self.conn.execute(sa.select(_w.merchant_id).where(_w.token_digest == digest))
        merchant_id = result.scalar_one_or_none()
        return None if merchant_id is None else MerchantId(merchant_id)

    async def receive(self, digest: str, notification: Notification, *, at: datetime) -> int | None:
        stored: int | None = (
            await self.conn.execute(
                _RECEIVE,
                {
                    "digest": digest,
                    "at": at,
                    "email": notification.email,
                    "email_key": email_key(notification.email),
                    "status": notification.change.value,
                    "list_id": notification.list_id,
                    "campaign_id": notification.campaign_id,
                },
            )
        ).scalar_one_or_none()
        if stored is not None:
            self.made_work = True
        return stored

    async def enqueue(
        self,
        merchant_id: MerchantId,
        notification: Notification,
        *,
        received_at: datetime,
        at: datetime,
    ) -> int:
        stored = (
            await self.conn.execute(
                newsletter_notifications.insert()
                .values(
                    merchant_id=merchant_id,
                    received_at=received_at,
                    email=notification.email,
                    email_key=email_key(notification.email),
                    status=notification.change.value,
                    list_id=notification.list_id,
                    campaign_id=notification.campaign_id,
                    origin=notification.origin.value,
                    state=_PENDING,
                    available_at=at,
                    attempts=0,
                )
                .returning(_n.id)
            )
        ).scalar_one()
        self.made_work = True
        return int(stored)

    async def unsubscribed_since(
        self, merchant_id: MerchantId, email: str, since: datetime, *, until: datetime | None = None
    ) -> bool:
        # the (merchant_id, email_key, id) index finds the email's few notifications
        found = await self.conn.execute(
            sa.select(_n.id)
            .where(
                _n.merchant_id == merchant_id,
                _n.email_key == email_key(email),
                _n.status == SubscriptionChange.UNSUBSCRIBED.value,
                _n.received_at >= since,
                sa.true() if until is None else _n.received_at <= until,
            )
            .limit(1)
        )
        return found.first() is not None

    # -- processing

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedNotification]:
        rows = await claim_due(
            self.conn,
            _n.id,
            due=[_n.state == _PENDING, _n.available_at <= now, unclaimed(_n.claimed_until, now)],
            order_by=[_n.available_at, _n.id],
            limit=limit,
            locks_rows=self.locks_rows,
            values={
                "claim_token": token,
                "claimed_until": now + lease,
                "attempts": _n.attempts + 1,
            },
            returning=[
                _n.id,
                _n.merchant_id,
                _n.email,
                _n.status,
                _n.list_id,
                _n.campaign_id,
                _n.origin,
                _n.received_at,
                _n.attempts,
            ],
        )
        claimed = [
            ClaimedNotification(
                id=row.id,
                merchant_id=MerchantId(row.merchant_id),
                notification=notification_of(row),
                received_at=row.received_at,
                attempts=row.attempts,
            )
            for row in rows
        ]
        return sorted(claimed, key=lambda item: item.id)

    async def settle(
        self,
        notification_id: int,
        *,
        token: str,
        outcome: Outcome,
        reason: Reason,
        points: Points | None,
        customer_id: CustomerId | None,
        at: datetime,
    ) -> bool:
        return await self._update_claimed(
            notification_id,
            token,
            state=NotificationState.PROCESSED.value,
            outcome=outcome.value,
            reason=reason.english(),
            reason_parts=reason.to_json(),
            points_cents=None if points is None else points.hundredths,
            customer_id=customer_id,
            processed_at=at,
        )

    async def defer(
        self,
        notification_id: int,
        *,
        token: str,
        until: datetime,
        reason: Reason,
        count_attempt: bool,
    ) -> bool:
        values: dict[str, Any] = {
            "available_at": until,
            "reason": reason.english(),
            "reason_parts": reason.to_json(),
        }
        if not count_attempt:  # the claim counted one (at least 1 while claimed): take it back
            values["attempts"] = _n.attempts - 1
        return await self._update_claimed(notification_id, token, **values)

    async def renew_claim(self, *, token: str, until: datetime) -> int:
        return await renew_claim(self.conn, newsletter_notifications, token=token, until=until)

    async def drop_claim(self, *, token: str) -> int:
        # the claim counted an attempt (at least 1 while claimed): take it back
        return await drop_claim(
            self.conn,
            newsletter_notifications,
            token=token,
            values={"attempts": _n.attempts - 1},
        )

    async def _update_claimed(self, notification_id: int, token: str, **values: Any) -> bool:
        return await settle_claimed(
            self.conn,
            newsletter_notifications,
            _n.id == notification_id,
            _n.state == _PENDING,
            token=token,
            values=values,
        )

    async def next_due(self) -> datetime | None:
        claimable = available_or_claim_end(_n.available_at, _n.claimed_until)
        return await earliest(self.conn, claimable, _n.state == _PENDING)

    async def purge_processed(self, *, before: datetime) -> int:
        result = await self.conn.execute(
            newsletter_notifications.delete().where(
                _n.state == NotificationState.PROCESSED.value, _n.processed_at < before
            )
        )
        return int(result.rowcount)

    # -- the reward each customer holds

    async def reward_hold(self, merchant_id: MerchantId, customer_id: CustomerId) -> RewardHold:
        row = (
            await self.conn.execute(
                sa.select(newsletter_rewards).where(
                    _r.customer_id == customer_id, _r.merchant_id == merchant_id
                )
            )
        ).first()
        if row is None:
            return RewardHold()
        return RewardHold(
            outstanding=Points(row.outstanding_cents),
            paid_at=row.paid_at,
            released_at=row.released_at,
        )

    async def save_reward_hold(
        self, merchant_id: MerchantId, customer_id: CustomerId, hold: RewardHold, *, at: datetime
    ) -> None:
        values = {
            "outstanding_cents": hold.outstanding.hundredths,
            "paid_at": hold.paid_at,
            "released_at": hold.released_at,
            "updated_at": at,
        }
        # only a customer of this merchant gets a row (as every repository call promises)
        own = sa.select(
            customers.c.id,
            customers.c.merchant_id,
            sa.literal(hold.outstanding.hundredths, sa.BigInteger()),
            instant(hold.paid_at),
            instant(hold.released_at),
            instant(at),
        ).where(customers.c.id == customer_id, customers.c.merchant_id == merchant_id)
        insert = dialect_insert(self.conn.dialect, newsletter_rewards).from_select(
            [
                "customer_id",
                "merchant_id",
                "outstanding_cents",
                "paid_at",
                "released_at",
                "updated_at",
            ],
            own,
        )
        await self.conn.execute(
            insert.on_conflict_do_update(
                index_elements=[_r.customer_id],
                set_=values,
                where=_r.merchant_id == merchant_id,
            )
        )

    # -- sign-ups before the customer exists

    async def keep_signup(
        self,
        merchant_id: MerchantId,
        email: str,
        list_id: str,
        *,
        received_at: datetime,
        confirmed_at: datetime,
        notification_id: int | None,
    ) -> None:
        values = {
            "email": email,
            "list_id": list_id,
            "received_at": received_at,
            "confirmed_at": confirmed_at,
            "notification_id": notification_id,
        }
        insert = dialect_insert(self.conn.dialect, newsletter_signups).values(
            merchant_id=merchant_id, email_key=email_key(email), used_at=None, **values
        )
        await self.conn.execute(
            insert.on_conflict_do_update(
                index_elements=[_s.merchant_id, _s.email_key],
                set_={**values, "used_at": None},
                where=_s.confirmed_at <= insert.excluded.confirmed_at,
            )
        )

    async def take_signup(
        self, merchant_id: MerchantId, email: str, *, since: datetime, at: datetime
    ) -> KeptSignup | None:
        # one UPDATE: of concurrent takers the first marks it used, the others find it used
        row = (
            await self.conn.execute(
                newsletter_signups.update()
                .where(
                    _s.merchant_id == merchant_id,
                    _s.email_key == email_key(email),
                    _s.used_at.is_(None),
                    _s.confirmed_at >= since,
                )
                .values(used_at=at)
                .returning(
                    _s.email, _s.list_id, _s.received_at, _s.confirmed_at, _s.notification_id
                )
            )
        ).first()
        if row is None:
            return None
        return KeptSignup(
            email=row.email,
            list_id=row.list_id,
            received_at=row.received_at,
            confirmed_at=row.confirmed_at,
            notification_id=row.notification_id,
        )

    async def purge_signups(self, *, before: datetime) -> int:
        result = await self.conn.execute(
            newsletter_signups.delete().where(_s.confirmed_at < before)
        )
        return int(result.rowcount)
