"""Customer use cases on the in-memory fakes: upserts, PINs, referrals, contact snapshots."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ellity.domain.model.contact import FIELD_NAMES
from ellity.domain.model.errors import (
    CustomerNotFound,
    DuplicateCustomer,
    InvalidInput,
    RegisteredCustomerHasNoPin,
)
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.model.referral import ALPHABET
from ellity.domain.services.customers import (
    CustomerInput,
    all_contact_snapshots,
    contact_snapshot,
    contact_snapshots,
    find_customer_by_email,
    get_customer,
    regenerate_pin,
    register_customer,
    update_customer,
    upsert_customer,
)
from ellity.domain.services.merchants import change_settings
from ellity.domain.services.points import earn_points, spend_points
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakeRandom, InMemoryStore
from tests.unit.conftest import NewCustomer, Upsert

P = Points.parse


async def test_a_new_email_creates_an_anonymous_customer_with_a_pin_and_a_referral_code(
    merchant: Merchant, upsert: Upsert, clock: FakeClock
) -> None:
    result = await upsert(
        merchant, email=" Ann@Example.cz ", first_name=" Anna ", last_name="Nováková"
    )
    customer = result.view.customer
    assert result.created
    assert (customer.email, customer.first_name, customer.last_name) == (
        "Ann@Example.cz",
        "Anna",
        "Nováková",
    )
    assert customer.registered is False
    assert customer.pin is not None and len(customer.pin) == 6 and customer.pin.isdigit()
    assert len(customer.referral_code) == 8 and set(customer.referral_code) <= set(ALPHABET)
    assert customer.created_at == customer.updated_at == clock.now()
    assert result.view.referral_link == f"https://anna.example.cz/?ref={customer.referral_code}"
    assert result.view.summary.balance == Points.zero()


async def test_a_customer_created_as_registered_has_no_pin(
    merchant: Merchant, new_customer: NewCustomer
) -> None:
    customer = await new_customer(merchant, email="ann@example.cz", registered=True)
    assert (customer.registered, customer.pin) == (True, None)


async def test_the_same_email_in_another_case_updates_the_existing_customer(
    merchant: Merchant,
    new_customer: NewCustomer,
    upsert: Upsert,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz", first_name="Ann")
    clock.advance(hours=1)
    result = await upsert(merchant, email="ANN@Example.CZ", last_name="Nováková")
    updated = result.view.customer
    assert not result.created
    assert updated.id == ann.id
    assert (updated.first_name, updated.last_name) == ("Ann", "Nováková")
    assert (updated.pin, updated.referral_code) == (ann.pin, ann.referral_code)
    assert updated.updated_at == clock.now() and updated.created_at == ann.created_at
    assert len(store.state.customers) == 1


async def test_the_shop_customer_id_finds_the_customer_whose_email_changed(
    merchant: Merchant, new_customer: NewCustomer, upsert: Upsert
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz", shop_customer_id="shop-7")
    result = await upsert(merchant, email="anna@new.example.cz", shop_customer_id=" shop-7 ")
    assert not result.created
    assert (result.view.customer.id, result.view.customer.email) == (ann.id, "anna@new.example.cz")


async def test_a_customer_may_be_created_with_a_shop_customer_id_alone(
    merchant: Merchant, new_customer: NewCustomer, upsert: Upsert
) -> None:
    anon = await new_customer(merchant, shop_customer_id="guest-1")
    assert anon.email is None
    again = await upsert(merchant, shop_customer_id="guest-1", first_name="Guest")
    assert not again.created and again.view.customer.id == anon.id


async def test_a_customer_found_by_email_gets_the_new_shop_customer_id(
    merchant: Merchant, new_customer: NewCustomer, upsert: Upsert
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    result = await upsert(merchant, email="ann@example.cz", shop_customer_id="shop-7")
    assert (result.view.customer.id, result.view.customer.shop_customer_id) == (ann.id, "shop-7")


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"first_name": "Ann"}, id="neither-email-nor-shop-id"),
        pytest.param({"email": "  ", "shop_customer_id": " "}, id="blank-identities"),
        pytest.param({"email": "not-an-email"}, id="bad-email"),
        pytest.param({"email": "ann@example.cz", "first_name": "x" * 101}, id="long-name"),
        pytest.param({"shop_customer_id": "x" * 101}, id="long-shop-id"),
    ],
)
async def test_a_customer_without_a_usable_identity_is_refused_and_nothing_is_stored(
    merchant: Merchant, upsert: Upsert, store: InMemoryStore, fields: dict[str, str]
) -> None:
    with pytest.raises(InvalidInput):
        await upsert(merchant, **fields)
    assert store.state.customers == {}


async def test_changing_an_email_to_another_customers_email_is_refused_whatever_its_case(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz")
    with pytest.raises(DuplicateCustomer, match="email"):
        await update_customer(
            merchant.id,
            bob.id,
            CustomerInput(email="ANN@example.cz"),
            uow=uow_factory(),
            clock=clock,
            rng=rng,
        )
    unchanged = await get_customer(
        merchant.id, bob.id, uow=uow_factory(read_only=True), clock=clock
    )
    assert unchanged.customer.email == "bob@example.cz"


async def test_an_upsert_that_would_give_one_customer_anothers_email_is_refused(
    merchant: Merchant, new_customer: NewCustomer, upsert: Upsert, store: InMemoryStore
) -> None:
    await new_customer(merchant, email="ann@example.cz", shop_customer_id="1")
    await new_customer(merchant, email="bob@example.cz", shop_customer_id="2")
    with pytest.raises(DuplicateCustomer, match="email"):
        await upsert(merchant, email="Ann@example.cz", shop_customer_id="2")
    assert sorted(c.email or "" for c in store.state.customers.values()) == [
        "ann@example.cz",
        "bob@example.cz",
    ]


async def test_a_shop_customer_id_taken_by_another_customer_is_refused(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    await new_customer(merchant, email="ann@example.cz", shop_customer_id="1")
    bob = await new_customer(merchant, email="bob@example.cz")
    with pytest.raises(DuplicateCustomer, match="shop customer id"):
        await update_customer(
            merchant.id,
            bob.id,
            CustomerInput(shop_customer_id="1"),
            uow=uow_factory(),
            clock=clock,
            rng=rng,
        )


async def test_registering_a_customer_drops_the_pin_for_good(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    view = await register_customer(merchant.id, ann.id, uow=uow_factory(), clock=clock)
    assert (view.customer.registered, view.customer.pin) == (True, None)
    again = await register_customer(merchant.id, ann.id, uow=uow_factory(), clock=clock)
    stored = await get_customer(merchant.id, ann.id, uow=uow_factory(read_only=True), clock=clock)
    assert again.customer == stored.customer
    assert (stored.customer.registered, stored.customer.pin) == (True, None)


async def test_regenerating_a_pin_stores_a_new_one(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    assert ann.pin is not None
    rng.queue(int(ann.pin), 4217)  # the old PIN is drawn first and must be drawn again
    view = await regenerate_pin(merchant.id, ann.id, uow=uow_factory(), clock=clock, rng=rng)
    stored = await get_customer(merchant.id, ann.id, uow=uow_factory(read_only=True), clock=clock)
    assert view.customer.pin == stored.customer.pin == "004217"


async def test_a_registered_customers_pin_cannot_be_regenerated(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz", registered=True)
    with pytest.raises(RegisteredCustomerHasNoPin):
        await regenerate_pin(merchant.id, ann.id, uow=uow_factory(), clock=clock, rng=rng)
    stored = await get_customer(merchant.id, ann.id, uow=uow_factory(read_only=True), clock=clock)
    assert stored.customer.pin is None


async def test_a_registered_customer_made_anonymous_again_gets_a_pin(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz", registered=True)
    view = await update_customer(
        merchant.id,
        ann.id,
        CustomerInput(registered=False),
        uow=uow_factory(),
        clock=clock,
        rng=rng,
    )
    assert view.customer.registered is False
    assert view.customer.pin is not None and len(view.customer.pin) == 6


async def test_customers_are_found_by_email_case_insensitively(
    clock: FakeClock,
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
) -> None:
    ann = await new_customer(merchant, email="Ann@Example.cz")
    found = await find_customer_by_email(
        merchant.id, " ann@EXAMPLE.cz ", uow=uow_factory(), clock=clock
    )
    assert found is not None and found.customer.id == ann.id
    assert (
        await find_customer_by_email(merchant.id, "bob@example.cz", uow=uow_factory(), clock=clock)
        is None
    )


async def test_an_unknown_customer_is_not_found(
    clock: FakeClock, merchant: Merchant, uow_factory: UnitOfWorkFactory
) -> None:
    with pytest.raises(CustomerNotFound):
        await get_customer(merchant.id, CustomerId(999), uow=uow_factory(), clock=clock)


async def test_a_customer_created_with_a_referral_code_records_the_referrer(
    merchant: Merchant,
    new_customer: NewCustomer,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(
        merchant, email="bob@example.cz", referred_by=f" {ann.referral_code.lower()} "
    )
    assert bob.referred_by_id == ann.id
    assert bob.referral_code != ann.referral_code


async def test_an_unknown_referral_code_is_refused_and_no_customer_is_created(
    merchant: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
) -> None:
    with pytest.raises(InvalidInput, match="referral code"):
        await new_customer(merchant, email="bob@example.cz", referred_by="ZZZZZZZZ")
    assert store.state.customers == {}


async def test_a_referral_code_already_taken_is_drawn_again(
    merchant: Merchant,
    new_customer: NewCustomer,
    rng: FakeRandom,
) -> None:
    rng.queue(*[0] * 8, 0)  # Ann gets "22222222" and a PIN of 000000
    ann = await new_customer(merchant, email="ann@example.cz")
    rng.queue(*[0] * 8, *[1] * 8)  # Bob draws Ann's code first
    bob = await new_customer(merchant, email="bob@example.cz")
    assert (ann.referral_code, bob.referral_code) == ("22222222", "33333333")


async def test_the_referrer_earns_the_bonus_once_on_the_referred_customers_first_purchase(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz", referred_by=ann.referral_code)
    before = await get_customer(merchant.id, ann.id, uow=uow_factory(), clock=clock)
    assert before.summary.balance == Points.zero()  # nothing for the sign-up itself
    for order in ("o-1", "o-2", "o-1"):
        await earn_points(
            merchant.id, bob.id, P("10"), order_ref=order, uow=uow_factory(), clock=clock
        )
    referrer = await get_customer(merchant.id, ann.id, uow=uow_factory(), clock=clock)
    assert referrer.summary.balance == P("50")
    bonus = await spend_points(merchant.id, ann.id, P("1"), uow=uow_factory(), clock=clock)
    assert bonus.view.summary.balance == P("49")


async def test_no_referral_bonus_is_paid_when_the_merchant_set_it_to_zero(
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    store: InMemoryStore,
) -> None:
    await change_settings("bob", {"referral_bonus": "0"}, clock=FakeClock(), uow=uow_factory())
    ann = await new_customer(other_merchant, email="ann@example.com")
    bob = await new_customer(other_merchant, email="bob@example.com", referred_by=ann.referral_code)
    await earn_points(
        other_merchant.id, bob.id, P("10"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    referrer = await get_customer(other_merchant.id, ann.id, uow=uow_factory(), clock=clock)
    assert referrer.summary.balance == Points.zero()
    assert [row.customer_id for row in store.state.entries.values()] == [bob.id]


async def test_a_contact_snapshot_holds_all_eleven_values(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    rng.queue(*[2] * 8, 4217)  # referral code 44444444, PIN 004217
    ann = await new_customer(merchant, email="ann@example.cz", first_name="Anna", last_name="N.")
    clock.set(clock.now().replace(year=2024, month=1, day=31, hour=10))
    await earn_points(
        merchant.id, ann.id, P("1000"), order_ref="o-1", uow=uow_factory(), clock=clock
    )
    await earn_points(
        merchant.id, ann.id, P("250.50"), order_ref="o-2", uow=uow_factory(), clock=clock
    )
    clock.advance(days=40)
    await earn_points(
        merchant.id, ann.id, P("120"), order_ref="o-3", uow=uow_factory(), clock=clock
    )
    await spend_points(merchant.id, ann.id, P("120"), uow=uow_factory(), clock=clock)

    snapshot = await contact_snapshot(
        merchant.id, ann.id, uow=uow_factory(read_only=True), clock=clock
    )

    assert (snapshot.customer_id, snapshot.email, snapshot.first_name, snapshot.last_name) == (
        ann.id,
        "ann@example.cz",
        "Anna",
        "N.",
    )
    assert snapshot.fields == {
        "ellity_credit": "1 250,50",
        "ellity_credit_num": 1250,
        "ellity_pin": "004217",
        "ellity_registered": "anonymous",
        "ellity_next_expiration_date": "2025-01-31",
        "ellity_next_expiration_value": "1 130,50",
        "ellity_next_expiration_value_num": 1130,
        "ellity_last_change_date": "2024-03-11",
        "ellity_last_change_value": "-120",
        "ellity_referral_code": "44444444",
        "ellity_referral_link": "https://anna.example.cz/?ref=44444444",
    }


async def test_contact_snapshots_of_many_customers_leave_out_unknown_ids(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz")
    bob = await new_customer(merchant, email="bob@example.cz", registered=True)
    await earn_points(
        merchant.id, bob.id, P("7.05"), order_ref="o-1", uow=uow_factory(), clock=clock
    )

    snapshots = await contact_snapshots(
        merchant.id, [bob.id, CustomerId(404), ann.id], uow=uow_factory(), clock=clock
    )

    by_id = {s.customer_id: s for s in snapshots}
    assert set(by_id) == {ann.id, bob.id}
    assert all(list(s.fields) == list(FIELD_NAMES) for s in snapshots)
    assert by_id[ann.id].fields["ellity_credit"] == "0"
    assert by_id[ann.id].fields["ellity_pin"] == ann.pin
    assert by_id[ann.id].fields["ellity_last_change_date"] == ""
    assert by_id[bob.id].fields["ellity_credit"] == "7,05"
    assert by_id[bob.id].fields["ellity_credit_num"] == 7
    assert by_id[bob.id].fields["ellity_pin"] == ""
    assert by_id[bob.id].fields["ellity_registered"] == "registered"
    assert by_id[bob.id].fields["ellity_last_change_date"] == "2024-03-10"
    assert by_id[bob.id].fields["ellity_last_change_value"] == "7,05"


async def test_a_snapshot_of_an_unknown_customer_is_not_found(
    clock: FakeClock,
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
) -> None:
    with pytest.raises(CustomerNotFound):
        await contact_snapshot(merchant.id, CustomerId(404), uow=uow_factory(), clock=clock)


async def test_all_snapshots_come_in_batches_in_id_order(
    clock: FakeClock,
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
) -> None:
    ids = [(await new_customer(merchant, email=f"c{n}@example.cz")).id for n in range(5)]
    await new_customer(other_merchant, email="other@example.com")

    batches = [
        [s.customer_id for s in batch]
        async for batch in all_contact_snapshots(
            merchant.id, uow_factory=uow_factory, batch_size=2, clock=clock
        )
    ]

    assert batches == [ids[0:2], ids[2:4], ids[4:5]]


async def test_a_customers_name_change_is_stored_with_the_time_of_the_change(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    ann = await new_customer(merchant, email="ann@example.cz", first_name="Ann")
    clock.advance(timedelta(days=2))
    await update_customer(
        merchant.id,
        ann.id,
        CustomerInput(first_name="Anna", last_name=""),
        uow=uow_factory(),
        clock=clock,
        rng=rng,
    )
    stored = await get_customer(merchant.id, ann.id, uow=uow_factory(), clock=clock)
    assert (stored.customer.first_name, stored.customer.last_name) == ("Anna", "")
    assert stored.customer.email == "ann@example.cz"
    assert stored.customer.updated_at == clock.now()


async def test_customer_changes_the_database_aborts_for_a_conflict_run_again_and_store_once(
    merchant: Merchant,
    store: InMemoryStore,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    store.conflicts = 2
    made = await upsert_customer(
        merchant.id, CustomerInput(email="ann@example.cz"), uow=uow_factory(), clock=clock, rng=rng
    )
    ann = made.view.customer.id
    assert ann is not None and made.created
    store.conflicts = 1
    await update_customer(
        merchant.id, ann, CustomerInput(first_name="Ann"), uow=uow_factory(), clock=clock, rng=rng
    )
    store.conflicts = 1
    old_pin = (
        await regenerate_pin(merchant.id, ann, uow=uow_factory(), clock=clock, rng=rng)
    ).customer.pin
    store.conflicts = 1
    view = await register_customer(merchant.id, ann, uow=uow_factory(), clock=clock)

    assert (view.customer.first_name, view.customer.registered, view.customer.pin) == (
        "Ann",
        True,
        None,
    )
    assert old_pin is not None
    assert len(store.state.customers) == 1 and store.conflicts == 0
