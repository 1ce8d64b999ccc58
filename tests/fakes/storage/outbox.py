"""The outbox in memory."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ellity.domain.model.balance_change import CHANGE_TOPICS, change_payload
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.outbox import OutboxItem, OutboxStatus, Payload
from ellity.ports.request_context import current_request_id
from ellity.ports.storage import ExpiredChunk, OutboxRepository
from tests.fakes.storage.ledger import expired_in
from tests.fakes.storage.state import OutboxRecord, StoreState, round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


def payload_of(state: StoreState, record: OutboxRecord) -> Payload:
    """The record's payload as a claim reads it: as stored, or built from the ledger entry
    it refers to."""
    if record.entry_id is None:
        return dict(json.loads(record.payload))
    entry = state.entries[record.entry_id].entry
    return change_payload(record.topic, entry, record.next_expiration)


class InMemoryOutboxRepository(OutboxRepository):
    """Claims are exclusive because writers hold the store's lock (like ``BEGIN IMMEDIATE``)."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(
        self,
        merchant_id: MerchantId,
        topic: str,
        payload: Payload,
        *,
        customer_id: CustomerId | None = None,
        at: datetime,
    ) -> int:
        await round_trip()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        record = OutboxRecord(
            id=state.next_id("outbox"),
            merchant_id=merchant_id,
            customer_id=customer_id,
            topic=topic,
            payload=json.dumps(payload, ensure_ascii=False),
            created_at=at,
            available_at=at,
            request_id=current_request_id(),
        )
        state.outbox[record.id] = record
        self._uow.made_outbox_work = True
        return record.id

    async def add_many(
        self,
        merchant_id: MerchantId,
        topic: str,
        items: Sequence[tuple[CustomerId | None, Payload]],
        *,
        at: datetime,
    ) -> int:
        for customer_id, payload in items:
            await self.add(merchant_id, topic, payload, customer_id=customer_id, at=at)
        return len(items)

    async def add_for_expired(self, chunk: ExpiredChunk, topic: str) -> int:
        """References to the entries, as the SQL adapter writes them: the payload is built
        when the item is claimed."""
        if topic not in CHANGE_TOPICS:
            raise ValueError(f"no payload for expired points in {topic} items")
        await round_trip()
        state = self._uow.state
        hit = expired_in(state, chunk)
        for customer_id, entry_id in hit:
            record = OutboxRecord(
                id=state.next_id("outbox"),
                merchant_id=chunk.merchant_id,
                customer_id=customer_id,
                topic=topic,
                payload="{}",
                created_at=chunk.at,
                available_at=chunk.at,
                entry_id=entry_id,
                next_expiration=state.summaries[customer_id].next_expiration,
            )
            state.outbox[record.id] = record
        if hit:
            self._uow.made_outbox_work = True
        return len(hit)

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        await round_trip()
        due = sorted(
            (
                r
                for r in self._uow.state.outbox.values()
                if r.status == OutboxStatus.PENDING.value
                and r.available_at <= now
                and (r.claimed_until is None or r.claimed_until <= now)
            ),
            key=lambda r: (r.available_at, r.id),
        )[:limit]
        for record in due:
            # a claim taken over before its item's call began: that claim's count stands
            if record.claim_token is None or record.sending_since is not None:
                record.attempts += 1
            record.claim_token, record.claimed_until = token, now + lease
            record.last_attempt_at = now
        return [
            OutboxItem(
                id=r.id,
                merchant_id=r.merchant_id,
                customer_id=r.customer_id,
                topic=r.topic,
                payload=self._payload(r),
                attempts=r.attempts,
                created_at=r.created_at,
                interrupted=r.sending_since is not None,
                request_id=r.request_id,
            )
            for r in sorted(due, key=lambda r: r.id)
        ]

    def _payload(self, record: OutboxRecord) -> Payload:
        return payload_of(self._uow.state, record)

    async def renew_claim(self, *, token: str, until: datetime) -> int:
        await round_trip()
        held = [r for r in self._uow.state.outbox.values() if r.claim_token == token]
        for record in held:
            record.claimed_until = until
        return len(held)

    async def drop_claim(self, *, token: str) -> int:
        await round_trip()
        held = [r for r in self._uow.state.outbox.values() if r.claim_token == token]
        for record in held:
            if record.sending_since is None:  # the claim counted an attempt: take it back
                record.attempts -= 1
            record.claim_token = record.claimed_until = None
        return len(held)

    async def mark_sending(self, item_id: int, *, token: str, at: datetime) -> bool:
        await round_trip()
        record = self._uow.state.outbox.get(item_id)
        if (
            record is None
            or record.claim_token != token
            or record.status != OutboxStatus.PENDING.value
        ):
            return False
        record.sending_since = at
        return True

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
        record = self._uow.state.outbox.get(item_id)
        # the claim counted an attempt (at least 1 while a claim holds it): take it back
        attempts = record.attempts - 1 if record is not None else 0
        return await self._settle(item_id, token, available_at=until, attempts=attempts)

    async def _settle(self, item_id: int, token: str, **changes: object) -> bool:
        await round_trip()
        record = self._uow.state.outbox.get(item_id)
        if (
            record is None
            or record.claim_token != token
            or record.status != OutboxStatus.PENDING.value
        ):
            return False
        record.claim_token = record.claimed_until = record.sending_since = None
        for name, value in changes.items():
            setattr(record, name, value)
        return True

    async def next_due(self) -> datetime | None:
        await round_trip()
        pending = [
            r.claimable_from()
            for r in self._uow.state.outbox.values()
            if r.status == OutboxStatus.PENDING.value
        ]
        return min(pending, default=None)

    async def retry_failed(
        self, merchant_id: MerchantId, item_id: int | None, *, at: datetime
    ) -> int:
        await round_trip()
        count = 0
        for record in self._mine(merchant_id):
            if record.status == OutboxStatus.FAILED.value and item_id in (None, record.id):
                record.status, record.attempts, record.available_at = "pending", 0, at
                record.claim_token = record.claimed_until = None
                count += 1
        if count:
            self._uow.made_outbox_work = True
        return count

    async def purge_settled(self, *, before: datetime) -> int:
        await round_trip()
        settled = (OutboxStatus.DELIVERED.value, OutboxStatus.SKIPPED.value)
        gone = [
            r.id
            for r in self._uow.state.outbox.values()
            if r.status in settled and r.delivered_at is not None and r.delivered_at < before
        ]
        for record_id in gone:
            del self._uow.state.outbox[record_id]
        return len(gone)

    def _mine(self, merchant_id: MerchantId) -> Iterable[OutboxRecord]:
        return (r for r in self._uow.state.outbox.values() if r.merchant_id == merchant_id)
