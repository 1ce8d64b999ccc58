"""Ecomail's list webhook: tokens, received notifications, the reward held."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    ClaimedNotification,
    Notification,
    Outcome,
    RewardHold,
)
from ellity.domain.model.reason import Reason
from ellity.ports.storage.claims import ClaimKeeping


@dataclass(frozen=True, slots=True)
class KeptSignup:
    """A confirmed sign-up for an email no customer had (``keep_signup``)."""

    email: str
    list_id: str
    received_at: datetime  # when its notification was received
    confirmed_at: datetime  # when Ecomail confirmed it
    notification_id: int | None


class NewsletterRepository(ClaimKeeping, Protocol):
    """Ecomail's list webhook and the newsletter reward: each merchant's webhook token, the
    notifications the webhook received, and the reward each customer holds.

    Notifications are claimed like outbox items: while a claim lives no other claimer gets
    the notification, however many claim at once; settling or deferring needs the claim's
    token, and a worker whose claim was taken over learns it from a ``False``.
    """

    async def webhook_token(self, merchant_id: MerchantId) -> str | None:
        """The merchant's webhook token, encrypted."""
        ...

    async def set_webhook_token(
        self, merchant_id: MerchantId, *, digest: str, encrypted: str, at: datetime, replace: bool
    ) -> bool:
        """Store the merchant's token (``digest``: its SHA-256). Without ``replace`` only when
        the merchant has none yet (of concurrent calls one wins). Returns whether it was
        stored. A replaced token stops working at once."""
        ...

    async def receive(self, digest: str, notification: Notification, *, at: datetime) -> int | None:
        """Store a pending notification for the merchant whose token has this ``digest``, in
        one statement; ``None`` (nothing stored) when no merchant has it."""
        ...

    async def enqueue(
        self,
        merchant_id: MerchantId,
        notification: Notification,
        *,
        received_at: datetime,
        at: datetime,
    ) -> int:
        """Store a pending notification for the merchant, due at ``at``, as ``receive`` stores
        one received at ``received_at``; returns its id."""
        ...

    async def unsubscribed_since(
        self, merchant_id: MerchantId, email: str, since: datetime, *, until: datetime | None = None
    ) -> bool:
        """Whether an ``UNSUBSCRIBED`` notification for ``email`` (compared by
        ``email_key``) was received at or after ``since`` (and, with ``until``, at or before
        it)."""
        ...

    async def webhook_merchant(self, digest: str) -> MerchantId | None:
        """The merchant whose webhook token has this digest."""
        ...

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedNotification]:
        """Up to ``limit`` due notifications (pending, available, no live claim), oldest
        first, claimed with ``token`` until ``now + lease``; each claim counts as an attempt.
        Expired claims are taken over."""
        ...

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
        """Record the outcome (processed) and why (its clauses, and its English text);
        False (and nothing changed) unless ``token`` holds the notification."""
        ...

    async def defer(
        self,
        notification_id: int,
        *,
        token: str,
        until: datetime,
        reason: Reason,
        count_attempt: bool,
    ) -> bool:
        """Pending again from ``until``, with what it waits for; without ``count_attempt`` the
        claim is not counted as an attempt."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest pending notification can next be claimed."""
        ...

    async def purge_processed(self, *, before: datetime) -> int:
        """Delete notifications processed before ``before``; returns how many."""
        ...

    async def reward_hold(self, merchant_id: MerchantId, customer_id: CustomerId) -> RewardHold:
        """The reward the customer holds (nothing held when none was ever paid). Lock the
        customer (``CustomerRepository.get``) first when it is to be changed."""
        ...

    async def save_reward_hold(
        self, merchant_id: MerchantId, customer_id: CustomerId, hold: RewardHold, *, at: datetime
    ) -> None: ...

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
        """Keep a confirmed sign-up for an email no customer has, one per ``email_key``: a
        newer confirmation replaces the one kept (unused again); an older one changes
        nothing."""
        ...

    async def take_signup(
        self, merchant_id: MerchantId, email: str, *, since: datetime, at: datetime
    ) -> KeptSignup | None:
        """The unused sign-up kept for ``email`` (by ``email_key``) confirmed at or after
        ``since``, marked used at ``at`` (of concurrent takers one gets it); ``None`` when
        there is none."""
        ...

    async def purge_signups(self, *, before: datetime) -> int:
        """Delete sign-ups confirmed before ``before``; returns how many."""
        ...
