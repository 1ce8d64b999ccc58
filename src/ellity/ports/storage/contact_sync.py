"""The Ecomail integration and the contacts waiting to be written to its list."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.contact_state import SubscriptionStatus
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.integration import EcomailIntegration
from ellity.domain.model.newsletter import AddAttempt
from ellity.ports.storage.claims import ClaimKeeping
from ellity.ports.storage.ledger import ExpiredChunk


@dataclass(frozen=True, slots=True)
class ClaimedContact:
    customer_id: CustomerId
    in_list: bool  # the contact is known to be in the list (Ellity wrote it there before)
    unsubscribe: bool = False  # the customer refused marketing: unsubscribe the contact


@dataclass(frozen=True, slots=True)
class OldAddress:
    """An address a customer moved away from, whose contact may still hold their fields."""

    id: int
    customer_id: CustomerId
    email: str


class EcomailRepository(Protocol):
    """The merchant's Ecomail integration (at most one)."""

    async def get(self, merchant_id: MerchantId) -> EcomailIntegration | None: ...

    async def api_key(self, merchant_id: MerchantId) -> str | None:
        """The encrypted API key."""
        ...

    async def save_key(
        self, merchant_id: MerchantId, *, encrypted: str, hint: str, at: datetime
    ) -> None:
        """Store a verified key; the integration is inactive (and without a list) until
        activated again, since a new key may belong to another account."""
        ...

    async def activate(
        self, merchant_id: MerchantId, *, list_id: str, list_name: str, at: datetime
    ) -> None:
        """Active with this list, and a backfill of every customer requested (work for the
        worker: the commit wakes it, as for outbox items)."""
        ...

    async def deactivate(self, merchant_id: MerchantId, *, at: datetime) -> None: ...

    async def request_backfill(self, merchant_id: MerchantId, *, at: datetime) -> None:
        """Push every customer again (restarts a backfill in progress; the commit wakes the
        worker)."""
        ...

    async def advance_backfill(
        self,
        merchant_id: MerchantId,
        *,
        after_id: CustomerId,
        marked: int,
        finished_at: datetime | None,
    ) -> None: ...

    async def record_success(self, merchant_id: MerchantId, *, at: datetime) -> None: ...

    async def active_list(self, merchant_id: MerchantId) -> str | None:
        """The list id while the integration is active; ``None`` otherwise."""
        ...

    async def backfilling(self) -> list[MerchantId]:
        """Active merchants whose backfill still has customers to mark."""
        ...


class ContactSyncRepository(ClaimKeeping, Protocol):
    """Customers whose contact in the merchant's Ecomail list needs writing.

    A change *marks* the customer pending (coalescing: however many changes, one pending
    row, and the worker sends the state as it is when it sends). A worker *claims* pending
    contacts for a lease, writes them, and *settles* them: a contact changed again since its
    claim stays pending. Claims are exclusive across workers.
    """

    async def mark_changed(
        self,
        merchant_id: MerchantId,
        customer_ids: Sequence[CustomerId],
        *,
        at: datetime,
        moved: bool = False,
    ) -> None:
        """Pending from now. ``moved``: the email changed, so the contact under the new
        email is not known to be in the list."""
        ...

    async def request_unsubscribe(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, at: datetime
    ) -> None:
        """The customer refused marketing: mark the contact pending with its unsubscription
        due (call it in the consent change's transaction). Nothing for a customer without an
        email."""
        ...

    async def mark_moved(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, old_email: str, at: datetime
    ) -> None:
        """The customer's email changed from ``old_email`` (call it in the change's
        transaction): ``mark_changed`` with ``moved``, and ``old_email`` is remembered for
        clearing when Ellity may have written it (the contact was written, or a claim is
        writing it now) or another customer's fields may still sit there (it is remembered
        for another customer already)."""
        ...

    async def old_addresses(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId]
    ) -> list[OldAddress]:
        """The addresses these customers left that no customer of the merchant holds now
        (an address someone holds is written with their fields instead)."""
        ...

    async def forget_old_addresses(
        self, merchant_id: MerchantId, address_ids: Sequence[int], *, at: datetime
    ) -> int:
        """These old addresses were cleared: they are forgotten, and a customer who took one
        of them since it was read is marked, so their fields are written again."""
        ...

    async def mark_expired(self, chunk: ExpiredChunk) -> int:
        """Mark, set-based, the contacts of the customers with an email in ``chunk`` (call it
        in the expiry's transaction); returns how many."""
        ...

    async def mark_all(
        self, merchant_id: MerchantId, *, after_id: CustomerId, limit: int, at: datetime
    ) -> tuple[int, CustomerId | None]:
        """Mark the next ``limit`` customers with an email after ``after_id`` (id order);
        returns how many and the last id, or ``None`` for the id when none was left."""
        ...

    async def claim(
        self, merchant_id: MerchantId, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedContact]: ...

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
        """Written: no longer pending unless changed since the claim. ``members``: those of
        them now known to be in the list (written by an add, or by an update that reached
        every contact it sent), in the list from now on unless changed since the claim; the
        others keep what was known. ``added``: those written by an add call that added
        contacts (their ``added_at`` becomes ``at``). ``unsubscribed``: those whose due
        unsubscription is done (or no longer wanted): no longer due unless changed since the
        claim. All of a claim's contacts written together are settled in one call (one
        statement takes their rows in one order)."""
        ...

    async def record_add_attempts(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId], *, at: datetime
    ) -> None:
        """Ellity is about to add these customers' contacts (commit it before the add call,
        so that it stays recorded when the answer is lost). A contact whose earlier attempt's
        echo has not been taken, and for whose email no ``UNSUBSCRIBED`` notification was
        received since that attempt, keeps the earlier attempt (a retry belongs to the same
        episode); any other gets ``add_attempted_at = at`` and no echo taken. A customer of
        the merchant without a contact row gets one (not pending)."""
        ...

    async def first_customer(
        self, merchant_id: MerchantId, *, consents: Collection[MarketingConsent] | None = None
    ) -> CustomerId | None:
        """The merchant's first customer (in id order) with an email, and with one of
        ``consents`` when given: whose contact activation writes first."""
        ...

    async def release(
        self, merchant_id: MerchantId, *, token: str, error: str, retry_at: datetime, at: datetime
    ) -> int:
        """This claim's contacts could not be written now; pending again from ``retry_at``."""
        ...

    async def defer(self, merchant_id: MerchantId, *, token: str, until: datetime) -> int:
        """This claim's contacts wait (for Ellity's request budget) without counting an
        attempt: pending again from ``until``, their attempts and last error unchanged."""
        ...

    async def fail(
        self,
        merchant_id: MerchantId,
        customer_ids: Sequence[CustomerId] | None,
        *,
        token: str,
        error: str,
        at: datetime,
    ) -> int:
        """These of this claim's contacts (``None``: all of them) will not be written as
        things are; failed until retried."""
        ...

    async def record_written(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        added_at: datetime | None,
        at: datetime,
    ) -> None:
        """The contact was written outside a claim (activation writes the first one)."""
        ...

    async def attempts(self, merchant_id: MerchantId, *, token: str) -> int:
        """The most failed attempts among this claim's contacts."""
        ...

    async def is_pending(self, merchant_id: MerchantId, customer_id: CustomerId) -> bool:
        """Pending and not failed: its contact is still on its way."""
        ...

    async def due_merchants(self, *, now: datetime) -> list[MerchantId]:
        """Merchants with an active integration and contacts due now."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest pending contact of an active integration can next be claimed."""
        ...

    async def retry_failed(self, merchant_id: MerchantId, *, at: datetime) -> int: ...

    async def added_at(self, merchant_id: MerchantId, customer_id: CustomerId) -> datetime | None:
        """When an add call of Ellity's that added contacts included this customer."""
        ...

    async def add_attempt(
        self, merchant_id: MerchantId, customer_id: CustomerId
    ) -> AddAttempt | None:
        """Ellity's latest attempt to add the customer's contact, with the echo taken of it;
        ``None`` when Ellity never attempted to add it."""
        ...

    async def take_echo(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        at: datetime,
        subscribed_at: datetime | None,
    ) -> None:
        """A notification was taken as the echo of the contact's add attempt: record when,
        and Ecomail's ``subscribed_at`` of that subscription. Lock the customer first."""
        ...

    async def record_status(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        status: SubscriptionStatus,
        *,
        at: datetime,
    ) -> None:
        """Ecomail reported the contact's status in the list (``at``: when it was asked): kept
        as its status last seen. Nothing when the customer has no contact row."""
        ...

    async def mark_member(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, at: datetime
    ) -> None:
        """Ecomail confirmed the contact subscribed to the list: it is a member (its fields are
        updated, never added) and pending, so they are written at once; the row is made when
        missing. Nothing for a customer without an email or without an active integration."""
        ...
