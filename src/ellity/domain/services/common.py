"""Pieces shared by the use cases: loading the merchant, reading a customer's state, and
running a transaction again when the database aborted it for a conflict."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from typing import Any, ParamSpec, TypeVar

from ellity.domain.model.contact import (
    ContactSnapshot,
    CustomerLoyalty,
    ProgrammeLook,
    contact_snapshot,
)
from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import CustomerNotFound, MerchantNotFound
from ellity.domain.model.expiry import local_date
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.ledger import LedgerSummary
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.referral import referral_link
from ellity.ports.clock import Clock
from ellity.ports.storage import TransientConflict, UnitOfWork

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
IdT = TypeVar("IdT", MerchantId, CustomerId)

#: How many times in all a use case runs when each run ends in a ``TransientConflict``.
CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class CustomerView:
    """A customer as the pages and the API show it."""

    customer: Customer
    summary: LedgerSummary
    referral_link: str


def merchant_id_of(merchant: Merchant) -> MerchantId:
    """The id of a stored merchant (every stored one has one)."""
    return _stored(merchant.id)


def customer_id_of(customer: Customer) -> CustomerId:
    """The id of a stored customer (every stored one has one)."""
    return _stored(customer.id)


def _stored(value: IdT | None) -> IdT:
    if value is None:
        raise ValueError("the object has not been stored yet")
    return value


async def load_merchant(uow: UnitOfWork, merchant_id: MerchantId) -> Merchant:
    merchant = await uow.merchants.get(merchant_id)
    if merchant is None:
        raise MerchantNotFound(str(merchant_id))
    return merchant


async def load_customer(
    uow: UnitOfWork, merchant_id: MerchantId, customer_id: CustomerId, *, for_update: bool = False
) -> Customer:
    customer = await uow.customers.get(merchant_id, customer_id, for_update=for_update)
    if customer is None:
        raise CustomerNotFound(customer_id)
    return customer


def look_of(merchant: Merchant) -> ProgrammeLook:
    s = merchant.settings
    return ProgrammeLook(
        locale=s.locale, shop_url=s.shop_url, referral_link_template=s.referral_link_template
    )


def today_of(merchant: Merchant, clock: Clock) -> date:
    """The merchant's local date now: what the customer holds is read as of this day."""
    return local_date(clock.now(), merchant.settings.timezone)


async def view_of(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, *, clock: Clock
) -> CustomerView:
    (loyalty,) = await uow.ledgers.loyalty(
        merchant_id_of(merchant), [customer_id_of(customer)], today=today_of(merchant, clock)
    )
    return CustomerView(
        customer=customer,
        summary=loyalty.summary,
        referral_link=referral_link(
            merchant.settings.referral_link_template,
            shop_url=merchant.settings.shop_url,
            code=customer.referral_code,
        ),
    )


def snapshots_of(merchant: Merchant, rows: list[CustomerLoyalty]) -> list[ContactSnapshot]:
    look = look_of(merchant)
    return [contact_snapshot(row, look) for row in rows]


def retried_on_conflict(
    use_case: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Run the use case again, from the start, when the database aborted its transaction for
    a conflict with a concurrent one (``TransientConflict``: a deadlock victim, a
    serialization failure), up to ``CONFLICT_ATTEMPTS`` runs in all; then the conflict goes
    up. Nothing of an aborted run was stored, so only use cases whose whole effect is one
    transaction (or a chunk of them, each retried alone) are wrapped; a unit of work passed
    in is entered afresh by each run."""

    @functools.wraps(use_case)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        attempt = 1
        while True:
            try:
                return await use_case(*args, **kwargs)
            except TransientConflict as conflict:
                if attempt >= CONFLICT_ATTEMPTS:
                    raise
                logger.info(
                    "%s: run %d of %d aborted (%s); running it again",
                    use_case.__name__,
                    attempt,
                    CONFLICT_ATTEMPTS,
                    conflict,
                )
                attempt += 1

    return run
