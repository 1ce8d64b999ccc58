"""The contacts waiting to be written to the merchant's Ecomail list, in memory."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.contact_state import SubscriptionStatus
from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.newsletter import SubscriptionChange
from ellity.ports.storage import (
    AddAttempt,
    ClaimedContact,
    ContactSyncRepository,
    ExpiredChunk,
    OldAddress,
)
from tests.fakes.storage.ledger import expired_in
from tests.fakes.storage.state import ContactRecord, OldAddressRecord, round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


def _later(*instants: datetime | None) -> datetime | None:
    known = [instant for instant in instants if instant is not None]
    return max(known, default=None)


class InMemoryContactSyncRepository(ContactSyncRepository):
    """Claims are exclusive because writers hold the store's lock (like ``BEGIN IMMEDIATE``).
    Marking and retrying tell the unit of work that the worker has work (it counts the
    commit in ``InMemoryStore.outbox_commits``, where the SQL one nudges the worker)."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def mark_changed(
        self,
        merchant_id: MerchantId,
        customer_ids: Sequence[CustomerId],
        *,
        at: datetime,
        moved: bool = False,
    ) -> None:
        await round_trip()
        if not customer_ids:
            return
        self._mark(merchant_id, set(customer_ids), at=at, moved=moved)
        self._uow.made_outbox_work = True

    async def request_unsubscribe(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, at: datetime
    ) -> None:
        await round_trip()
        self._mark(merchant_id, {customer_id}, at=at, moved=False)
        row = self._uow.state.contacts.get(customer_id)
        if row is not None:
            row.unsubscribe_due = True
            self._uow.made_outbox_work = True

    async def mark_moved(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, old_email: str, at: datetime
    ) -> None:
        await round_trip()
        state = self._uow.state
        customer = state.customers.get(customer_id)
        if customer is None or customer.merchant_id != merchant_id:
            return
        row = state.contacts.get(customer_id)
        written = row is not None and (row.in_list or row.claim_token is not None)
        mine = [a for a in state.old_addresses.values() if a.merchant_id == merchant_id]
        remembered = any(a.key == email_key(old_email) for a in mine)
        known = any(a.customer_id == customer_id and a.key == email_key(old_email) for a in mine)
        if (written or remembered) and not known:
            address_id = state.next_id("old_addresses")
            state.old_addresses[address_id] = OldAddressRecord(
                address_id, merchant_id, customer_id, old_email, at
            )
        await self.mark_changed(merchant_id, [customer_id], at=at, moved=True)

    async def old_addresses(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId]
    ) -> list[OldAddress]:
        await round_trip()
        state = self._uow.state
        wanted = set(customer_ids)
        held = {c.email_key for c in state.customers.values() if c.merchant_id == merchant_id}
        return [
            OldAddress(a.id, a.customer_id, a.email)
            for a in sorted(state.old_addresses.values(), key=lambda a: a.id)
            if a.merchant_id == merchant_id and a.customer_id in wanted and a.key not in held
        ]

    async def forget_old_addresses(
        self, merchant_id: MerchantId, address_ids: Sequence[int], *, at: datetime
    ) -> int:
        await round_trip()
        state = self._uow.state
        gone = [
            state.old_addresses.pop(i)
            for i in sorted(set(address_ids))
            if i in state.old_addresses and state.old_addresses[i].merchant_id == merchant_id
        ]
        keys = {a.key for a in gone}
        taken = {
            customer_id
            for customer_id, c in state.customers.items()
            if c.merchant_id == merchant_id and c.email is not None and c.email_key in keys
        }
        if taken:
            self._mark(merchant_id, taken, at=at, moved=False)
            self._uow.made_outbox_work = True
        return len(gone)

    async def mark_expired(self, chunk: ExpiredChunk) -> int:
        await round_trip()
        hit = {customer_id for customer_id, _ in expired_in(self._uow.state, chunk)}
        if hit:
            self._mark(chunk.merchant_id, hit, at=chunk.at, moved=False)
            self._uow.made_outbox_work = True
        return len(hit)

    async def mark_all(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, at: datetime
    ) -> tuple[int, CustomerId | None]:
        await round_trip()
        chunk = sorted(
            customer_id
            for customer_id, c in self._uow.state.customers.items()
            if c.merchant_id == merchant_id and customer_id > after_id and c.email is not None
        )[:limit]
        if not chunk:
            return 0, None
        self._mark(merchant_id, set(chunk), at=at, moved=False)
        self._uow.made_outbox_work = True
        return len(chunk), chunk[-1]

    def _mark(
        self, merchant_id: MerchantId, customer_ids: set[CustomerId], *, at: datetime, moved: bool
    ) -> None:
        state = self._uow.state
        for customer_id in sorted(customer_ids):
            customer = state.customers.get(customer_id)
            if customer is None or customer.merchant_id != merchant_id or customer.email is None:
                continue
            row = state.contacts.get(customer_id)
            if row is None:
                state.contacts[customer_id] = ContactRecord(
                    customer_id=customer_id, merchant_id=merchant_id, pending_since=at
                )
                continue
            if row.pending_since is None:
                row.pending_since = at
            row.change_seq += 1
            row.failed_at = None
            if moved:
                row.in_list = False

    async def claim(
        self, merchant_id: MerchantId, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedContact]:
        await round_trip()
        due = sorted(
            (r for r in self._mine(merchant_id) if r.due(now)),
            key=lambda r: (r.pending_since, r.customer_id),
        )[:limit]
        for row in due:
            row.claim_token, row.claimed_until = token, now + lease
            row.claimed_seq = row.change_seq
        return [
            ClaimedContact(
                customer_id=r.customer_id, in_list=r.in_list, unsubscribe=r.unsubscribe_due
            )
            for r in sorted(due, key=lambda r: r.customer_id)
        ]

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
        await round_trip()
        wanted = set(customer_ids)
        held = [r for r in self._claimed(merchant_id, token) if r.customer_id in wanted]
        for row in held:
            if row.change_seq == row.claimed_seq:  # not changed since the claim
                row.pending_since = None
                if row.customer_id in members:
                    row.in_list = True
                if row.customer_id in unsubscribed:
                    row.unsubscribe_due = False
            row.attempts, row.last_error, row.next_attempt_at = 0, None, None
            row.synced_at = at
            if row.customer_id in added:
                row.added_at = at
            row.unclaim()
        return len(held)

    async def record_add_attempts(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId], *, at: datetime
    ) -> None:
        await round_trip()
        state = self._uow.state
        for customer_id in sorted(set(customer_ids)):
            customer = state.customers.get(customer_id)
            if customer is None or customer.merchant_id != merchant_id:
                continue
            row = state.contacts.get(customer_id)
            if row is None:
                if customer.email is None:
                    continue
                row = state.contacts[customer_id] = ContactRecord(customer_id, merchant_id)
            same_episode = (
                row.add_attempted_at is not None
                and row.echo_taken_at is None
                and not self._unsubscribed_since(merchant_id, customer.email_key, row)
            )
            if not same_episode:
                row.add_attempted_at = at
                row.echo_taken_at = row.echo_subscribed_at = None

    def _unsubscribed_since(
        self, merchant_id: MerchantId, key: str | None, row: ContactRecord
    ) -> bool:
        """An ``UNSUBSCRIBED`` notification for this email was received after the contact's
        add attempt (as the SQL adapter matches it: by ``email_key``)."""
        attempted = row.add_attempted_at
        return key is not None and any(
            n.merchant_id == merchant_id
            and n.notification.change is SubscriptionChange.UNSUBSCRIBED
            and email_key(n.notification.email) == key
            and attempted is not None
            and n.received_at > attempted
            for n in self._uow.state.notifications.values()
        )

    async def first_customer(
        self, merchant_id: MerchantId, *, consents: Collection[MarketingConsent] | None = None
    ) -> CustomerId | None:
        await round_trip()
        found = [
            customer_id
            for customer_id, c in self._uow.state.customers.items()
            if c.merchant_id == merchant_id
            and c.email is not None
            and (consents is None or c.marketing_consent in consents)
        ]
        return min(found, default=None)

    async def renew_claim(self, *, token: str, until: datetime) -> int:
        await round_trip()
        held = [r for r in self._uow.state.contacts.values() if r.claim_token == token]
        for row in held:
            row.claimed_until = until
        return len(held)

    async def drop_claim(self, *, token: str) -> int:
        await round_trip()
        held = [r for r in self._uow.state.contacts.values() if r.claim_token == token]
        for row in held:
            row.unclaim()
        return len(held)

    async def release(
        self, merchant_id: MerchantId, *, token: str, error: str, retry_at: datetime, at: datetime
    ) -> int:
        await round_trip()
        held = list(self._claimed(merchant_id, token))
        for row in held:
            row.attempts += 1
            row.next_attempt_at, row.last_error = retry_at, error
            row.unclaim()
        return len(held)

    async def defer(self, merchant_id: MerchantId, *, token: str, until: datetime) -> int:
        await round_trip()
        held = list(self._claimed(merchant_id, token))
        for row in held:
            row.next_attempt_at = until
            row.unclaim()
        return len(held)

    async def fail(
        self,
        merchant_id: MerchantId,
        customer_ids: Sequence[CustomerId] | None,
        *,
        token: str,
        error: str,
        at: datetime,
    ) -> int:
        await round_trip()
        wanted = None if customer_ids is None else set(customer_ids)
        held = [
            r
            for r in self._claimed(merchant_id, token)
            if wanted is None or r.customer_id in wanted
        ]
        for row in held:
            row.attempts += 1
            row.failed_at, row.last_error = at, error
            row.unclaim()
        return len(held)

    async def record_written(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        added_at: datetime | None,
        at: datetime,
    ) -> None:
        await round_trip()
        state = self._uow.state
        customer = state.customers.get(customer_id)
        if customer is None or customer.merchant_id != merchant_id:
            return  # another merchant's customer: nothing is recorded, as in SQL
        row = state.contacts.get(customer_id)
        if row is None:
            row = state.contacts[customer_id] = ContactRecord(customer_id, merchant_id)
        row.in_list, row.synced_at = True, at
        if added_at is not None:
            row.added_at = added_at

    async def attempts(self, merchant_id: MerchantId, *, token: str) -> int:
        await round_trip()
        return max((r.attempts for r in self._claimed(merchant_id, token)), default=0)

    async def is_pending(self, merchant_id: MerchantId, customer_id: CustomerId) -> bool:
        await round_trip()
        row = self._uow.state.contacts.get(customer_id)
        return row is not None and row.merchant_id == merchant_id and row.waiting

    async def due_merchants(self, *, now: datetime) -> list[MerchantId]:
        await round_trip()
        state = self._uow.state
        return sorted(
            merchant_id
            for merchant_id, integration in state.ecomail.items()
            if integration.active and any(r.due(now) for r in self._mine(merchant_id))
        )

    async def next_due(self) -> datetime | None:
        await round_trip()
        state = self._uow.state
        active = {m for m, integration in state.ecomail.items() if integration.active}
        dues = [
            _later(r.pending_since, r.next_attempt_at, r.claimed_until)
            for r in state.contacts.values()
            if r.waiting and r.merchant_id in active
        ]
        return min((due for due in dues if due is not None), default=None)

    async def retry_failed(self, merchant_id: MerchantId, *, at: datetime) -> int:
        await round_trip()
        failed = [r for r in self._mine(merchant_id) if r.failed_at is not None]
        for row in failed:  # the last error stays, as in the SQL adapter
            row.failed_at, row.attempts, row.next_attempt_at = None, 0, None
            if row.pending_since is None:
                row.pending_since = at
        if failed:
            self._uow.made_outbox_work = True
        return len(failed)

    async def added_at(self, merchant_id: MerchantId, customer_id: CustomerId) -> datetime | None:
        await round_trip()
        row = self._uow.state.contacts.get(customer_id)
        return row.added_at if row is not None and row.merchant_id == merchant_id else None

    def _mine(self, merchant_id: MerchantId) -> Iterable[ContactRecord]:
        return (r for r in self._uow.state.contacts.values() if r.merchant_id == merchant_id)

    def _claimed(self, merchant_id: MerchantId, token: str) -> Iterable[ContactRecord]:
        return (r for r in self._mine(merchant_id) if r.claim_token == token)

    async def add_attempt(
        self, merchant_id: MerchantId, customer_id: CustomerId
    ) -> AddAttempt | None:
        await round_trip()
        row = self._uow.state.contacts.get(customer_id)
        if row is None or row.merchant_id != merchant_id or row.add_attempted_at is None:
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
        await round_trip()
        row = self._uow.state.contacts.get(customer_id)
        if row is not None and row.merchant_id == merchant_id:
            row.echo_taken_at, row.echo_subscribed_at = at, subscribed_at

    async def record_status(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        status: SubscriptionStatus,
        *,
        at: datetime,
    ) -> None:
        await round_trip()
        row = self._uow.state.contacts.get(customer_id)
        if row is not None and row.merchant_id == merchant_id:
            row.list_status, row.list_status_at = int(status), at

    async def mark_member(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, at: datetime
    ) -> None:
        await round_trip()
        state = self._uow.state
        integration = state.ecomail.get(merchant_id)
        if integration is None or not integration.active:
            return
        customer = state.customers.get(customer_id)
        if customer is None or customer.merchant_id != merchant_id or customer.email is None:
            return
        self._mark(merchant_id, {customer_id}, at=at, moved=False)
        state.contacts[customer_id].in_list = True
        self._uow.made_outbox_work = True
