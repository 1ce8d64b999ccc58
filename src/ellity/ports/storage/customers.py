"""Customers, scoped by merchant."""

from __future__ import annotations

from typing import Protocol

from ellity.domain.model.consent import ConsentChange
from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import CustomerId, MerchantId


class CustomerRepository(Protocol):
    async def add(self, customer: Customer) -> Customer:
        """Store and give an id; raises ``UniqueViolation`` for email, shop id or referral code."""
        ...

    async def get(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, for_update: bool = False
    ) -> Customer | None:
        """With ``for_update`` the customer is locked until the transaction ends."""
        ...

    async def find_by_email(self, merchant_id: MerchantId, email: str) -> Customer | None:
        """Case-insensitive."""
        ...

    async def find_by_shop_customer_id(
        self, merchant_id: MerchantId, shop_customer_id: str
    ) -> Customer | None: ...

    async def find_by_referral_code(
        self, merchant_id: MerchantId, code: str
    ) -> Customer | None: ...

    async def update(self, customer: Customer) -> None:
        """Write back identity fields; raises ``UniqueViolation`` like ``add``."""
        ...

    async def record_consent_change(self, change: ConsentChange) -> None:
        """Add a line to the customer's consent history (in the change's transaction)."""
        ...

    async def consent_history(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int = 100
    ) -> list[ConsentChange]:
        """The customer's consent changes, newest first."""
        ...

    async def count(self, merchant_id: MerchantId) -> int:
        """How many customers the merchant has."""
        ...

    async def chunk_end(
        self, merchant_id: MerchantId, *, after_id: CustomerId, size: int
    ) -> CustomerId | None:
        """The id that ends the next chunk of ``size`` customers after ``after_id`` (id
        order): the size-th one, or the last one when fewer are left; None when none is."""
        ...
