"""The outbox: work for the outside world, written in the transaction that causes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.outbox import OutboxItem, Payload
from ellity.ports.storage.claims import ClaimKeeping
from ellity.ports.storage.ledger import ExpiredChunk


class OutboxRepository(ClaimKeeping, Protocol):
    """Work for the outside world, written in the transaction that causes it.

    Claims are exclusive: while a claim lives, no other claimer gets the item, however many
    claim at once. Settling an item (delivered, skipped, failed) needs the token of the claim
    that holds it; a worker whose claim was taken over learns it from a ``False``.
    """

    async def add(
        self,
        merchant_id: MerchantId,
        topic: str,
        payload: Payload,
        *,
        customer_id: CustomerId | None = None,
        at: datetime,
    ) -> int:
        """Record an item in this transaction; claimable from ``at`` once committed. It keeps
        the current request's id (``ports.request_context``), which its claim returns."""
        ...

    async def add_many(
        self,
        merchant_id: MerchantId,
        topic: str,
        items: Sequence[tuple[CustomerId | None, Payload]],
        *,
        at: datetime,
    ) -> int:
        """Record one item per ``(customer_id, payload)`` in this transaction, in one
        statement (or a few); returns how many. Each keeps the current request's id."""
        ...

    async def add_for_expired(self, chunk: ExpiredChunk, topic: str) -> int:
        """Record, set-based, one item per customer with an email in ``chunk`` (call it in the
        expiry's transaction): for ``ecomail.event`` the ``credit`` event, for
        ``email.points_changed`` the email. Each stores only the customer's expiry entry and
        the next expiration after it; ``claim`` gives it the payload
        ``balance_change.change_payload`` builds from them. Returns how many."""
        ...

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        """Up to ``limit`` due items (pending, available, no live claim), oldest first, claimed
        with ``token`` until ``now + lease``; each claim counts as an attempt, except that an
        expired claim taken over before its item's call began counts once for both. Expired
        claims are taken over. The claims hold once the unit of work commits. An item that
        refers to a ledger entry (``add_for_expired``) comes with the payload built from it."""
        ...

    async def mark_sending(self, item_id: int, *, token: str, at: datetime) -> bool:
        """The item's call (SMTP, Ecomail) begins now: recorded (commit it before the call)
        until the outcome is, so that a claim taking the item over after its worker died knows
        it may have been delivered (``OutboxItem.interrupted``). False unless ``token`` holds
        the item."""
        ...

    async def mark_delivered(self, item_id: int, *, token: str, at: datetime) -> bool:
        """False (and nothing changed) unless ``token`` holds the item."""
        ...

    async def mark_skipped(self, item_id: int, *, token: str, reason: str, at: datetime) -> bool:
        """Settle without delivering: there is nothing to send any more."""
        ...

    async def mark_failed(
        self, item_id: int, *, token: str, error: str, retry_at: datetime | None, at: datetime
    ) -> bool:
        """Record a failed attempt and its error: pending again from ``retry_at``, or, with
        ``None``, given up (status failed) until the merchant retries it."""
        ...

    async def defer(self, item_id: int, *, token: str, until: datetime) -> bool:
        """Pending again from ``until`` without counting this claim as an attempt (the item
        waits for something else to happen first)."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest pending item can next be claimed (its available time, or the end
        of its live claim); ``None`` when nothing is pending."""
        ...

    async def retry_failed(
        self, merchant_id: MerchantId, item_id: int | None, *, at: datetime
    ) -> int:
        """Make the merchant's failed item (or all of them, with ``None``) pending again with
        a fresh count of attempts. Returns how many."""
        ...

    async def purge_settled(self, *, before: datetime) -> int:
        """Delete delivered and skipped items settled before ``before``; failed ones stay."""
        ...
