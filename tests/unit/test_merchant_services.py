"""Merchant use cases, and the wall between merchants that every use case keeps."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import (
    CustomerNotFound,
    DuplicateMerchant,
    InvalidInput,
    MerchantNotFound,
)
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import customers, points
from ellity.domain.services.merchants import change_settings, create_merchant, merchant_by_slug
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakePasswordHasher, FakeRandom, InMemoryStore
from tests.unit.conftest import NewCustomer, Upsert

P = Points.parse
SETTINGS = MerchantSettings(name="Cukrárna", shop_url="https://cukrarna.example.cz")


async def create(
    uow_factory: UnitOfWorkFactory, clock: FakeClock, hasher: FakePasswordHasher, **overrides: str
) -> Merchant:
    fields = {
        "slug": "cukrarna",
        "admin_email": "admin@cukrarna.example.cz",
        "admin_password": "a long password",
    }
    fields.update(overrides)
    return await create_merchant(
        settings=SETTINGS, uow=uow_factory(), clock=clock, hasher=hasher, **fields
    )


# -- merchants -------------------------------------------------------------------------------


async def test_a_merchant_is_created_with_its_first_admin(
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    hasher: FakePasswordHasher,
    store: InMemoryStore,
) -> None:
    merchant = await create(
        uow_factory, clock, hasher, slug=" cukrarna ", admin_email=" Admin@Cukrarna.example.cz "
    )
    assert merchant.id is not None
    assert (merchant.slug, merchant.settings) == ("cukrarna", SETTINGS)
    assert await merchant_by_slug("cukrarna", uow=uow_factory(read_only=True)) == merchant
    (admin,) = store.state.staff.values()
    assert (admin.merchant_id, admin.email, admin.created_at) == (
        merchant.id,
        "Admin@Cukrarna.example.cz",
        clock.now(),
    )
    assert hasher.verify(admin.password_hash, "a long password")
    assert admin.password_hash != "a long password"


async def test_a_taken_slug_is_refused(
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    hasher: FakePasswordHasher,
    store: InMemoryStore,
) -> None:
    await create(uow_factory, clock, hasher)
    with pytest.raises(DuplicateMerchant, match="slug"):
        await create(uow_factory, clock, hasher, admin_email="other@example.cz")
    assert (len(store.state.merchants), len(store.state.staff)) == (1, 1)


async def test_a_taken_admin_email_is_refused_and_no_merchant_is_left_without_an_admin(
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    hasher: FakePasswordHasher,
    store: InMemoryStore,
) -> None:
    await create(uow_factory, clock, hasher)
    with pytest.raises(DuplicateMerchant, match="email"):
        await create(
            uow_factory, clock, hasher, slug="second", admin_email="ADMIN@cukrarna.example.cz"
        )
    assert [m.slug for m in store.state.merchants.values()] == ["cukrarna"]
    with pytest.raises(MerchantNotFound):
        await merchant_by_slug("second", uow=uow_factory(read_only=True))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"slug": "Not A Slug"}, id="bad-slug"),
        pytest.param({"admin_email": ""}, id="no-admin-email"),
        pytest.param({"admin_email": "admin"}, id="bad-admin-email"),
        pytest.param({"admin_password": "short"}, id="short-password"),
        pytest.param({"admin_password": "x" * 1025}, id="overlong-password"),
    ],
)
async def test_a_merchant_with_bad_input_is_refused_and_nothing_is_stored(
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    hasher: FakePasswordHasher,
    store: InMemoryStore,
    overrides: dict[str, str],
) -> None:
    with pytest.raises(InvalidInput):
        await create(uow_factory, clock, hasher, **overrides)
    assert store.state.merchants == {} and store.state.staff == {}


async def test_an_unknown_slug_is_not_found(uow_factory: UnitOfWorkFactory) -> None:
    with pytest.raises(MerchantNotFound):
        await merchant_by_slug("nobody", uow=uow_factory())


async def test_settings_changes_are_validated_and_stored(
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
) -> None:
    changed = await change_settings(
        "anna",
        {"referral_bonus": "12.50", "locale": "en", "validity_months": "6"},
        clock=FakeClock(),
        uow=uow_factory(),
    )
    stored = await merchant_by_slug("anna", uow=uow_factory(read_only=True))
    assert stored.settings == changed.settings
    assert (
        stored.settings.referral_bonus,
        stored.settings.locale,
        stored.settings.validity_months,
    ) == (
        P("12.50"),
        "en",
        6,
    )
    assert stored.settings.shop_url == merchant.settings.shop_url


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"locale": "en", "timezone": "Nowhere/Town"}, id="one-bad-value-among-good"),
        pytest.param({"colour": "red"}, id="unknown-key"),
        pytest.param({"referral_bonus": "-1"}, id="negative-bonus"),
    ],
)
async def test_a_bad_settings_change_stores_nothing(
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    changes: dict[str, str],
) -> None:
    with pytest.raises(InvalidInput):
        await change_settings("anna", changes, clock=FakeClock(), uow=uow_factory())
    stored = await merchant_by_slug("anna", uow=uow_factory())
    assert stored.settings == merchant.settings


async def test_changing_settings_of_an_unknown_merchant_is_refused(
    uow_factory: UnitOfWorkFactory,
) -> None:
    with pytest.raises(MerchantNotFound):
        await change_settings("nobody", {"locale": "en"}, clock=FakeClock(), uow=uow_factory())


# -- tenant isolation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Intruder:
    """Merchant B calling the use cases with the id of merchant A's customer."""

    merchant_id: MerchantId
    customer_id: CustomerId
    uow: UnitOfWorkFactory
    clock: FakeClock
    rng: FakeRandom


CROSS_TENANT_CALLS: dict[str, Callable[[Intruder], Awaitable[object]]] = {
    "get_customer": lambda b: customers.get_customer(
        b.merchant_id, b.customer_id, uow=b.uow(), clock=b.clock
    ),
    "update_customer": lambda b: customers.update_customer(
        b.merchant_id,
        b.customer_id,
        customers.CustomerInput(first_name="Mallory"),
        uow=b.uow(),
        clock=b.clock,
        rng=b.rng,
    ),
    "register_customer": lambda b: customers.register_customer(
        b.merchant_id, b.customer_id, uow=b.uow(), clock=b.clock
    ),
    "regenerate_pin": lambda b: customers.regenerate_pin(
        b.merchant_id, b.customer_id, uow=b.uow(), clock=b.clock, rng=b.rng
    ),
    "contact_snapshot": lambda b: customers.contact_snapshot(
        b.merchant_id, b.customer_id, uow=b.uow(), clock=b.clock
    ),
    "earn_points": lambda b: points.earn_points(
        b.merchant_id, b.customer_id, P("10"), order_ref="o-new", uow=b.uow(), clock=b.clock
    ),
    "spend_points": lambda b: points.spend_points(
        b.merchant_id, b.customer_id, P("1"), uow=b.uow(), clock=b.clock
    ),
    "adjust_points_up": lambda b: points.adjust_points(
        b.merchant_id, b.customer_id, P("5"), note="x", uow=b.uow(), clock=b.clock
    ),
    "adjust_points_down": lambda b: points.adjust_points(
        b.merchant_id, b.customer_id, P("-5"), note="x", uow=b.uow(), clock=b.clock
    ),
    "ledger_entries": lambda b: points.ledger_entries(b.merchant_id, b.customer_id, uow=b.uow()),
}


@pytest.fixture
async def ann(
    merchant: Merchant, new_customer: NewCustomer, uow_factory: UnitOfWorkFactory, clock: FakeClock
) -> Customer:
    """Merchant A's customer, holding 100 points earned for order o-1."""
    customer = await new_customer(merchant, email="ann@example.cz", shop_customer_id="s-1")
    await points.earn_points(
        merchant.id, customer.id, P("100"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    return customer


@pytest.fixture
def intruder(
    ann: Customer,
    other_merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> Intruder:
    if ann.id is None or other_merchant.id is None:
        raise ValueError("not stored")
    return Intruder(other_merchant.id, ann.id, uow_factory, clock, rng)


@pytest.mark.parametrize("call", CROSS_TENANT_CALLS.values(), ids=CROSS_TENANT_CALLS.keys())
async def test_another_merchants_customer_is_not_found_and_left_untouched(
    intruder: Intruder, store: InMemoryStore, call: Callable[[Intruder], Awaitable[object]]
) -> None:
    before = copy.deepcopy(store.state)
    with pytest.raises(CustomerNotFound):
        await call(intruder)
    assert store.state == before


async def test_another_merchants_customers_are_left_out_of_snapshots_and_searches(
    clock: FakeClock,
    ann: Customer,
    other_merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
) -> None:
    assert (
        await customers.contact_snapshots(
            other_merchant.id, [ann.id], uow=uow_factory(), clock=clock
        )
        == []
    )
    assert (
        await customers.find_customer_by_email(
            other_merchant.id, "ann@example.cz", uow=uow_factory(), clock=clock
        )
        is None
    )
    batches = customers.all_contact_snapshots(
        other_merchant.id, uow_factory=uow_factory, clock=clock
    )
    assert [batch async for batch in batches] == []


async def test_an_upsert_with_the_same_email_creates_the_other_merchants_own_customer(
    clock: FakeClock,
    ann: Customer,
    other_merchant: Merchant,
    upsert: Upsert,
    uow_factory: UnitOfWorkFactory,
) -> None:
    result = await upsert(
        other_merchant, email="ANN@example.cz", shop_customer_id="s-1", first_name="Other Ann"
    )
    assert result.created
    assert result.view.customer.id != ann.id
    assert result.view.customer.merchant_id == other_merchant.id
    assert result.view.summary.balance == Points.zero()
    original = await customers.get_customer(ann.merchant_id, ann.id, uow=uow_factory(), clock=clock)
    assert (original.customer.first_name, original.customer.email) == ("", "ann@example.cz")
    assert original.summary.balance == P("100")


async def test_a_referral_code_of_another_merchants_customer_is_unknown(
    ann: Customer,
    other_merchant: Merchant,
    new_customer: NewCustomer,
) -> None:
    with pytest.raises(InvalidInput, match="referral code"):
        await new_customer(other_merchant, email="bob@example.com", referred_by=ann.referral_code)


async def test_an_expiry_run_for_one_merchant_leaves_another_merchants_points(
    ann: Customer,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    bob = await new_customer(other_merchant, email="bob@example.com")
    await points.earn_points(
        other_merchant.id, bob.id, P("7"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    clock.advance(days=800)  # both customers' points are long past their last day

    assert (
        await points.expire_due_points(other_merchant.id, uow_factory=uow_factory, clock=clock) == 1
    )

    # Anna's points count for nothing any more, but no entry of the other run expired them.
    untouched = await customers.get_customer(
        ann.merchant_id, ann.id, uow=uow_factory(), clock=clock
    )
    assert untouched.summary.balance == Points.zero()
    assert len(await points.ledger_entries(ann.merchant_id, ann.id, uow=uow_factory())) == 1
    assert (
        await points.expire_due_points(ann.merchant_id, uow_factory=uow_factory, clock=clock) == 1
    )
    expired = await customers.get_customer(
        other_merchant.id, bob.id, uow=uow_factory(), clock=clock
    )
    assert expired.summary.balance == Points.zero()
