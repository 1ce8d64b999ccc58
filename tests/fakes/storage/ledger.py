"""Points ledgers in memory: entries, lots and each customer's summary, the nightly expiry
and its pre-expiry notices."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.ledger import (
    Entry,
    EntryKind,
    Expiration,
    LastChange,
    Ledger,
    LedgerSummary,
    Lot,
    summary_on,
)
from ellity.domain.model.money import Points
from ellity.ports.storage import (
    ExpiredChunk,
    ExpiryNotice,
    LedgerRepository,
    OrderUse,
    StoredEntry,
    UniqueViolation,
)
from tests.fakes.storage.state import EntryRow, ExpiryNoticeRecord, LotRow, StoreState, round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork

EMPTY_SUMMARY = LedgerSummary(balance=Points.zero(), next_expiration=None, last_change=None)


def expired_in(state: StoreState, chunk: ExpiredChunk) -> list[tuple[CustomerId, int]]:
    """The customers with an email that the chunk's expiry hit, with their expiry entry's id."""
    hit = []
    for entry_id, row in state.entries.items():
        customer = state.customers[row.customer_id]
        if (
            row.merchant_id == chunk.merchant_id
            and row.entry.kind is EntryKind.EXPIRE
            and row.entry.at == chunk.at
            and row.customer_id > chunk.after_id
            and (chunk.up_to_id is None or row.customer_id <= chunk.up_to_id)
            and customer.email is not None
        ):
            hit.append((row.customer_id, entry_id))
    return sorted(hit, key=lambda pair: pair[0])


def summary_of(lots: Iterable[Lot], last_change: LastChange | None) -> LedgerSummary:
    """Balance, next expiration and last change, computed like ``Ledger.summary()``."""
    held = [lot for lot in lots if lot.remaining]
    balance = Points(sum(lot.remaining.hundredths for lot in held))
    dates = [lot.expires_on for lot in held if lot.expires_on is not None]
    next_expiration = None
    if dates:
        first = min(dates)
        value = sum(lot.remaining.hundredths for lot in held if lot.expires_on == first)
        next_expiration = Expiration(on=first, points=Points(value))
    return LedgerSummary(balance=balance, next_expiration=next_expiration, last_change=last_change)


def lots_of(state: StoreState, customer_id: CustomerId) -> list[Lot]:
    return [row.lot for row in state.lots.values() if row.customer_id == customer_id]


def loyalty_of(state: StoreState, customer_id: CustomerId, today: date) -> CustomerLoyalty:
    """The stored summary, or, while it counts a lot past its last valid day, the summary of
    the lots valid on ``today`` (as the SQL adapter reads it)."""
    c = state.customers[customer_id]
    summary = state.summaries.get(customer_id, EMPTY_SUMMARY)
    if summary.next_expiration is not None and summary.next_expiration.on < today:
        summary = summary_on(lots_of(state, customer_id), summary.last_change, on=today)
    return CustomerLoyalty(
        customer_id=customer_id,
        email=c.email,
        first_name=c.first_name,
        last_name=c.last_name,
        registered=c.registered,
        pin=c.pin,
        referral_code=c.referral_code,
        summary=summary,
        marketing_consent=c.marketing_consent,
    )


class InMemoryLedgerRepository(LedgerRepository):
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def get(
        self, merchant_id: MerchantId, customer_id: CustomerId, policy: ExpiryPolicy
    ) -> Ledger:
        await round_trip()
        state = self._uow.state
        lots = [
            dataclasses.replace(copy.deepcopy(row.lot), id=lot_id, loaded_remaining=None)
            for lot_id, row in state.lots.items()
            if (row.merchant_id, row.customer_id) == (merchant_id, customer_id)
            and row.lot.remaining
        ]
        summary = state.summaries.get(customer_id) if self._owns(merchant_id, customer_id) else None
        return Ledger(
            customer_id=customer_id,
            policy=policy,
            lots=lots,
            last_change=summary.last_change if summary else None,
        )

    async def save(self, merchant_id: MerchantId, ledger: Ledger, *, at: datetime) -> None:
        """Writes new entries, new and changed lots, then the summary.

        Like the SQL adapter it marks the ledger saved: new lots get their ids, every lot's
        ``loaded_remaining`` becomes its ``remaining`` and ``new_entries`` is emptied.
        """
        await round_trip()
        state = self._uow.state
        customer_id = ledger.customer_id
        if not self._owns(merchant_id, customer_id):
            raise LookupError(f"no customer {customer_id} of merchant {merchant_id}")
        self._check_order_refs(merchant_id, ledger.new_entries)
        for lot in ledger.lots:
            if lot.is_new:
                lot.id = state.next_id("lots")
                state.lots[lot.id] = LotRow(merchant_id, customer_id, copy.deepcopy(lot))
            elif lot.is_changed and lot.id is not None:
                row = state.lots.get(lot.id)
                if row is None or (row.merchant_id, row.customer_id) != (merchant_id, customer_id):
                    raise LookupError(f"no lot {lot.id} of customer {customer_id}")
                row.lot.remaining = lot.remaining
            lot.loaded_remaining = lot.remaining
        for entry in ledger.new_entries:
            state.entries[state.next_id("entries")] = EntryRow(merchant_id, customer_id, entry)
        ledger.new_entries.clear()
        state.summaries[customer_id] = summary_of(lots_of(state, customer_id), ledger.last_change)

    async def find_order(
        self, merchant_id: MerchantId, kind: EntryKind, order_ref: str
    ) -> OrderUse | None:
        await round_trip()
        for row in self._uow.state.entries.values():
            if (row.merchant_id, row.entry.kind, row.entry.order_ref) == (
                merchant_id,
                kind,
                order_ref,
            ):
                return OrderUse(customer_id=row.customer_id, entry=row.entry)
        return None

    async def has_entry(
        self, merchant_id: MerchantId, customer_id: CustomerId, kind: EntryKind
    ) -> bool:
        await round_trip()
        return any(
            (row.merchant_id, row.customer_id, row.entry.kind) == (merchant_id, customer_id, kind)
            for row in self._uow.state.entries.values()
        )

    async def entries(
        self,
        merchant_id: MerchantId,
        customer_id: CustomerId,
        *,
        limit: int,
        before_id: int | None = None,
    ) -> list[StoredEntry]:
        await round_trip()
        found = [
            StoredEntry(id=entry_id, customer_id=row.customer_id, entry=row.entry)
            for entry_id, row in self._uow.state.entries.items()
            if (row.merchant_id, row.customer_id) == (merchant_id, customer_id)
            and (before_id is None or entry_id < before_id)
        ]
        found.sort(key=lambda stored: stored.id, reverse=True)
        return found[:limit]

    async def expire_due(
        self,
        merchant_id: MerchantId,
        *,
        at: datetime,
        today: date,
        after_id: CustomerId = BEFORE_FIRST_CUSTOMER,
        up_to_id: CustomerId | None = None,
    ) -> int:
        await round_trip()
        state = self._uow.state
        expired: dict[CustomerId, int] = {}  # customer id -> hundredths expired
        for row in state.lots.values():
            lot = row.lot
            if (
                row.merchant_id == merchant_id
                and row.customer_id > after_id
                and (up_to_id is None or row.customer_id <= up_to_id)
                and lot.expires_on is not None
                and lot.expires_on < today
                and lot.remaining.is_positive()
            ):
                expired[row.customer_id] = (
                    expired.get(row.customer_id, 0) + lot.remaining.hundredths
                )
                lot.remaining = Points.zero()
        for customer_id in sorted(expired):
            change = LastChange(on=today, points=Points(-expired[customer_id]))
            summary = summary_of(lots_of(state, customer_id), change)
            entry = Entry(
                kind=EntryKind.EXPIRE, points=change.points, at=at, balance_after=summary.balance
            )
            state.entries[state.next_id("entries")] = EntryRow(merchant_id, customer_id, entry)
            state.summaries[customer_id] = summary
        return len(expired)

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
        await round_trip()
        state = self._uow.state
        held: dict[tuple[CustomerId, date], int] = {}
        for row in state.lots.values():
            lot, customer = row.lot, state.customers.get(row.customer_id)
            if (
                row.merchant_id == merchant_id
                and after_id < row.customer_id <= up_to_id
                and customer is not None
                and customer.email is not None
                and lot.remaining.is_positive()
                and lot.expires_on is not None
                and first_day <= lot.expires_on <= last_day
            ):
                key = (row.customer_id, lot.expires_on)
                held[key] = held.get(key, 0) + lot.remaining.hundredths
        noted = []
        for (customer_id, on), cents in sorted(held.items()):
            if (customer_id, on) in state.expiry_notices:
                continue
            state.expiry_notices[(customer_id, on)] = ExpiryNoticeRecord(
                merchant_id=merchant_id, points=Points(cents), created_at=at
            )
            summary = state.summaries.get(customer_id, EMPTY_SUMMARY)
            noted.append(
                ExpiryNotice(
                    customer_id=customer_id,
                    expiration=Expiration(on, Points(cents)),
                    balance=summary.balance,
                )
            )
        return noted

    async def loyalty(
        self, merchant_id: MerchantId, customer_ids: Sequence[CustomerId], *, today: date
    ) -> list[CustomerLoyalty]:
        await round_trip()
        wanted = sorted(set(customer_ids))
        return [loyalty_of(self._uow.state, i, today) for i in wanted if self._owns(merchant_id, i)]

    def _owns(self, merchant_id: MerchantId, customer_id: CustomerId) -> bool:
        customer = self._uow.state.customers.get(customer_id)
        return customer is not None and customer.merchant_id == merchant_id

    def _check_order_refs(self, merchant_id: MerchantId, new_entries: Sequence[Entry]) -> None:
        """(merchant, kind, order_ref) is unique among entries that have an order_ref."""
        taken = {
            (row.entry.kind, row.entry.order_ref)
            for row in self._uow.state.entries.values()
            if row.merchant_id == merchant_id and row.entry.order_ref is not None
        }
        for entry in new_entries:
            if entry.order_ref is None:
                continue
            key = (entry.kind, entry.order_ref)
            if key in taken:
                raise UniqueViolation("order_ref")
            taken.add(key)
