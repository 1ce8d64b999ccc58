"""A customer's marketing consent set by the e-shop, by staff or by Ecomail, on the fakes: the
history line, the contact's unsubscription and the newsletter reward taken back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ellity.domain.model.consent import ConsentChange, ConsentSource, MarketingConsent
from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import CustomerNotFound
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.ledger import EntryKind
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import RewardHold
from ellity.domain.services.common import load_customer, load_merchant
from ellity.domain.services.consent import record_consent
from ellity.domain.services.customer_consent import set_consent
from ellity.domain.services.customer_pages import create_customer, customer_detail
from ellity.domain.services.customers import CustomerInput, update_customer
from ellity.domain.services.integration import activate_ecomail, connect_ecomail
from ellity.domain.services.merchants import change_settings
from tests.fakes import FakeClock, FakeMarketingPlatforms, FakeRandom, FakeSecretBox, InMemoryStore
from tests.unit.conftest import NewCustomer, Upsert

GRANTED, REFUSED, UNKNOWN = (
    MarketingConsent.GRANTED,
    MarketingConsent.REFUSED,
    MarketingConsent.UNKNOWN,
)
API, STAFF, ECOMAIL = ConsentSource.API, ConsentSource.STAFF, ConsentSource.ECOMAIL
REWARD = Points.parse("50")
KEY = "ecomail-key-0001"
LIST = "1"


def ids(merchant: Merchant, customer: Customer) -> tuple[MerchantId, CustomerId]:
    assert merchant.id is not None and customer.id is not None
    return merchant.id, customer.id


def history(store: InMemoryStore, customer: Customer) -> list[tuple[object, ...]]:
    """The customer's consent history, oldest first: (previous, consent, source)."""
    return [
        (c.previous, c.consent, c.source)
        for c in store.state.consent_changes
        if c.customer_id == customer.id
    ]


def stored(store: InMemoryStore, customer: Customer) -> Customer:
    assert customer.id is not None
    return store.state.customers[customer.id]


def kinds(store: InMemoryStore, customer: Customer) -> list[EntryKind]:
    return [r.entry.kind for r in store.state.entries.values() if r.customer_id == customer.id]


@dataclass
class Shop:
    """Anna's shop with its Ecomail integration active (list 1), a newsletter reward of 50
    points taken back on unsubscribe."""

    merchant: Merchant
    store: InMemoryStore
    clock: FakeClock
    rng: FakeRandom

    async def hold_reward(self, customer: Customer) -> None:
        """The customer was paid the newsletter reward and holds it."""
        merchant_id, customer_id = ids(self.merchant, customer)
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            merchant = await load_merchant(uow, merchant_id)
            await load_customer(uow, merchant_id, customer_id, for_update=True)
            ledger = await uow.ledgers.get(
                merchant_id, customer_id, merchant.settings.expiry_policy
            )
            ledger.earn(REWARD, at=now, kind=EntryKind.NEWSLETTER_REWARD, note="Subscribed")
            await uow.ledgers.save(merchant_id, ledger, at=now)
            hold = RewardHold(outstanding=REWARD, paid_at=now)
            await uow.newsletter.save_reward_hold(merchant_id, customer_id, hold, at=now)
            await uow.commit()

    async def held(self, customer: Customer) -> RewardHold:
        merchant_id, customer_id = ids(self.merchant, customer)
        async with self.store.unit_of_work(read_only=True) as uow:
            return await uow.newsletter.reward_hold(merchant_id, customer_id)


@pytest.fixture
async def shop(merchant: Merchant, store: InMemoryStore, clock: FakeClock, rng: FakeRandom) -> Shop:
    assert merchant.id is not None
    platforms = FakeMarketingPlatforms(clock)
    platforms.add_account(KEY).add_list("Customers", list_id=LIST)
    services: dict[str, Any] = {
        "uow_factory": store.unit_of_work,
        "platforms": platforms,
        "secret_box": FakeSecretBox(),
        "clock": clock,
    }
    await connect_ecomail(merchant.id, KEY, **services)
    await activate_ecomail(merchant.id, LIST, **services)
    await change_settings(
        merchant.slug,
        {"newsletter_reward": "50", "newsletter_take_back": "true"},
        uow=store.unit_of_work(),
        clock=clock,
    )
    return Shop(merchant, store, clock, rng)


# -- the e-shop and staff creating and updating customers -------------------------------------


async def test_a_customer_created_with_a_consent_has_it_and_one_history_line_from_the_eshop(
    merchant: Merchant, upsert: Upsert, store: InMemoryStore, clock: FakeClock
) -> None:
    result = await upsert(merchant, email="ann@example.cz", marketing_consent=GRANTED)

    customer = result.view.customer
    assert result.created
    assert (customer.marketing_consent, customer.consent_source) == (GRANTED, API)
    assert customer.consent_changed_at == clock.now()
    assert (stored(store, customer).marketing_consent, stored(store, customer).consent_source) == (
        GRANTED,
        API,
    )
    assert history(store, customer) == [(UNKNOWN, GRANTED, API)]
    assert store.state.consent_changes[0].at == clock.now()


async def test_a_customer_created_without_a_consent_or_with_unknown_has_no_history(
    merchant: Merchant, new_customer: NewCustomer, store: InMemoryStore
) -> None:
    plain = await new_customer(merchant, email="ann@example.cz")
    unknown = await new_customer(merchant, email="bob@example.cz", marketing_consent=UNKNOWN)

    for customer in (plain, unknown):
        assert customer.marketing_consent is UNKNOWN
        assert customer.consent_source is None and customer.consent_changed_at is None
    assert store.state.consent_changes == []


async def test_the_eshop_changes_consent_on_update_and_the_same_consent_again_adds_nothing(
    merchant: Merchant, upsert: Upsert, store: InMemoryStore, clock: FakeClock
) -> None:
    customer = (await upsert(merchant, email="ann@example.cz")).view.customer
    clock.advance(days=1)
    granted_at = clock.now()

    updated = await upsert(merchant, email="ann@example.cz", marketing_consent=GRANTED)
    clock.advance(days=1)
    again = await upsert(merchant, email="ANN@example.cz", marketing_consent=GRANTED)
    untouched = await upsert(merchant, email="ann@example.cz", last_name="Nová")

    assert not updated.created
    assert history(store, customer) == [(UNKNOWN, GRANTED, API)]
    for result in (again, untouched):
        assert result.view.customer.marketing_consent is GRANTED
        assert result.view.customer.consent_changed_at == granted_at  # when it was given


async def test_a_consent_the_staff_form_sends_is_recorded_as_the_staffs(
    merchant: Merchant, store: InMemoryStore, clock: FakeClock, rng: FakeRandom
) -> None:
    assert merchant.id is not None
    created = await create_customer(
        merchant.id,
        CustomerInput(email="ann@example.cz", marketing_consent=GRANTED),
        uow_factory=store.unit_of_work,
        clock=clock,
        rng=rng,
    )
    customer = created.customer
    assert customer.id is not None
    edited = await update_customer(
        merchant.id,
        customer.id,
        CustomerInput(marketing_consent=REFUSED),
        uow=store.unit_of_work(),
        clock=clock,
        rng=rng,
    )

    assert (edited.customer.marketing_consent, edited.customer.consent_source) == (REFUSED, STAFF)
    assert history(store, customer) == [(UNKNOWN, GRANTED, STAFF), (GRANTED, REFUSED, STAFF)]


# -- a refusal reaching Ecomail and the newsletter reward -------------------------------------


async def test_a_refusal_from_the_eshop_makes_the_unsubscription_due_and_takes_the_reward_back(
    shop: Shop, upsert: Upsert
) -> None:
    customer = (await upsert(shop.merchant, email="ann@example.cz")).view.customer
    await shop.hold_reward(customer)
    assert customer.id is not None
    assert not shop.store.state.contacts[customer.id].unsubscribe_due

    await upsert(shop.merchant, email="ann@example.cz", marketing_consent=REFUSED)

    assert shop.store.state.contacts[customer.id].unsubscribe_due
    assert kinds(shop.store, customer) == [
        EntryKind.NEWSLETTER_REWARD,
        EntryKind.NEWSLETTER_DEDUCTION,
    ]
    assert not (await shop.held(customer)).held
    assert history(shop.store, customer) == [(UNKNOWN, REFUSED, API)]


async def test_a_customer_created_refused_has_the_unsubscription_due_at_once(
    shop: Shop, upsert: Upsert
) -> None:
    """Someone may be a list member before becoming a customer: their refusal reaches the
    list too."""
    result = await upsert(shop.merchant, email="ann@example.cz", marketing_consent=REFUSED)

    customer = result.view.customer
    assert customer.id is not None
    assert shop.store.state.contacts[customer.id].unsubscribe_due
    assert history(shop.store, customer) == [(UNKNOWN, REFUSED, API)]


async def test_a_refusal_without_an_active_integration_is_kept_in_the_history_only(
    merchant: Merchant, upsert: Upsert, store: InMemoryStore
) -> None:
    customer = (await upsert(merchant, email="ann@example.cz")).view.customer

    await upsert(merchant, email="ann@example.cz", marketing_consent=REFUSED)

    assert customer.id not in store.state.contacts
    assert history(store, customer) == [(UNKNOWN, REFUSED, API)]
    assert stored(store, customer).marketing_consent is REFUSED


async def test_a_grant_marks_the_contact_for_the_sync_and_takes_nothing_back(
    shop: Shop, upsert: Upsert
) -> None:
    customer = (await upsert(shop.merchant, email="ann@example.cz")).view.customer
    await shop.hold_reward(customer)
    assert customer.id is not None
    contact = shop.store.state.contacts[customer.id]
    contact.pending_since = None  # as if the sync had written it

    await upsert(shop.merchant, email="ann@example.cz", marketing_consent=GRANTED)

    contact = shop.store.state.contacts[customer.id]
    assert contact.pending_since == shop.clock.now() and not contact.unsubscribe_due
    assert kinds(shop.store, customer) == [EntryKind.NEWSLETTER_REWARD]
    assert (await shop.held(customer)).held


async def test_staff_refusing_consent_makes_the_unsubscription_due_and_takes_the_reward_back(
    shop: Shop, new_customer: NewCustomer
) -> None:
    customer = await new_customer(shop.merchant, email="ann@example.cz")
    await shop.hold_reward(customer)
    merchant_id, customer_id = ids(shop.merchant, customer)
    shop.clock.advance(hours=1)

    change = await set_consent(
        merchant_id, customer_id, REFUSED, uow=shop.store.unit_of_work(), clock=shop.clock
    )

    assert change == ConsentChange(
        merchant_id=merchant_id,
        customer_id=customer_id,
        consent=REFUSED,
        previous=UNKNOWN,
        source=STAFF,
        at=shop.clock.now(),
    )
    assert shop.store.state.contacts[customer_id].unsubscribe_due
    assert kinds(shop.store, customer) == [
        EntryKind.NEWSLETTER_REWARD,
        EntryKind.NEWSLETTER_DEDUCTION,
    ]
    assert stored(shop.store, customer).consent_source is STAFF


async def test_staff_setting_the_same_consent_again_records_nothing(
    shop: Shop, new_customer: NewCustomer
) -> None:
    customer = await new_customer(shop.merchant, email="ann@example.cz")
    merchant_id, customer_id = ids(shop.merchant, customer)
    first = await set_consent(
        merchant_id, customer_id, GRANTED, uow=shop.store.unit_of_work(), clock=shop.clock
    )
    shop.clock.advance(days=1)

    again = await set_consent(
        merchant_id, customer_id, GRANTED, uow=shop.store.unit_of_work(), clock=shop.clock
    )

    assert first is not None and again is None
    assert history(shop.store, customer) == [(UNKNOWN, GRANTED, STAFF)]
    assert stored(shop.store, customer).consent_changed_at == first.at


async def test_staff_cannot_set_another_merchants_customers_consent(
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    clock: FakeClock,
) -> None:
    bobs = await new_customer(other_merchant, email="bella@example.com")
    assert merchant.id is not None and bobs.id is not None

    with pytest.raises(CustomerNotFound):
        await set_consent(merchant.id, bobs.id, REFUSED, uow=store.unit_of_work(), clock=clock)

    assert store.state.consent_changes == []
    assert stored(store, bobs).marketing_consent is UNKNOWN


async def test_a_refusal_ecomail_reported_sends_nothing_back_and_leaves_the_reward_alone(
    shop: Shop, new_customer: NewCustomer
) -> None:
    """The notification's processing takes the reward back itself: the unsubscription
    happened in Ecomail already."""
    customer = await new_customer(shop.merchant, email="ann@example.cz")
    await shop.hold_reward(customer)
    merchant_id, customer_id = ids(shop.merchant, customer)

    async with shop.store.unit_of_work() as uow:
        merchant = await load_merchant(uow, merchant_id)
        locked = await load_customer(uow, merchant_id, customer_id, for_update=True)
        change = await record_consent(uow, merchant, locked, REFUSED, ECOMAIL, at=shop.clock.now())
        await uow.commit()

    assert change is not None and change.source is ECOMAIL
    assert not shop.store.state.contacts[customer_id].unsubscribe_due
    assert kinds(shop.store, customer) == [EntryKind.NEWSLETTER_REWARD]
    assert (await shop.held(customer)).held
    assert history(shop.store, customer) == [(UNKNOWN, REFUSED, ECOMAIL)]


# -- the customer page ------------------------------------------------------------------------


async def test_the_customer_page_shows_the_consent_history_newest_first(
    shop: Shop, upsert: Upsert
) -> None:
    customer = (
        await upsert(shop.merchant, email="ann@example.cz", marketing_consent=GRANTED)
    ).view.customer
    merchant_id, customer_id = ids(shop.merchant, customer)
    shop.clock.advance(days=2)
    await set_consent(
        merchant_id, customer_id, REFUSED, uow=shop.store.unit_of_work(), clock=shop.clock
    )

    detail = await customer_detail(
        merchant_id, customer_id, uow=shop.store.unit_of_work(read_only=True), clock=shop.clock
    )

    assert [(c.previous, c.consent, c.source) for c in detail.consent_changes] == [
        (GRANTED, REFUSED, STAFF),
        (UNKNOWN, GRANTED, API),
    ]
    assert detail.consent_changes[0].at == shop.clock.now()
    assert detail.view.customer.marketing_consent is REFUSED
