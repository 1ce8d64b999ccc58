"""Creating a customer by hand: refused, never merged, when the email or shop id is taken."""

from __future__ import annotations

import pytest

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.contact_state import JOINING, ContactState, Presence
from ellity.domain.model.errors import DuplicateCustomer, InvalidInput
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.outbox import Payload, Topic
from ellity.domain.services import customer_pages
from ellity.domain.services.customer_pages import create_customer
from ellity.domain.services.customers import CustomerInput, get_customer
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakeRandom, InMemoryStore
from tests.unit.conftest import NewCustomer


async def test_a_customer_created_by_hand_is_stored_with_a_pin(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock, rng: FakeRandom
) -> None:
    view = await create_customer(
        merchant.id,
        CustomerInput(email="ann@example.cz", first_name="Ann"),
        uow_factory=uow_factory,
        clock=clock,
        rng=rng,
    )
    assert view.customer.id is not None
    stored = await get_customer(merchant.id, view.customer.id, uow=uow_factory(), clock=clock)
    assert stored.customer.first_name == "Ann" and stored.customer.pin is not None


@pytest.mark.parametrize(
    "data",
    [
        CustomerInput(email="ANN@example.cz", first_name="Other"),
        CustomerInput(shop_customer_id="s-1", first_name="Other"),
    ],
)
async def test_an_email_or_shop_id_in_use_is_refused_and_the_existing_customer_is_unchanged(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
    data: CustomerInput,
) -> None:
    ann = await new_customer(
        merchant, email="ann@example.cz", shop_customer_id="s-1", first_name="Ann"
    )
    with pytest.raises(DuplicateCustomer):
        await create_customer(merchant.id, data, uow_factory=uow_factory, clock=clock, rng=rng)
    assert (
        await get_customer(merchant.id, ann.id, uow=uow_factory(), clock=clock)
    ).customer.first_name == "Ann"


async def test_a_customer_needs_an_email_or_a_shop_id(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock, rng: FakeRandom
) -> None:
    with pytest.raises(InvalidInput):
        await create_customer(
            merchant.id,
            CustomerInput(first_name="Nobody"),
            uow_factory=uow_factory,
            clock=clock,
            rng=rng,
        )


async def test_creating_a_customer_the_database_aborts_for_a_conflict_runs_again_and_stores_one(
    merchant: Merchant,
    store: InMemoryStore,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    store.conflicts = 2
    view = await create_customer(
        merchant.id,
        CustomerInput(email="ann@example.cz"),
        uow_factory=uow_factory,
        clock=clock,
        rng=rng,
    )
    assert view.customer.id is not None
    assert [c.email for c in store.state.customers.values()] == ["ann@example.cz"]


async def test_the_search_page_counts_what_it_finds_and_pages_back_to_the_first_page(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(customer_pages, "COUNT_UP_TO", 4)
    for n in range(6):
        await new_customer(merchant, email=f"c{n}@example.cz", last_name=f"Novák{n}")

    async def page(**cursor: CustomerId | None) -> customer_pages.CustomerPage:
        return await customer_pages.search_customers(
            merchant.id, "novak", uow=uow_factory(read_only=True), clock=clock, limit=2, **cursor
        )

    first = await page()
    assert (first.found, first.found_more_than, first.previous_before) == (5, 4, None)
    assert first.next_after is not None
    second = await page(after_id=first.next_after)
    assert second.previous_before == second.customers[0].customer_id
    back = await page(before_id=second.previous_before)
    assert [c.customer_id for c in back.customers] == [c.customer_id for c in first.customers]
    assert back.previous_before is None  # the first page again
    third = await page(after_id=second.next_after)
    near_start = await page(before_id=third.customers[0].customer_id)
    assert near_start.customers == second.customers
    assert near_start.previous_before == second.customers[0].customer_id

    three = await customer_pages.search_customers(
        merchant.id, "novak1", uow=uow_factory(read_only=True), clock=clock
    )
    assert (three.found, three.found_more_than) == (1, None)


async def test_the_customer_detail_tells_the_ecomail_sync_state_while_the_integration_is_active(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock, new_customer: NewCustomer
) -> None:
    ann = await new_customer(
        merchant, email="ann@example.cz", marketing_consent=MarketingConsent.GRANTED
    )
    assert ann.id is not None

    async def detail() -> customer_pages.CustomerDetail:
        return await customer_pages.customer_detail(
            merchant.id, ann.id, uow=uow_factory(read_only=True), clock=clock
        )

    assert (await detail()).ecomail is None  # not connected: nothing to tell
    async with uow_factory() as uow:
        await uow.ecomail.save_key(merchant.id, encrypted="sealed", hint="1234", at=clock.now())
        await uow.ecomail.activate(merchant.id, list_id="7", list_name="List", at=clock.now())
        await uow.contacts.mark_changed(merchant.id, [ann.id], at=clock.now())
        payload: Payload = {"label": "pin", "value": {"reason": "created"}}
        await uow.outbox.add(
            merchant.id, Topic.ECOMAIL_EVENT.value, payload, customer_id=ann.id, at=clock.now()
        )
        await uow.commit()

    sync = (await detail()).ecomail

    assert sync is not None
    assert sync.state == ContactState(Presence.JOINING, JOINING)  # consent given, add pending
    assert sync.row is not None and sync.row.pending_since == clock.now()
    assert [(e.label, e.value) for e in sync.events] == [("pin", {"reason": "created"})]
