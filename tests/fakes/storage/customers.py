"""Customers in memory, scoped by merchant."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from ellity.domain.model.consent import ConsentChange
from ellity.domain.model.customer import Customer, email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.ports.storage import CustomerRepository, UniqueViolation
from tests.fakes.storage.state import round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


class InMemoryCustomerRepository(CustomerRepository):
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, customer: Customer) -> Customer:
        await round_trip()
        state = self._uow.state
        if customer.merchant_id not in state.merchants:
            raise LookupError(f"no merchant {customer.merchant_id}")
        self._check_unique(customer, ignore_id=None)
        customer_id = CustomerId(state.next_id("customers"))
        customer.id = customer_id  # like the SQL adapter: the id is set in place
        state.customers[customer_id] = copy.deepcopy(customer)
        return customer

    async def get(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, for_update: bool = False
    ) -> Customer | None:
        # for_update needs nothing more: writers are serialized by the store's lock.
        await round_trip()
        return copy.deepcopy(self._own(merchant_id, customer_id))

    async def find_by_email(self, merchant_id: MerchantId, email: str) -> Customer | None:
        await round_trip()
        key = email_key(email)
        return self._first(merchant_id, lambda c: c.email is not None and c.email_key == key)

    async def find_by_shop_customer_id(
        self, merchant_id: MerchantId, shop_customer_id: str
    ) -> Customer | None:
        await round_trip()
        return self._first(merchant_id, lambda c: c.shop_customer_id == shop_customer_id)

    async def find_by_referral_code(self, merchant_id: MerchantId, code: str) -> Customer | None:
        await round_trip()
        return self._first(merchant_id, lambda c: c.referral_code == code)

    async def record_consent_change(self, change: ConsentChange) -> None:
        await round_trip()
        if self._own(change.merchant_id, change.customer_id) is None:
            raise LookupError(f"no customer {change.customer_id}")
        self._uow.state.consent_changes.append(change)

    async def consent_history(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int = 100
    ) -> list[ConsentChange]:
        await round_trip()
        mine = [
            c
            for c in self._uow.state.consent_changes
            if c.merchant_id == merchant_id and c.customer_id == customer_id
        ]
        return mine[::-1][:limit]

    async def update(self, customer: Customer) -> None:
        await round_trip()
        if customer.id is None:
            raise ValueError("update needs a stored customer")
        stored = self._own(customer.merchant_id, customer.id)
        if stored is None:
            raise LookupError(f"no customer {customer.id} of merchant {customer.merchant_id}")
        written = dataclasses.replace(  # the identity fields, as the SQL adapter writes them
            stored,
            email=customer.email,
            first_name=customer.first_name,
            last_name=customer.last_name,
            shop_customer_id=customer.shop_customer_id,
            registered=customer.registered,
            pin=customer.pin,
            updated_at=customer.updated_at,
            marketing_consent=customer.marketing_consent,
            consent_source=customer.consent_source,
            consent_changed_at=customer.consent_changed_at,
        )
        self._check_unique(written, ignore_id=customer.id)
        self._uow.state.customers[customer.id] = written

    async def count(self, merchant_id: MerchantId) -> int:
        await round_trip()
        return sum(1 for c in self._uow.state.customers.values() if c.merchant_id == merchant_id)

    async def chunk_end(
        self, merchant_id: MerchantId, *, after_id: CustomerId, size: int
    ) -> CustomerId | None:
        await round_trip()
        chunk = sorted(
            customer_id
            for customer_id, c in self._uow.state.customers.items()
            if c.merchant_id == merchant_id and customer_id > after_id
        )[:size]
        return chunk[-1] if chunk else None

    def _own(self, merchant_id: MerchantId, customer_id: CustomerId) -> Customer | None:
        customer = self._uow.state.customers.get(customer_id)
        return customer if customer is not None and customer.merchant_id == merchant_id else None

    def _first(
        self, merchant_id: MerchantId, matches: Callable[[Customer], bool]
    ) -> Customer | None:
        for customer in self._uow.state.customers.values():
            if customer.merchant_id == merchant_id and matches(customer):
                return copy.deepcopy(customer)
        return None

    def _check_unique(self, customer: Customer, *, ignore_id: int | None) -> None:
        others = [
            c
            for c in self._uow.state.customers.values()
            if c.merchant_id == customer.merchant_id and c.id != ignore_id
        ]
        if customer.email is not None and any(c.email_key == customer.email_key for c in others):
            raise UniqueViolation("email")
        if customer.shop_customer_id is not None and any(
            c.shop_customer_id == customer.shop_customer_id for c in others
        ):
            raise UniqueViolation("shop_customer_id")
        if any(c.referral_code == customer.referral_code for c in others):
            raise UniqueViolation("referral_code")
