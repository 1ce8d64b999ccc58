"""Fixtures for the service tests: the in-memory fakes and two merchants on one store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from ellity.domain.model.customer import Customer
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services.customers import CustomerInput, UpsertResult, upsert_customer
from ellity.domain.services.merchants import create_merchant
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakePasswordHasher, FakeRandom, InMemoryStore

Upsert = Callable[..., Awaitable[UpsertResult]]
NewCustomer = Callable[..., Awaitable[Customer]]


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def uow_factory(store: InMemoryStore) -> UnitOfWorkFactory:
    return store.unit_of_work


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()  # 2024-03-10 09:00 UTC


@pytest.fixture
def rng() -> FakeRandom:
    return FakeRandom(seed=20240310)


@pytest.fixture
def hasher() -> FakePasswordHasher:
    return FakePasswordHasher()


@pytest.fixture
async def merchant(
    uow_factory: UnitOfWorkFactory, clock: FakeClock, hasher: FakePasswordHasher
) -> Merchant:
    """Anna's shop: Czech locale, Prague time, 12 months validity, 50 points per referral."""
    return await create_merchant(
        slug="anna",
        settings=MerchantSettings(
            name="Kavárna U Anny",
            shop_url="https://anna.example.cz",
            referral_bonus=Points.parse("50"),
        ),
        admin_email="admin@anna.example.cz",
        admin_password="correct horse battery",
        uow=uow_factory(),
        clock=clock,
        hasher=hasher,
    )


@pytest.fixture
async def other_merchant(
    uow_factory: UnitOfWorkFactory, clock: FakeClock, hasher: FakePasswordHasher
) -> Merchant:
    """Bob's shop, on the same store as Anna's."""
    return await create_merchant(
        slug="bob",
        settings=MerchantSettings(
            name="Bob's Books",
            shop_url="https://bob.example.com",
            locale="en",
            referral_bonus=Points.parse("10"),
        ),
        admin_email="admin@bob.example.com",
        admin_password="correct horse battery",
        uow=uow_factory(),
        clock=clock,
        hasher=hasher,
    )


@pytest.fixture
def upsert(uow_factory: UnitOfWorkFactory, clock: FakeClock, rng: FakeRandom) -> Upsert:
    """``await upsert(merchant, email=..., ...)``: ``upsert_customer`` with the fakes."""

    async def call(merchant: Merchant, **fields: object) -> UpsertResult:
        if merchant.id is None:
            raise ValueError("the merchant has not been stored")
        data = CustomerInput(**fields)  # type: ignore[arg-type]
        return await upsert_customer(merchant.id, data, uow=uow_factory(), clock=clock, rng=rng)

    return call


@pytest.fixture
def new_customer(upsert: Upsert) -> NewCustomer:
    """``await new_customer(merchant, email=..., ...)``: the customer ``upsert`` made."""

    async def create(merchant: Merchant, **fields: object) -> Customer:
        return (await upsert(merchant, **fields)).view.customer

    return create
