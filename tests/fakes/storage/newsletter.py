"""Ecomail's list webhook in memory: tokens, received notifications, the reward held."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    ClaimedNotification,
    Notification,
    NotificationState,
    Outcome,
    RewardHold,
    SubscriptionChange,
)
from ellity.domain.model.reason import Reason
from ellity.ports.storage import KeptSignup, NewsletterRepository, UniqueViolation
from tests.fakes.storage.state import (
    NotificationRow,
    RewardRow,
    SignupRecord,
    WebhookRecord,
    assign,
    round_trip,
)

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


class InMemoryNewsletterRepository(NewsletterRepository):
    """Claims are exclusive because writers hold the store's lock (like ``BEGIN IMMEDIATE``);
    receiving a notification tells the unit of work that the worker has work."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def webhook_token(self, merchant_id: MerchantId) -> str | None:
        await round_trip()
        row = self._uow.state.webhooks.get(merchant_id)
        return None if row is None else row.token_encrypted

    async def set_webhook_token(
        self, merchant_id: MerchantId, *, digest: str, encrypted: str, at: datetime, replace: bool
    ) -> bool:
        await round_trip()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        if merchant_id in state.webhooks and not replace:
            return False
        if any(w.token_digest == digest for m, w in state.webhooks.items() if m != merchant_id):
            raise UniqueViolation("token_digest")
        state.webhooks[merchant_id] = WebhookRecord(merchant_id, digest, encrypted, at)
        return True

    async def webhook_merchant(self, digest: str) -> MerchantId | None:
        await round_trip()
        return next(
            (m for m, w in self._uow.state.webhooks.items() if w.token_digest == digest), None
        )

    async def receive(self, digest: str, notification: Notification, *, at: datetime) -> int | None:
        merchant_id = await self.webhook_merchant(digest)
        if merchant_id is None:
            return None
        return self._store(merchant_id, notification, received_at=at, at=at)

    async def enqueue(
        self,
        merchant_id: MerchantId,
        notification: Notification,
        *,
        received_at: datetime,
        at: datetime,
    ) -> int:
        await round_trip()
        if merchant_id not in self._uow.state.merchants:
            raise LookupError(f"no merchant {merchant_id}")  # a foreign key in SQL
        return self._store(merchant_id, notification, received_at=received_at, at=at)

    def _store(
        self,
        merchant_id: MerchantId,
        notification: Notification,
        *,
        received_at: datetime,
        at: datetime,
    ) -> int:
        state = self._uow.state
        row = NotificationRow(
            id=state.next_id("notifications"),
            merchant_id=merchant_id,
            received_at=received_at,
            notification=notification,
            available_at=at,
            email_key=email_key(notification.email),
        )
        state.notifications[row.id] = row
        self._uow.made_outbox_work = True
        return row.id

    async def unsubscribed_since(
        self, merchant_id: MerchantId, email: str, since: datetime, *, until: datetime | None = None
    ) -> bool:
        await round_trip()
        key = email_key(email)
        return any(
            r.merchant_id == merchant_id
            and r.email_key == key
            and r.notification.change is SubscriptionChange.UNSUBSCRIBED
            and r.received_at >= since
            and (until is None or r.received_at <= until)
            for r in self._uow.state.notifications.values()
        )

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedNotification]:
        await round_trip()
        due = sorted(
            (
                r
                for r in self._uow.state.notifications.values()
                if r.state is NotificationState.PENDING
                and r.available_at <= now
                and (r.claimed_until is None or r.claimed_until <= now)
            ),
            key=lambda r: (r.available_at, r.id),
        )[:limit]
        for row in due:
            row.claim_token, row.claimed_until = token, now + lease
            row.attempts += 1
        return [
            ClaimedNotification(
                id=r.id,
                merchant_id=r.merchant_id,
                notification=r.notification,
                received_at=r.received_at,
                attempts=r.attempts,
            )
            for r in sorted(due, key=lambda r: r.id)
        ]

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
            state=NotificationState.PROCESSED,
            outcome=outcome,
            reason=reason.english(),
            reason_parts=reason,
            points=points,
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
        row = self._uow.state.notifications.get(notification_id)
        changes: dict[str, object] = {
            "available_at": until,
            "reason": reason.english(),
            "reason_parts": reason,
        }
        if not count_attempt and row is not None:
            changes["attempts"] = row.attempts - 1
        return await self._update_claimed(notification_id, token, **changes)

    async def renew_claim(self, *, token: str, until: datetime) -> int:
        await round_trip()
        held = [r for r in self._uow.state.notifications.values() if r.claim_token == token]
        for row in held:
            row.claimed_until = until
        return len(held)

    async def drop_claim(self, *, token: str) -> int:
        await round_trip()
        held = [r for r in self._uow.state.notifications.values() if r.claim_token == token]
        for row in held:
            row.attempts -= 1  # the claim counted an attempt: take it back
            row.claim_token = row.claimed_until = None
        return len(held)

    async def _update_claimed(self, notification_id: int, token: str, **changes: object) -> bool:
        await round_trip()
        row = self._uow.state.notifications.get(notification_id)
        if row is None or row.claim_token != token or row.state is not NotificationState.PENDING:
            return False
        row.claim_token = row.claimed_until = None
        assign(row, **changes)
        return True

    async def next_due(self) -> datetime | None:
        await round_trip()
        pending = [
            r.claimable_from()
            for r in self._uow.state.notifications.values()
            if r.state is NotificationState.PENDING
        ]
        return min(pending, default=None)

    async def purge_processed(self, *, before: datetime) -> int:
        await round_trip()
        notifications = self._uow.state.notifications
        gone = [
            i
            for i, r in notifications.items()
            if r.state is NotificationState.PROCESSED
            and r.processed_at is not None
            and r.processed_at < before
        ]
        for notification_id in gone:
            del notifications[notification_id]
        return len(gone)

    async def reward_hold(self, merchant_id: MerchantId, customer_id: CustomerId) -> RewardHold:
        await round_trip()
        row = self._uow.state.rewards.get(customer_id)
        if row is None or row.merchant_id != merchant_id:
            return RewardHold()
        return copy.deepcopy(row.hold)

    async def save_reward_hold(
        self, merchant_id: MerchantId, customer_id: CustomerId, hold: RewardHold, *, at: datetime
    ) -> None:
        await round_trip()
        state = self._uow.state
        customer = state.customers.get(customer_id)
        if customer is None or customer.merchant_id != merchant_id:
            return  # another merchant's customer: nothing is stored, as in SQL
        state.rewards[customer_id] = RewardRow(merchant_id, copy.deepcopy(hold), at)

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
        await round_trip()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")  # a foreign key in SQL
        kept = self._signup(merchant_id, email)
        if kept is not None and kept.confirmed_at > confirmed_at:
            return  # a newer confirmation is kept already
        signup_id = state.next_id("signups") if kept is None else kept.id
        state.signups[signup_id] = SignupRecord(
            signup_id, merchant_id, email, list_id, received_at, confirmed_at, notification_id
        )

    async def take_signup(
        self, merchant_id: MerchantId, email: str, *, since: datetime, at: datetime
    ) -> KeptSignup | None:
        await round_trip()
        kept = self._signup(merchant_id, email)
        if kept is None or kept.used_at is not None or kept.confirmed_at < since:
            return None
        kept.used_at = at
        return KeptSignup(
            kept.email, kept.list_id, kept.received_at, kept.confirmed_at, kept.notification_id
        )

    async def purge_signups(self, *, before: datetime) -> int:
        await round_trip()
        signups = self._uow.state.signups
        gone = [i for i, r in signups.items() if r.confirmed_at < before]
        for signup_id in gone:
            del signups[signup_id]
        return len(gone)

    def _signup(self, merchant_id: MerchantId, email: str) -> SignupRecord | None:
        key = email_key(email)
        return next(
            (
                r
                for r in self._uow.state.signups.values()
                if r.merchant_id == merchant_id and r.key == key
            ),
            None,
        )
