"""Points ledgers: entries, lots and the summary kept on each customer, and the
nightly run's set-based expiry and pre-expiry notices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.ledger import Entry, EntryKind, Expiration, Ledger
from ellity.domain.model.money import Points


@dataclass(frozen=True, slots=True)
class OrderUse:
    """An order reference already recorded in a ledger."""

    customer_id: CustomerId
    entry: Entry


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    customer_id: CustomerId
    entry: Entry


@dataclass(frozen=True, slots=True)
class ExpiredChunk:
    """The customers ``after_id < id <= up_to_id`` (``None``: no upper bound) of a merchant
    from whom the expiry run at ``at`` took points: those with that run's expiry entry."""

    merchant_id: MerchantId
    at: datetime
    after_id: CustomerId = BEFORE_FIRST_CUSTOMER
    up_to_id: CustomerId | None = None


@dataclass(frozen=True, slots=True)
class ExpiryNotice:
    """Points about to expire that a customer is told about now (once per last valid day)."""

    customer_id: CustomerId
    expiration: Expiration
    balance: Points


class LedgerRepository(Protocol):
    async def get(
        self, merchant_id: MerchantId, customer_id: CustomerId, policy: ExpiryPolicy
    ) -> Ledger:
        """The customer's open lots; lock the customer (``CustomerRepository.get``) first."""
        ...

    async def save(self, merchant_id: MerchantId, ledger: Ledger, *, at: datetime) -> None:
        """Write the ledger's new entries, new and changed lots and its summary."""
        ...

    async def find_order(
        self, merchant_id: MerchantId, kind: EntryKind, order_ref: str
    ) -> OrderUse | None: ...

    async def has_entry(
        self, merchant_id: MerchantId, customer_id: CustomerId, kind: EntryKind
    ) -> bool:
        """Whether the customer's ledger holds any entry of ``kind``."""
        ...

    async def entries(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        limit: int,
        before_id: int | None = None,
    ) -> list[StoredEntry]:
        """Newest first."""
        ...

    async def expire_due(
        self,
        merchant_id: MerchantId,
        *,
        at: datetime,
        today: date,
        after_id: CustomerId = BEFORE_FIRST_CUSTOMER,
        up_to_id: CustomerId | None = None,
    ) -> int:
        """Empty every lot of the merchant whose last valid day is before ``today``, for the
        customers with ``after_id < id <= up_to_id`` (``None``: no upper bound).

        One expiry entry (``at``) per affected customer, summaries updated; set-based, never
        a statement per customer. Returns the number of customers whose points expired
        (``ExpiredChunk`` names them for what follows in the same transaction).
        """
        ...

    async def record_expiry_notices(
        self,
        merchant_id: MerchantId,
        *,
        first_day: date,
        last_day: date,
        after_id: CustomerId,
        up_to_id: CustomerId,
        at: datetime,
    ) -> list[ExpiryNotice]:
        """Note, for each customer with an email and ``after_id < id <= up_to_id``, each last
        valid day in ``[first_day, last_day]`` on which their open lots hold points, unless
        that customer and day were noted before (once ever; of concurrent calls one notes it).

        Set-based. Returns only the notices this call recorded, with the customers' balances.
        """
        ...

    async def loyalty(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId], *, today: date
    ) -> list[CustomerLoyalty]:
        """Identity and summary of the given customers, in one query. The summary is the one
        valid on ``today`` (the merchant's local date): lots whose last valid day is before
        it count for nothing, also while the nightly run has not expired them yet."""
        ...
