"""Use cases that change balances: earn, spend, adjust, expire.

Each change records what the outside world must hear of it (the "points changed" email, the
Ecomail contact and ``credit`` event) in the same transaction (``notifications``); the
set-based expiry does so for each chunk of customers it expires (``nightly``).

A transaction that changes several customers (a first purchase paying a referral bonus, a
chunk of the nightly expiry) locks them, and marks their contacts, in id order, so that two
such transactions may wait for each other but never deadlock; one the database aborts all the
same runs again (``retried_on_conflict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import CustomerNotFound, OrderAlreadyUsed
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.ledger import Entry, EntryKind, Ledger, clean_order_ref
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services import nightly, notifications
from ellity.domain.services.common import (
    CustomerView,
    load_customer,
    load_merchant,
    merchant_id_of,
    retried_on_conflict,
    view_of,
)
from ellity.ports.clock import Clock
from ellity.ports.storage import StoredEntry, UniqueViolation, UnitOfWork, UnitOfWorkFactory

MAX_LEDGER_PAGE = 500


@dataclass(frozen=True, slots=True)
class PointsResult:
    view: CustomerView
    entry: Entry | None  # None when an idempotent repeat changed nothing


def referral_order_ref(customer_id: CustomerId) -> str:
    """The bonus for referring ``customer_id`` is recorded once under this reference."""
    return f"referral:{customer_id}"


@retried_on_conflict
async def earn_points(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    points: Points,
    *,
    order_ref: str,
    note: str | None = None,
    uow: UnitOfWork,
    clock: Clock,
) -> PointsResult:
    """Points for a purchase; the same order reference earns once per merchant.

    The customer's first purchase also pays their referrer the merchant's referral bonus, once.
    """
    ref = clean_order_ref(order_ref)
    if ref is None:
        raise ValueError("order_ref is required")
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await _lock_with_referrer(uow, merchant, customer_id)
        used = await uow.ledgers.find_order(merchant_id, EntryKind.EARN, ref)
        if used is not None:
            if used.customer_id != customer_id:
                raise OrderAlreadyUsed(ref)
            return PointsResult(
                view=await view_of(uow, merchant, customer, clock=clock), entry=None
            )
        now = clock.now()
        first_purchase = not await uow.ledgers.has_entry(merchant_id, customer_id, EntryKind.EARN)
        ledger = await uow.ledgers.get(merchant_id, customer_id, merchant.settings.expiry_policy)
        entry = ledger.earn(points, at=now, order_ref=ref, note=note)
        recorded = await _save(uow, merchant_id, ledger, now, ref)
        referrer_id = customer.referred_by_id if first_purchase else None
        if referrer_id is not None and referrer_id < customer_id:  # contacts in id order too
            await _pay_referral_bonus(uow, merchant, referrer_id, customer_id, now)
        await notifications.points_changed(uow, merchant, customer, ledger, recorded)
        if referrer_id is not None and referrer_id >= customer_id:
            await _pay_referral_bonus(uow, merchant, referrer_id, customer_id, now)
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return PointsResult(view=view, entry=entry)


@retried_on_conflict
async def spend_points(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    points: Points,
    *,
    order_ref: str | None = None,
    note: str | None = None,
    uow: UnitOfWork,
    clock: Clock,
) -> PointsResult:
    """Redeem points, oldest first; refused past the balance. An order reference spends once."""
    ref = clean_order_ref(order_ref)
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id, for_update=True)
        if ref is not None:
            used = await uow.ledgers.find_order(merchant_id, EntryKind.SPEND, ref)
            if used is not None:
                if used.customer_id != customer_id:
                    raise OrderAlreadyUsed(ref)
                return PointsResult(
                    view=await view_of(uow, merchant, customer, clock=clock), entry=None
                )
        now = clock.now()
        ledger = await uow.ledgers.get(merchant_id, customer_id, merchant.settings.expiry_policy)
        entry = ledger.spend(points, at=now, order_ref=ref, note=note)
        recorded = await _save(uow, merchant_id, ledger, now, ref)
        await notifications.points_changed(uow, merchant, customer, ledger, recorded)
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return PointsResult(view=view, entry=entry)


@retried_on_conflict
async def adjust_points(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    delta: Points,
    *,
    note: str | None,
    uow: UnitOfWork,
    clock: Clock,
) -> PointsResult:
    """A manual correction with a note; a negative one cannot take more than the balance."""
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id, for_update=True)
        now = clock.now()
        ledger = await uow.ledgers.get(merchant_id, customer_id, merchant.settings.expiry_policy)
        entry = ledger.adjust(delta, at=now, note=note)
        recorded = await _save(uow, merchant_id, ledger, now, None)
        await notifications.points_changed(uow, merchant, customer, ledger, recorded)
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return PointsResult(view=view, entry=entry)


async def ledger_entries(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    *,
    limit: int = 100,
    before_id: int | None = None,
    uow: UnitOfWork,
) -> list[StoredEntry]:
    """A customer's entries, newest first."""
    async with uow:
        await load_customer(uow, merchant_id, customer_id)
        return await uow.ledgers.entries(
            merchant_id, customer_id, limit=max(1, min(limit, MAX_LEDGER_PAGE)), before_id=before_id
        )


async def expire_due_points(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    chunk_size: int = nightly.NIGHTLY_CHUNK,
) -> int:
    """Expire, for all the merchant's customers, the points whose last day has passed, a
    chunk of customers per transaction (``nightly.expire_points``); returns how many
    customers lost points."""
    result = await nightly.expire_points(
        merchant_id, uow_factory=uow_factory, clock=clock, chunk_size=chunk_size
    )
    return result.customers


async def _save(
    uow: UnitOfWork, merchant_id: MerchantId, ledger: Ledger, now: datetime, ref: str | None
) -> list[Entry]:
    """Save; returns the entries written (an expiry the change recorded first, then the
    change), each of which the outside world must hear of. A concurrent use of the same
    order reference surfaces as ``OrderAlreadyUsed``."""
    entries = list(ledger.new_entries)
    try:
        await uow.ledgers.save(merchant_id, ledger, at=now)
    except UniqueViolation:
        raise OrderAlreadyUsed(ref or "") from None
    return entries


async def _lock_with_referrer(
    uow: UnitOfWork, merchant: Merchant, customer_id: CustomerId
) -> Customer:
    """Lock the customer and, when this may be their first purchase and a referral bonus is
    on, their referrer too: both in id order, as the nightly expiry locks a chunk's customers,
    so that neither waits for the other holding what it wants."""
    merchant_id = merchant_id_of(merchant)
    if not merchant.settings.referral_bonus.is_positive():
        return await load_customer(uow, merchant_id, customer_id, for_update=True)
    customer = await load_customer(uow, merchant_id, customer_id)
    referrer_id = customer.referred_by_id
    if referrer_id is None or await uow.ledgers.has_entry(
        merchant_id, customer_id, EntryKind.EARN
    ):  # no first purchase any more, for good
        return await load_customer(uow, merchant_id, customer_id, for_update=True)
    for locked_id in sorted({customer_id, referrer_id}):
        locked = await uow.customers.get(merchant_id, locked_id, for_update=True)
        if locked_id == customer_id:
            if locked is None:
                raise CustomerNotFound(customer_id)
            customer = locked
    return customer


async def _pay_referral_bonus(
    uow: UnitOfWork,
    merchant: Merchant,
    referrer_id: CustomerId,
    referred_id: CustomerId,
    now: datetime,
) -> None:
    """The referrer earns the bonus with the referred customer's first purchase, once ever.

    A bonus that was off (0) at that first purchase is not paid later.
    """
    bonus = merchant.settings.referral_bonus
    merchant_id = merchant_id_of(merchant)
    ref = referral_order_ref(referred_id)
    if not bonus.is_positive():
        return
    if await uow.ledgers.find_order(merchant_id, EntryKind.REFERRAL_BONUS, ref) is not None:
        return
    referrer = await uow.customers.get(merchant_id, referrer_id, for_update=True)
    if referrer is None:
        return
    ledger = await uow.ledgers.get(merchant_id, referrer_id, merchant.settings.expiry_policy)
    ledger.earn(bonus, at=now, kind=EntryKind.REFERRAL_BONUS, order_ref=ref)
    recorded = await _save(uow, merchant_id, ledger, now, ref)
    await notifications.points_changed(uow, merchant, referrer, ledger, recorded)
