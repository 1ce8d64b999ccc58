"""Customers in SQL, scoped by merchant. The summary columns of a customer row (balance, next
expiration, last change) are the ledger's to write.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.customers import consent_changes, customers
from ellity.adapters.sql.unique import unique_violations
from ellity.domain.model.consent import ConsentChange, ConsentSource, MarketingConsent
from ellity.domain.model.customer import Customer, email_domain_key, email_key, name_key
from ellity.domain.model.ids import CustomerId, MerchantId, optional_customer_id
from ellity.ports.storage.customers import CustomerRepository

_IDENTITY = (
    customers.c.id,
    customers.c.merchant_id,
    customers.c.email,
    customers.c.first_name,
    customers.c.last_name,
    customers.c.shop_customer_id,
    customers.c.registered,
    customers.c.pin,
    customers.c.referral_code,
    customers.c.referred_by_id,
    customers.c.created_at,
    customers.c.updated_at,
    customers.c.marketing_consent,
    customers.c.consent_source,
    customers.c.consent_changed_at,
)


def _customer(row: Any) -> Customer:
    return Customer(
        id=CustomerId(row.id),
        merchant_id=MerchantId(row.merchant_id),
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        shop_customer_id=row.shop_customer_id,
        registered=row.registered,
        pin=row.pin,
        referral_code=row.referral_code,
        referred_by_id=optional_customer_id(row.referred_by_id),
        created_at=row.created_at,
        updated_at=row.updated_at,
        marketing_consent=MarketingConsent(row.marketing_consent),
        consent_source=None if row.consent_source is None else ConsentSource(row.consent_source),
        consent_changed_at=row.consent_changed_at,
    )


def _identity_columns(customer: Customer) -> dict[str, Any]:
    return {
        "email": customer.email,
        "email_key": customer.email_key,
        "email_domain_key": email_domain_key(customer.email),
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "first_name_key": name_key(customer.first_name),
        "last_name_key": name_key(customer.last_name),
        "shop_customer_id": customer.shop_customer_id,
        "registered": customer.registered,
        "pin": customer.pin,
        "updated_at": customer.updated_at,
        "marketing_consent": customer.marketing_consent.value,
        "consent_source": None
        if customer.consent_source is None
        else customer.consent_source.value,
        "consent_changed_at": customer.consent_changed_at,
    }


class SqlCustomerRepository(CustomerRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, customer: Customer) -> Customer:
        async with unique_violations():
            result = await self.conn.execute(
                customers.insert()
                .values(
                    merchant_id=customer.merchant_id,
                    referral_code=customer.referral_code,
                    referred_by_id=customer.referred_by_id,
                    created_at=customer.created_at,
                    **_identity_columns(customer),
                )
                .returning(customers.c.id)
            )
        customer.id = CustomerId(result.scalar_one())
        return customer

    async def get(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, for_update: bool = False
    ) -> Customer | None:
        query = sa.select(*_IDENTITY).where(
            customers.c.merchant_id == merchant_id, customers.c.id == customer_id
        )
        if for_update:
            query = query.with_for_update()
        return await self._first(query)

    async def find_by_email(self, merchant_id: MerchantId, email: str) -> Customer | None:
        return await self._first(
            sa.select(*_IDENTITY).where(
                customers.c.merchant_id == merchant_id, customers.c.email_key == email_key(email)
            )
        )

    async def find_by_shop_customer_id(
        self, merchant_id: MerchantId, shop_customer_id: str
    ) -> Customer | None:
        return await self._first(
            sa.select(*_IDENTITY).where(
                customers.c.merchant_id == merchant_id,
                customers.c.shop_customer_id == shop_customer_id,
            )
        )

    async def find_by_referral_code(self, merchant_id: MerchantId, code: str) -> Customer | None:
        return await self._first(
            sa.select(*_IDENTITY).where(
                customers.c.merchant_id == merchant_id, customers.c.referral_code == code
            )
        )

    async def update(self, customer: Customer) -> None:
        async with unique_violations():
            await self.conn.execute(
                customers.update()
                .where(
                    customers.c.merchant_id == customer.merchant_id,
                    customers.c.id == customer.id,
                )
                .values(**_identity_columns(customer))
            )

    async def record_consent_change(self, change: ConsentChange) -> None:
        await self.conn.execute(
            consent_changes.insert().values(
                merchant_id=change.merchant_id,
                customer_id=change.customer_id,
                consent=change.consent.value,
                previous=change.previous.value,
                source=change.source.value,
                at=change.at,
            )
        )

    async def consent_history(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int = 100
    ) -> list[ConsentChange]:
        c = consent_changes.c
        rows = await self.conn.execute(
            sa.select(c.consent, c.previous, c.source, c.at)
            .where(c.customer_id == customer_id, c.merchant_id == merchant_id)
            .order_by(c.id.desc())
            .limit(limit)
        )
        return [
            ConsentChange(
                merchant_id=merchant_id,
                customer_id=customer_id,
                consent=MarketingConsent(row.consent),
                previous=MarketingConsent(row.previous),
                source=ConsentSource(row.source),
                at=row.at,
            )
            for row in rows
        ]

    async def count(self, merchant_id: MerchantId) -> int:
        result = await self.conn.execute(
            sa.select(sa.func.count())
            .select_from(customers)
            .where(customers.c.merchant_id == merchant_id)
        )
        return int(result.scalar_one())

    async def chunk_end(
        self, merchant_id: MerchantId, *, after_id: CustomerId, size: int
    ) -> CustomerId | None:
        chunk = (
            sa.select(customers.c.id)
            .where(customers.c.merchant_id == merchant_id, customers.c.id > after_id)
            .order_by(customers.c.id)
            .limit(size)
            .subquery()
        )
        result = await self.conn.execute(sa.select(sa.func.max(chunk.c.id)))
        last = result.scalar_one_or_none()
        return None if last is None else CustomerId(last)

    async def _first(self, query: sa.Select[Any]) -> Customer | None:
        row = (await self.conn.execute(query)).first()
        return None if row is None else _customer(row)
