"""Connecting a merchant to Ecomail, activating the integration, and what the use cases record
for Ecomail while it is active, on the in-memory fakes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from ellity.domain.model.consent import ConsentCounts, EcomailAdd, MarketingConsent
from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES
from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.integration import IntegrationNotReady
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services.customers import CustomerInput, regenerate_pin, update_customer
from ellity.domain.services.integration import (
    Activation,
    AddingChosen,
    FieldsNotConfirmed,
    activate_ecomail,
    choose_ecomail_add,
    connect_ecomail,
    deactivate_ecomail,
    integration_page,
    repush_all,
)
from ellity.domain.services.merchants import change_settings
from ellity.domain.services.points import earn_points
from ellity.ports.marketing import (
    ContactList,
    InvalidApiKey,
    ListNotFound,
    MarketingUnavailable,
    SubscriptionStatus,
)
from ellity.ports.storage import UnitOfWorkFactory
from tests.consenting import set_consent, set_ecomail_add
from tests.fakes import (
    FakeClock,
    FakeMarketingPlatform,
    FakeMarketingPlatforms,
    FakeRandom,
    FakeSecretBox,
    InMemoryStore,
)
from tests.unit.conftest import NewCustomer

P = Points.parse
KEY = "ecomail-key-0001"
LIST = "1"


@pytest.fixture
def platforms(clock: FakeClock) -> FakeMarketingPlatforms:
    return FakeMarketingPlatforms(clock)


@pytest.fixture
def ecomail(platforms: FakeMarketingPlatforms) -> FakeMarketingPlatform:
    account = platforms.add_account(KEY)
    account.add_list("Customers", list_id=LIST)
    return account


@pytest.fixture
def services(
    uow_factory: UnitOfWorkFactory, platforms: FakeMarketingPlatforms, clock: FakeClock
) -> dict[str, Any]:
    """The keyword arguments the integration use cases take."""
    return {
        "uow_factory": uow_factory,
        "platforms": platforms,
        "secret_box": FakeSecretBox(),
        "clock": clock,
    }


@dataclass
class World:
    """Anna's shop, not yet connected, and the fakes around it."""

    merchant: Merchant
    services: dict[str, Any]
    store: InMemoryStore
    clock: FakeClock
    rng: FakeRandom
    ecomail: FakeMarketingPlatform
    new_customer: NewCustomer

    async def active(self) -> None:
        """Connected and activated on the list "Customers"."""
        await connect(self.merchant, self.services)
        await activate(self.merchant, self.services)

    async def earn(self, customer: Customer, points: str) -> None:
        assert customer.id is not None
        await earn_points(
            self.merchant.id,
            customer.id,
            P(points),
            order_ref=f"o-{len(self.store.state.entries)}",
            uow=self.store.unit_of_work(),
            clock=self.clock,
        )

    async def update(self, customer: Customer, **changes: Any) -> None:
        assert customer.id is not None
        await update_customer(
            self.merchant.id,
            customer.id,
            CustomerInput(**changes),
            uow=self.store.unit_of_work(),
            clock=self.clock,
            rng=self.rng,
        )

    async def consent(self, customer: Customer, consent: MarketingConsent) -> None:
        assert customer.id is not None
        await set_consent(
            self.store.unit_of_work, self.merchant.id, customer.id, consent, clock=self.clock
        )

    async def regenerate_pin(self, customer: Customer) -> None:
        assert customer.id is not None
        await regenerate_pin(
            self.merchant.id,
            customer.id,
            uow=self.store.unit_of_work(),
            clock=self.clock,
            rng=self.rng,
        )


@pytest.fixture
def w(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    services: dict[str, Any],
    store: InMemoryStore,
    clock: FakeClock,
    rng: FakeRandom,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
) -> World:
    return World(merchant, services, store, clock, rng, ecomail, new_customer)


async def connect(merchant: Merchant, services: dict[str, Any], key: str = KEY) -> None:
    await connect_ecomail(merchant.id, key, **services)


async def activate(merchant: Merchant, services: dict[str, Any], list_id: str = LIST) -> Activation:
    return await activate_ecomail(merchant.id, list_id, **services)


async def active_list(store: InMemoryStore, merchant: Merchant) -> str | None:
    async with store.unit_of_work(read_only=True) as uow:
        return await uow.ecomail.active_list(merchant.id)


def ecomail_events(store: InMemoryStore) -> list[tuple[int | None, str, dict[str, Any]]]:
    """(customer, label, value) of each recorded Ecomail event, oldest first."""
    records = sorted(store.state.outbox.values(), key=lambda r: r.id)
    return [
        (r.customer_id, json.loads(r.payload)["label"], json.loads(r.payload)["value"])
        for r in records
        if r.topic == "ecomail.event"
    ]


# -- connecting ---------------------------------------------------------------------------------


async def test_a_key_ecomail_refuses_is_not_stored(
    merchant: Merchant, services: dict[str, Any], store: InMemoryStore
) -> None:
    with pytest.raises(InvalidApiKey):
        await connect(merchant, services, key="not-the-key")
    async with store.unit_of_work(read_only=True) as uow:
        assert await uow.ecomail.get(merchant.id) is None
        assert await uow.ecomail.api_key(merchant.id) is None


async def test_a_key_is_not_stored_while_ecomail_cannot_check_it(
    merchant: Merchant,
    services: dict[str, Any],
    store: InMemoryStore,
    ecomail: FakeMarketingPlatform,
) -> None:
    ecomail.fail_with = [None, MarketingUnavailable("Ecomail did not answer.")]  # the lists
    with pytest.raises(MarketingUnavailable):
        await connect(merchant, services)
    assert store.state.ecomail == {}


async def test_something_that_is_not_a_key_is_refused_before_asking_ecomail(
    merchant: Merchant, services: dict[str, Any], ecomail: FakeMarketingPlatform
) -> None:
    with pytest.raises(InvalidInput):
        await connect(merchant, services, key="two words")
    assert ecomail.calls == []


async def test_a_working_key_is_stored_encrypted_with_its_hint_and_the_lists_are_shown(
    merchant: Merchant,
    services: dict[str, Any],
    store: InMemoryStore,
    ecomail: FakeMarketingPlatform,
    platforms: FakeMarketingPlatforms,
) -> None:
    ecomail.add_list("Newsletter", list_id="2")
    lists = await connect_ecomail(merchant.id, f"  {KEY} \n", **services)
    assert lists == [ContactList(LIST, "Customers"), ContactList("2", "Newsletter")]
    assert ecomail.call_names == ["check_key", "lists"]
    assert platforms.accounts_asked == [f"merchant-{merchant.id}"]
    async with store.unit_of_work(read_only=True) as uow:
        integration = await uow.ecomail.get(merchant.id)
        stored = await uow.ecomail.api_key(merchant.id)
    assert stored is not None and KEY not in stored
    assert FakeSecretBox().decrypt(stored) == KEY
    assert integration is not None
    assert (integration.key_hint, integration.active, integration.list_id) == ("0001", False, None)


# -- activating ---------------------------------------------------------------------------------


async def test_activation_writes_the_first_customer_confirms_the_fields_and_starts_a_backfill(
    w: World,
) -> None:
    await w.new_customer(w.merchant, shop_customer_id="no-email")  # skipped: no contact
    ann = await w.new_customer(
        w.merchant, email="ann@example.cz", first_name="Anna", registered=True
    )
    await w.consent(ann, MarketingConsent.GRANTED)
    await connect(w.merchant, w.services)
    w.ecomail.calls.clear()
    activation = await activate(w.merchant, w.services, list_id=f" {LIST} ")
    assert activation == Activation(list_id=LIST, list_name="Customers", fields_confirmed=True)
    assert w.ecomail.calls == [("list_detail", 0), ("add_contacts", 1), ("list_detail", 0)]
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None and member.name == "Anna"
    assert sorted(member.fields) == sorted(FIELD_NAMES)
    assert w.ecomail.contact_lists[LIST].custom_fields == FIELD_TYPES

    now = w.clock.now()
    async with w.store.unit_of_work(read_only=True) as uow:
        integration = await uow.ecomail.get(w.merchant.id)
        assert await uow.contacts.added_at(w.merchant.id, ann.id) == now  # Ellity added it
        assert not await uow.contacts.is_pending(w.merchant.id, ann.id)
        assert await uow.ecomail.backfilling() == [w.merchant.id]
    assert integration is not None and integration.backfill is not None
    assert (integration.active, integration.list_id, integration.list_name) == (
        True,
        LIST,
        "Customers",
    )
    assert (integration.activated_at, integration.backfill.requested_at) == (now, now)
    assert w.store.state.contacts[ann.id].in_list


async def test_a_first_customer_already_in_the_list_is_not_recorded_as_added_by_ellity(
    merchant: Merchant,
    services: dict[str, Any],
    store: InMemoryStore,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
) -> None:
    ecomail.add_member(LIST, "ann@example.cz", status=SubscriptionStatus.UNSUBSCRIBED)
    ann = await new_customer(merchant, email="ann@example.cz")
    await connect(merchant, services)
    assert (await activate(merchant, services)).fields_confirmed
    async with store.unit_of_work(read_only=True) as uow:
        assert await uow.contacts.added_at(merchant.id, ann.id) is None
    assert store.state.contacts[ann.id].in_list
    member = ecomail.member(LIST, "ann@example.cz")
    assert member is not None and member.status == SubscriptionStatus.UNSUBSCRIBED


async def test_a_field_of_another_type_in_the_list_blocks_the_activation(
    merchant: Merchant,
    services: dict[str, Any],
    store: InMemoryStore,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
) -> None:
    ecomail.add_list("Shop", list_id="2", fields={"ellity_credit_num": "string"})
    await new_customer(merchant, email="ann@example.cz")
    await connect(merchant, services)
    with pytest.raises(FieldsNotConfirmed) as caught:
        await activate(merchant, services, list_id="2")
    assert caught.value.problems == ["ellity_credit_num is of type string, not int"]
    assert "ellity_credit_num is of type string, not int" in str(caught.value)
    assert await active_list(store, merchant) is None
    assert store.state.contacts == {}


async def test_without_customers_with_an_email_the_fields_come_with_the_first_contact(
    merchant: Merchant,
    services: dict[str, Any],
    store: InMemoryStore,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
) -> None:
    await new_customer(merchant, shop_customer_id="no-email")
    await connect(merchant, services)
    ecomail.calls.clear()
    activation = await activate(merchant, services)
    assert activation == Activation(list_id=LIST, list_name="Customers", fields_confirmed=False)
    assert ecomail.call_names == ["list_detail"]
    assert await active_list(store, merchant) == LIST


async def test_activation_adds_the_first_customer_ellity_may_add_and_records_the_attempt_first(
    w: World,
) -> None:
    una = await w.new_customer(w.merchant, email="una@example.cz")  # unknown consent
    ann = await w.new_customer(w.merchant, email="ann@example.cz")
    await w.consent(ann, MarketingConsent.GRANTED)
    await connect(w.merchant, w.services)
    w.ecomail.calls.clear()
    w.ecomail.fail_with = [None, MarketingUnavailable("Ecomail answered 500.")]  # the add
    with pytest.raises(MarketingUnavailable):
        await activate(w.merchant, w.services)
    assert w.store.state.contacts[ann.id].add_attempted_at == w.clock.now()  # before the call
    assert await active_list(w.store, w.merchant) is None

    w.clock.advance(minutes=1)
    assert (await activate(w.merchant, w.services)).fields_confirmed
    assert w.ecomail.calls[-3:] == [("list_detail", 0), ("add_contacts", 1), ("list_detail", 0)]
    assert w.ecomail.member(LIST, "una@example.cz") is None  # never subscribed
    assert w.ecomail.member(LIST, "ann@example.cz") is not None
    contact = w.store.state.contacts[ann.id]
    assert contact.in_list
    assert contact.add_attempted_at == w.clock.now() - timedelta(minutes=1)  # the same attempt
    assert una.id not in w.store.state.contacts


async def test_without_anyone_ellity_may_add_a_member_gets_the_fields_and_keeps_its_status(
    w: World,
) -> None:
    w.ecomail.add_member(LIST, "una@example.cz", status=SubscriptionStatus.UNSUBSCRIBED)
    una = await w.new_customer(w.merchant, email="una@example.cz")  # unknown consent
    rob = await w.new_customer(w.merchant, email="rob@example.cz")
    await w.consent(rob, MarketingConsent.REFUSED)
    await connect(w.merchant, w.services)
    w.ecomail.calls.clear()
    activation = await activate(w.merchant, w.services)
    assert activation == Activation(list_id=LIST, list_name="Customers", fields_confirmed=True)
    assert w.ecomail.calls == [("list_detail", 0), ("update_contacts", 1), ("list_detail", 0)]
    member = w.ecomail.member(LIST, "una@example.cz")
    assert member is not None and member.status == SubscriptionStatus.UNSUBSCRIBED
    assert sorted(member.fields) == sorted(FIELD_NAMES)
    contact = w.store.state.contacts[una.id]
    assert contact.in_list and contact.add_attempted_at is None
    assert w.ecomail.member(LIST, "rob@example.cz") is None


async def test_without_anyone_ellity_may_add_or_a_member_the_fields_come_with_the_first_add(
    w: World,
) -> None:
    una = await w.new_customer(w.merchant, email="una@example.cz")  # unknown consent
    await connect(w.merchant, w.services)
    w.ecomail.calls.clear()
    activation = await activate(w.merchant, w.services)
    assert activation == Activation(list_id=LIST, list_name="Customers", fields_confirmed=False)
    assert w.ecomail.calls == [("list_detail", 0), ("update_contacts", 1), ("list_detail", 0)]
    assert w.ecomail.contact_lists[LIST].members == {}  # nobody subscribed
    assert una.id not in w.store.state.contacts
    assert await active_list(w.store, w.merchant) == LIST


async def test_with_none_activation_adds_nobody_even_with_consent(w: World) -> None:
    await set_ecomail_add(w.store.unit_of_work, w.merchant.id, EcomailAdd.NONE)
    ann = await w.new_customer(w.merchant, email="ann@example.cz")
    await w.consent(ann, MarketingConsent.GRANTED)
    await connect(w.merchant, w.services)
    assert not (await activate(w.merchant, w.services)).fields_confirmed
    assert w.ecomail.contact_lists[LIST].members == {}
    assert "add_contacts" not in w.ecomail.call_names


async def test_a_deleted_list_cannot_be_activated(
    merchant: Merchant,
    services: dict[str, Any],
    store: InMemoryStore,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
) -> None:
    await new_customer(merchant, email="ann@example.cz")
    await connect(merchant, services)
    ecomail.delete_list(LIST)
    with pytest.raises(ListNotFound):
        await activate(merchant, services)
    assert await active_list(store, merchant) is None
    assert ecomail.call_names == ["check_key", "lists", "list_detail"]


async def test_activation_needs_a_stored_key_and_a_list(
    merchant: Merchant, services: dict[str, Any], ecomail: FakeMarketingPlatform
) -> None:
    with pytest.raises(IntegrationNotReady):
        await activate(merchant, services)
    await connect(merchant, services)
    with pytest.raises(IntegrationNotReady):
        await activate(merchant, services, list_id="  ")


async def test_a_backfill_can_be_asked_for_only_while_active(
    merchant: Merchant,
    services: dict[str, Any],
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    ecomail: FakeMarketingPlatform,
) -> None:
    await connect(merchant, services)
    with pytest.raises(IntegrationNotReady):
        await repush_all(merchant.id, uow_factory=uow_factory, clock=clock)
    await activate(merchant, services)
    clock.advance(hours=1)
    await repush_all(merchant.id, uow_factory=uow_factory, clock=clock)
    page = await integration_page(merchant.id, uow_factory=uow_factory)
    assert page.integration is not None and page.integration.backfill is not None
    assert page.integration.backfill.requested_at == clock.now()
    assert page.integration.backfill.marking
    assert page.backfill_done == 0
    await deactivate_ecomail(merchant.id, uow_factory=uow_factory, clock=clock)
    with pytest.raises(IntegrationNotReady):
        await repush_all(merchant.id, uow_factory=uow_factory, clock=clock)


# -- what the use cases record for Ecomail ------------------------------------------------------


async def test_earning_marks_the_contact_and_records_one_credit_event(w: World) -> None:
    await w.active()
    ann = await w.new_customer(w.merchant, email="ann@example.cz", registered=True)
    assert w.store.state.contacts[ann.id].pending_since == w.clock.now()  # the new contact
    assert ecomail_events(w.store) == []
    commits, work = w.store.commits, w.store.outbox_commits
    await w.earn(ann, "120.50")
    assert (w.store.commits, w.store.outbox_commits) == (commits + 1, work + 1)  # one transaction
    [(customer_id, label, value)] = ecomail_events(w.store)
    assert (customer_id, label) == (ann.id, "credit")
    assert (value["change"], value["balance"], value["reason"]) == ("120.50", "120.50", "earn")
    async with w.store.unit_of_work(read_only=True) as uow:
        assert await uow.contacts.is_pending(w.merchant.id, ann.id)


async def test_a_new_pin_records_a_pin_event(w: World) -> None:
    await w.active()
    ann = await w.new_customer(w.merchant, email="ann@example.cz")  # anonymous: gets a PIN
    await w.regenerate_pin(ann)
    events = ecomail_events(w.store)
    assert [(customer_id, label, value["reason"]) for customer_id, label, value in events] == [
        (ann.id, "pin", "created"),
        (ann.id, "pin", "regenerated"),
    ]
    pins = [ann.pin, w.store.state.customers[ann.id].pin]  # the first one, the new one
    for _, _, value in events:
        assert not any(pin and pin in json.dumps(value) for pin in pins)  # never the PIN


async def test_a_new_email_is_a_contact_ellity_has_not_written_yet(w: World) -> None:
    await w.active()
    ann = await w.new_customer(w.merchant, email="ann@example.cz", registered=True)
    async with w.store.unit_of_work() as uow:  # as if the worker had written it
        await uow.contacts.record_written(w.merchant.id, ann.id, added_at=None, at=w.clock.now())
        await uow.commit()
    await w.update(ann, first_name="Anna")
    assert w.store.state.contacts[ann.id].in_list  # the same contact, changed
    await w.update(ann, email="anna@example.cz")
    assert not w.store.state.contacts[ann.id].in_list  # another contact
    assert w.store.state.contacts[ann.id].pending_since is not None


async def test_with_an_inactive_integration_nothing_is_recorded_for_ecomail(w: World) -> None:
    await connect(w.merchant, w.services)  # a key, no active list
    ann = await w.new_customer(w.merchant, email="ann@example.cz")
    await w.consent(ann, MarketingConsent.GRANTED)
    await w.earn(ann, "10")
    await w.regenerate_pin(ann)
    assert w.store.state.contacts == {}
    assert ecomail_events(w.store) == []

    await activate(w.merchant, w.services)  # writes ann as the first contact
    await deactivate_ecomail(w.merchant.id, uow_factory=w.store.unit_of_work, clock=w.clock)
    await w.earn(ann, "10")
    await w.regenerate_pin(ann)
    assert w.store.state.contacts[ann.id].pending_since is None
    assert ecomail_events(w.store) == []


# -- who Ellity adds to the list ----------------------------------------------------------------


async def seed_consents(w: World) -> None:
    """Two customers who granted consent, one who refused, three unknown, one without email."""
    consents = ["granted", "granted", "refused", "unknown", "unknown", "unknown"]
    for n, consent in enumerate(consents):
        customer = await w.new_customer(w.merchant, email=f"c{n}@example.cz")
        assert customer.id is not None
        w.store.state.customers[customer.id].marketing_consent = MarketingConsent(consent)
    await w.new_customer(w.merchant, shop_customer_id="no-email")


async def backfill_requested_at(w: World) -> datetime | None:
    page = await integration_page(w.merchant.id, uow_factory=w.store.unit_of_work)
    assert page.integration is not None
    return page.integration.backfill.requested_at if page.integration.backfill else None


async def choose(w: World, value: str) -> AddingChosen:
    return await choose_ecomail_add(
        w.merchant.id, value, uow_factory=w.store.unit_of_work, clock=w.clock
    )


async def test_the_page_counts_what_each_choice_of_who_is_added_would_do(w: World) -> None:
    await seed_consents(w)
    page = await integration_page(w.merchant.id, uow_factory=w.store.unit_of_work)
    assert page.counts == ConsentCounts(granted=2, refused=1, unknown=3, without_email=1)
    plan = page.plan
    assert plan.setting is EcomailAdd.CONSENTED  # the default
    assert (plan.added, plan.updated_only, plan.never_added, plan.without_email) == (2, 3, 1, 1)
    assert page.unknown_left_out == 3
    others = {p.setting: (p.added, p.updated_only, p.never_added) for p in page.other_plans}
    assert others == {EcomailAdd.CUSTOMERS: (5, 0, 1), EcomailAdd.NONE: (0, 5, 1)}

    assert await choose(w, " Customers ") == AddingChosen(EcomailAdd.CUSTOMERS, backfill=False)
    page = await integration_page(w.merchant.id, uow_factory=w.store.unit_of_work)
    assert (page.plan.setting, page.plan.added, page.plan.updated_only) == (
        EcomailAdd.CUSTOMERS,
        5,
        0,
    )
    assert page.unknown_left_out == 0
    assert [p.setting for p in page.other_plans] == [EcomailAdd.CONSENTED, EcomailAdd.NONE]
    assert w.store.state.merchants[w.merchant.id].settings.ecomail_add is EcomailAdd.CUSTOMERS


async def test_a_wider_choice_requests_a_backfill_so_the_newly_allowed_are_added(
    w: World,
) -> None:
    await w.active()
    activated = await backfill_requested_at(w)
    w.clock.advance(hours=1)
    assert await choose(w, "none") == AddingChosen(EcomailAdd.NONE, backfill=False)
    assert await backfill_requested_at(w) == activated  # narrower: nobody new to add
    w.clock.advance(hours=1)
    assert await choose(w, "consented") == AddingChosen(EcomailAdd.CONSENTED, backfill=True)
    assert await backfill_requested_at(w) == w.clock.now()
    w.clock.advance(hours=1)
    assert await choose(w, "customers") == AddingChosen(EcomailAdd.CUSTOMERS, backfill=True)
    assert await backfill_requested_at(w) == w.clock.now()
    w.clock.advance(hours=1)
    assert await choose(w, "consented") == AddingChosen(EcomailAdd.CONSENTED, backfill=False)
    assert await choose(w, "consented") == AddingChosen(EcomailAdd.CONSENTED, backfill=False)
    assert await backfill_requested_at(w) == w.clock.now() - timedelta(hours=1)


async def test_a_choice_while_the_integration_is_not_active_is_only_saved(w: World) -> None:
    await connect(w.merchant, w.services)
    assert await choose(w, "customers") == AddingChosen(EcomailAdd.CUSTOMERS, backfill=False)
    assert await backfill_requested_at(w) is None
    assert w.store.state.merchants[w.merchant.id].settings.ecomail_add is EcomailAdd.CUSTOMERS


async def test_a_choice_that_is_not_one_of_the_three_is_refused_and_changes_nothing(
    w: World,
) -> None:
    with pytest.raises(InvalidInput, match="Choose who Ellity adds to your Ecomail list"):
        await choose(w, "everyone")
    assert w.store.state.merchants[w.merchant.id].settings.ecomail_add is EcomailAdd.CONSENTED


async def test_widening_the_choice_with_the_settings_command_requests_a_backfill_too(
    w: World,
) -> None:
    await w.active()
    w.clock.advance(hours=1)
    await change_settings(
        "anna", {"ecomail_add": "customers"}, uow=w.store.unit_of_work(), clock=w.clock
    )
    assert await backfill_requested_at(w) == w.clock.now()
    w.clock.advance(hours=1)
    await change_settings(
        "anna", {"ecomail_add": "consented"}, uow=w.store.unit_of_work(), clock=w.clock
    )
    assert await backfill_requested_at(w) == w.clock.now() - timedelta(hours=1)
