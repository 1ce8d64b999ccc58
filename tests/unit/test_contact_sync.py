"""Writing customers' contacts to their merchant's Ecomail list, and delivering the Ecomail
events that follow them, on the in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from ellity.domain.model.consent import EcomailAdd, MarketingConsent
from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES, cleared_fields
from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import DuplicateCustomer
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services import contact_backfill, contact_sync, delivery
from ellity.domain.services.contact_sync import CONTACT_RETRY, LIST_GONE
from ellity.domain.services.customers import CustomerInput, update_customer
from ellity.domain.services.ecomail_connection import KEY_REJECTED
from ellity.domain.services.integration import (
    activate_ecomail,
    connect_ecomail,
    deactivate_ecomail,
    retry_failed_sync,
)
from ellity.domain.services.points import earn_points
from ellity.ports.marketing import (
    BeforeSend,
    ContactData,
    MarketingRateLimited,
    MarketingRejected,
    MarketingUnavailable,
    SubscriptionStatus,
    TrackerEvent,
)
from ellity.ports.storage import ContactSyncFailure, UnitOfWorkFactory
from tests.consenting import set_consent, set_ecomail_add
from tests.fakes import (
    FakeClock,
    FakeMailer,
    FakeMarketingPlatform,
    FakeMarketingPlatforms,
    FakeRandom,
    FakeSecretBox,
    FakeSpendingBudget,
    InMemoryStore,
    InMemoryUnitOfWork,
    OutboxRecord,
)
from tests.unit.conftest import NewCustomer

P = Points.parse
KEY = "ecomail-key-0001"
LIST = "1"


@dataclass
class World:
    """Anna's shop with an active Ecomail integration, and the fakes around it."""

    shop: Merchant
    store: InMemoryStore
    clock: FakeClock
    platforms: FakeMarketingPlatforms
    ecomail: FakeMarketingPlatform
    new_customer: NewCustomer

    @property
    def uow_factory(self) -> UnitOfWorkFactory:
        return self.store.unit_of_work

    async def customer(
        self,
        email: str | None,
        *,
        consent: MarketingConsent | None = MarketingConsent.GRANTED,
        **fields: object,
    ) -> Customer:
        """A new customer; one with an email has given marketing consent unless ``consent``
        says otherwise (``None``: left unknown, as for every customer from before)."""
        if email is None:
            return await self.new_customer(self.shop, **fields)
        customer = await self.new_customer(self.shop, email=email, registered=True, **fields)
        if consent is not None:
            await self.consent(customer, consent)
        return customer

    async def consent(self, customer: Customer, consent: MarketingConsent) -> None:
        """The e-shop sets the customer's consent."""
        assert customer.id is not None
        await set_consent(self.uow_factory, self.shop.id, customer.id, consent, clock=self.clock)

    async def adding(self, setting: EcomailAdd) -> None:
        """The merchant chooses whom Ellity adds to the list."""
        await set_ecomail_add(self.uow_factory, self.shop.id, setting)

    async def earn(self, customer: Customer, points: str) -> None:
        assert customer.id is not None
        await earn_points(
            self.shop.id,
            customer.id,
            P(points),
            order_ref=f"o-{len(self.store.state.entries)}",
            uow=self.uow_factory(),
            clock=self.clock,
        )

    async def sync(self) -> int:
        return await contact_sync.sync_contacts(
            uow_factory=self.uow_factory,
            platforms=self.platforms,
            secret_box=FakeSecretBox(),
            clock=self.clock,
            worker_token="worker-1",
        )

    async def deliver(self) -> int:
        return await delivery.deliver_pending(
            uow_factory=self.uow_factory,
            mailer=FakeMailer(),
            secret_box=FakeSecretBox(),
            clock=self.clock,
            worker_token="worker-1",
            limit=100,
            platforms=self.platforms,
        )

    async def change_email(self, customer: Customer, email: str) -> Customer:
        """Staff (or the shop) change the customer's email; the customer as it is then."""
        assert customer.id is not None
        view = await update_customer(
            self.shop.id,
            customer.id,
            CustomerInput(email=email),
            uow=self.uow_factory(),
            clock=self.clock,
            rng=FakeRandom(seed=len(self.store.state.outbox)),
        )
        return view.customer

    async def pending(self, customer: Customer) -> bool:
        assert customer.id is not None
        async with self.uow_factory(read_only=True) as uow:
            return await uow.contacts.is_pending(self.shop.id, customer.id)

    async def failures(self) -> list[ContactSyncFailure]:
        async with self.uow_factory(read_only=True) as uow:
            return await uow.views.contact_sync_failures(self.shop.id, limit=100)

    def fields_of(self, email: str) -> dict[str, str | int]:
        member = self.ecomail.member(LIST, email)
        assert member is not None, f"{email} is not in the list"
        return member.fields

    def events(self) -> list[OutboxRecord]:
        return [r for r in self.store.state.outbox.values() if r.topic == "ecomail.event"]


async def activate(
    merchant: Merchant, store: InMemoryStore, clock: FakeClock, platforms: FakeMarketingPlatforms
) -> None:
    services: dict[str, Any] = {
        "uow_factory": store.unit_of_work,
        "platforms": platforms,
        "secret_box": FakeSecretBox(),
        "clock": clock,
    }
    await connect_ecomail(merchant.id, KEY, **services)
    await activate_ecomail(merchant.id, LIST, **services)


@pytest.fixture
def platforms(clock: FakeClock) -> FakeMarketingPlatforms:
    return FakeMarketingPlatforms(clock)


@pytest.fixture
def ecomail(platforms: FakeMarketingPlatforms) -> FakeMarketingPlatform:
    account = platforms.add_account(KEY)
    account.add_list("Customers", list_id=LIST)
    return account


@pytest.fixture
async def w(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    store: InMemoryStore,
    clock: FakeClock,
    platforms: FakeMarketingPlatforms,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
) -> World:
    """Activated before any customer exists, so the list has no fields yet."""
    await activate(merchant, store, clock, platforms)
    ecomail.calls.clear()
    return World(merchant, store, clock, platforms, ecomail, new_customer)


# -- what is written --------------------------------------------------------------------------


async def test_a_changed_customer_is_written_with_all_eleven_typed_fields(w: World) -> None:
    ann = await w.customer("ann@example.cz", first_name="Anna", last_name="Nováková")
    await w.earn(ann, "120")
    assert await w.sync() == 1
    assert w.ecomail.calls == [("add_contacts", 1)]
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None
    assert (member.status, member.name, member.surname) == (
        SubscriptionStatus.SUBSCRIBED,
        "Anna",
        "Nováková",
    )
    assert sorted(member.fields) == sorted(FIELD_NAMES)
    assert w.ecomail.contact_lists[LIST].custom_fields == FIELD_TYPES  # created with their types
    assert (member.fields["ellity_credit_num"], member.fields["ellity_credit"]) == (120, "120")
    assert member.fields["ellity_registered"] == "registered"
    assert member.fields["ellity_referral_code"] == ann.referral_code
    assert not await w.pending(ann)


async def test_many_changes_cost_one_write_of_the_latest_state(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    for points in ("10", "20", "30.50"):
        await w.earn(ann, points)
    assert await w.sync() == 1
    assert w.ecomail.calls == [("add_contacts", 1)]
    assert w.fields_of("ann@example.cz")["ellity_credit_num"] == 60
    assert await w.sync() == 0  # nothing left
    assert len(w.ecomail.calls) == 1


async def test_new_contacts_are_added_and_known_ones_updated(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.customer("bob@example.cz")
    assert await w.sync() == 2
    await w.earn(ann, "5")
    await w.customer("cyril@example.cz")
    w.ecomail.calls.clear()
    assert await w.sync() == 2
    assert w.ecomail.calls == [("update_contacts", 1), ("add_contacts", 1)]
    assert w.fields_of("ann@example.cz")["ellity_credit_num"] == 5
    assert "ellity_pin" in w.fields_of("cyril@example.cz")


async def test_a_contact_deleted_in_ecomail_is_added_again(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.sync()
    del w.ecomail.contact_lists[LIST].members["ann@example.cz"]  # the merchant deleted it
    w.clock.advance(minutes=5)
    await w.earn(ann, "7")
    w.ecomail.calls.clear()
    assert await w.sync() == 1
    assert w.ecomail.calls == [("update_contacts", 1), ("add_contacts", 1)]
    assert w.fields_of("ann@example.cz")["ellity_credit_num"] == 7
    async with w.uow_factory(read_only=True) as uow:
        assert await uow.contacts.added_at(w.shop.id, ann.id) == w.clock.now()


async def test_a_contact_ecomail_refuses_is_isolated_and_failed_with_its_reason(w: World) -> None:
    emails = [f"{name}@example.cz" for name in ("ann", "bob", "cyril", "dana", "eva")]
    customers = [await w.customer(email) for email in emails]
    w.ecomail.refuse["cyril@example.cz"] = "The subscriber_data.2.email field is invalid."
    assert await w.sync() == 4
    for email in emails:
        assert (w.ecomail.member(LIST, email) is None) == (email == "cyril@example.cz")
    cyril = customers[2]
    assert [(f.customer_id, f.email, f.error) for f in await w.failures()] == [
        (
            cyril.id,
            "cyril@example.cz",
            "Ecomail refused the contact: Ecomail refused the request (HTTP 422):"
            " The subscriber_data.2.email field is invalid.",
        )
    ]
    assert not any([await w.pending(c) for c in customers])
    assert await w.sync() == 0  # the failed one waits for the merchant


async def test_an_unsubscribed_member_is_never_subscribed_again(w: World) -> None:
    w.ecomail.add_member(LIST, "Ann@Example.cz", status=SubscriptionStatus.UNSUBSCRIBED)
    ann = await w.customer("ann@example.cz")
    assert await w.sync() == 1  # through the add: Ellity had not written it before
    await w.earn(ann, "3")
    assert await w.sync() == 1  # through the update
    assert w.ecomail.call_names == ["add_contacts", "update_contacts"]
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None
    assert member.status == SubscriptionStatus.UNSUBSCRIBED
    assert member.fields["ellity_credit_num"] == 3
    async with w.uow_factory(read_only=True) as uow:
        assert await uow.contacts.added_at(w.shop.id, ann.id) is None  # Ellity added no one


async def test_customers_without_an_email_are_never_synced(w: World) -> None:
    anonymous = await w.customer(None, shop_customer_id="77")
    await w.earn(anonymous, "10")
    assert await w.sync() == 0
    assert w.ecomail.calls == []
    assert w.store.state.contacts == {}
    assert w.events() == []


async def test_a_deactivated_integration_sends_nothing(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await deactivate_ecomail(w.shop.id, uow_factory=w.uow_factory, clock=w.clock)
    await w.earn(ann, "10")  # inactive: neither the change nor the event is recorded
    assert w.events() == []
    assert await w.sync() == 0
    assert w.ecomail.calls == []
    assert await w.pending(ann)  # the change from before waits for an activation
    # even asked directly, a merchant whose integration is off keeps its contacts waiting
    written = await contact_sync.sync_merchant(
        w.shop.id,
        uow_factory=w.uow_factory,
        platforms=w.platforms,
        secret_box=FakeSecretBox(),
        clock=w.clock,
        worker_token="worker-1",
    )
    assert written == 0
    assert await w.pending(ann)
    assert await w.failures() == []


# -- consent decides who is added ---------------------------------------------------------------


def member_status(w: World, email: str) -> SubscriptionStatus | None:
    member = w.ecomail.member(LIST, email)
    return None if member is None else member.status


async def test_with_consented_only_granted_customers_are_added_the_others_only_updated(
    w: World,
) -> None:
    w.ecomail.add_member(LIST, "una@example.cz", status=SubscriptionStatus.UNSUBSCRIBED)
    una = await w.customer("una@example.cz", consent=None)  # a member (unsubscribed)
    ulf = await w.customer("ulf@example.cz", consent=None)  # not a member
    gil = await w.customer("gil@example.cz")  # granted
    rob = await w.customer("rob@example.cz", consent=MarketingConsent.REFUSED)
    assert await w.sync() == 4
    assert w.ecomail.calls == [
        ("unsubscribe_contact", 1),  # rob's refusal
        ("add_contacts", 1),  # gil
        ("update_contacts", 3),  # una, ulf, rob: fields only
    ]
    assert member_status(w, "gil@example.cz") == SubscriptionStatus.SUBSCRIBED
    assert member_status(w, "una@example.cz") == SubscriptionStatus.UNSUBSCRIBED  # kept
    assert w.fields_of("una@example.cz")["ellity_referral_code"] == una.referral_code
    assert member_status(w, "ulf@example.cz") is None  # not added
    assert member_status(w, "rob@example.cz") is None
    contacts = w.store.state.contacts
    assert [contacts[c.id].in_list for c in (una, ulf, gil, rob)] == [False, False, True, False]
    assert not any([await w.pending(c) for c in (una, ulf, gil, rob)])
    assert contacts[gil.id].add_attempted_at == w.clock.now()
    assert [contacts[c.id].add_attempted_at for c in (una, ulf, rob)] == [None, None, None]

    # later changes: the granted one is updated, the others still only updated, never added
    w.clock.advance(minutes=5)
    for customer in (una, ulf, gil, rob):
        await w.earn(customer, "5")
    w.ecomail.calls.clear()
    assert await w.sync() == 4
    assert w.ecomail.calls == [("update_contacts", 1), ("update_contacts", 3)]
    assert member_status(w, "ulf@example.cz") is None
    assert w.fields_of("una@example.cz")["ellity_credit_num"] == 5


async def test_with_customers_everyone_but_refusals_is_added(w: World) -> None:
    await w.adding(EcomailAdd.CUSTOMERS)
    await w.customer("una@example.cz", consent=None)
    await w.customer("gil@example.cz")
    rob = await w.customer("rob@example.cz", consent=MarketingConsent.REFUSED)
    assert await w.sync() == 3
    assert w.ecomail.calls == [
        ("unsubscribe_contact", 1),
        ("add_contacts", 2),
        ("update_contacts", 1),
    ]
    assert member_status(w, "una@example.cz") == SubscriptionStatus.SUBSCRIBED
    assert member_status(w, "gil@example.cz") == SubscriptionStatus.SUBSCRIBED
    assert member_status(w, "rob@example.cz") is None
    assert not w.store.state.contacts[rob.id].in_list


async def test_with_none_nobody_is_added_and_members_keep_their_fields(w: World) -> None:
    await w.adding(EcomailAdd.NONE)
    w.ecomail.add_member(LIST, "gil@example.cz")
    gil = await w.customer("gil@example.cz")
    await w.customer("gia@example.cz")
    assert await w.sync() == 2
    assert w.ecomail.calls == [("update_contacts", 2)]
    assert w.fields_of("gil@example.cz")["ellity_referral_code"] == gil.referral_code
    assert member_status(w, "gia@example.cz") is None
    assert all(contact.add_attempted_at is None for contact in w.store.state.contacts.values())


async def test_a_refusal_unsubscribes_the_contact_once_and_it_is_never_added_again(
    w: World,
) -> None:
    ann = await w.customer("ann@example.cz")
    await w.sync()
    assert member_status(w, "ann@example.cz") == SubscriptionStatus.SUBSCRIBED
    w.clock.advance(minutes=5)
    await w.consent(ann, MarketingConsent.REFUSED)
    assert w.store.state.contacts[ann.id].unsubscribe_due
    await w.earn(ann, "12")
    w.ecomail.calls.clear()
    assert await w.sync() == 1
    assert w.ecomail.calls == [("unsubscribe_contact", 1), ("update_contacts", 1)]
    assert member_status(w, "ann@example.cz") == SubscriptionStatus.UNSUBSCRIBED
    assert w.fields_of("ann@example.cz")["ellity_credit_num"] == 12  # still kept in sync
    assert not w.store.state.contacts[ann.id].unsubscribe_due
    assert not await w.pending(ann)

    # later changes write the fields only: no unsubscription again, no add
    w.clock.advance(minutes=5)
    await w.earn(ann, "1")
    w.ecomail.calls.clear()
    assert await w.sync() == 1
    assert w.ecomail.calls == [("update_contacts", 1)]
    del w.ecomail.contact_lists[LIST].members["ann@example.cz"]  # even once deleted there
    await w.earn(ann, "1")
    await w.sync()
    assert member_status(w, "ann@example.cz") is None
    assert "add_contacts" not in w.ecomail.call_names


async def test_a_refusal_of_a_contact_not_in_the_list_has_nothing_to_undo(w: World) -> None:
    rob = await w.customer("rob@example.cz", consent=MarketingConsent.REFUSED)
    assert await w.sync() == 1
    assert w.ecomail.call_names == ["unsubscribe_contact", "update_contacts"]
    assert member_status(w, "rob@example.cz") is None
    assert not w.store.state.contacts[rob.id].unsubscribe_due
    assert await w.failures() == []


async def test_a_refusal_withdrawn_before_the_sync_unsubscribes_nobody(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.sync()
    await w.consent(ann, MarketingConsent.REFUSED)
    await w.consent(ann, MarketingConsent.GRANTED)  # the latest wish counts
    w.ecomail.calls.clear()
    assert await w.sync() == 1
    assert w.ecomail.calls == [("update_contacts", 1)]
    assert member_status(w, "ann@example.cz") == SubscriptionStatus.SUBSCRIBED
    assert not w.store.state.contacts[ann.id].unsubscribe_due


async def test_an_unsubscription_waits_while_ecomail_is_down(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.sync()
    await w.consent(ann, MarketingConsent.REFUSED)
    w.ecomail.fail_with = [MarketingUnavailable("Ecomail did not answer.")]
    assert await w.sync() == 0
    assert await w.pending(ann)
    assert w.store.state.contacts[ann.id].unsubscribe_due
    w.clock.advance(CONTACT_RETRY.delay(1, item_id=w.shop.id))
    assert await w.sync() == 1
    assert member_status(w, "ann@example.cz") == SubscriptionStatus.UNSUBSCRIBED
    assert not w.store.state.contacts[ann.id].unsubscribe_due


async def test_an_unsubscription_ecomail_refuses_fails_that_contact_with_its_reason(
    w: World,
) -> None:
    ann = await w.customer("ann@example.cz")
    bob = await w.customer("bob@example.cz")
    await w.sync()
    await w.consent(ann, MarketingConsent.REFUSED)
    await w.earn(bob, "3")
    refused = "Ecomail refused the request (HTTP 422): no"
    w.ecomail.fail_with = [MarketingRejected(refused, status=422)]
    assert await w.sync() == 1  # bob
    assert [(f.customer_id, f.error) for f in await w.failures()] == [
        (ann.id, f"Ecomail refused to unsubscribe the contact: {refused}")
    ]
    assert w.store.state.contacts[ann.id].unsubscribe_due  # still to be done on a retry
    assert w.fields_of("bob@example.cz")["ellity_credit_num"] == 3


async def test_a_consent_change_while_the_contact_is_written_leaves_it_pending(w: World) -> None:
    ann = await w.customer("ann@example.cz", consent=None)
    meddling = MeddlingPlatform.replacing(w)

    async def granted_meanwhile() -> None:
        del meddling.during["update_contacts"]
        await w.consent(ann, MarketingConsent.GRANTED)

    meddling.during["update_contacts"] = granted_meanwhile
    assert await w.sync() == 2
    # unknown when read, so only updated; still pending after that claim, so the next claim
    # of the run adds her
    assert w.ecomail.calls == [("update_contacts", 1), ("add_contacts", 1)]
    assert member_status(w, "ann@example.cz") == SubscriptionStatus.SUBSCRIBED
    assert w.store.state.contacts[ann.id].in_list
    assert not await w.pending(ann)


class MeddlingPlatform(FakeMarketingPlatform):
    """The fake Ecomail, where something else may happen while a call is under way
    (``during``: method → what happens before it answers), and whose answers may be lost
    after it processed the call (``lose_answers``: method → the errors the next calls raise
    instead of answering)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.during: dict[str, Callable[[], Awaitable[None]]] = {}
        self.lose_answers: dict[str, list[Exception]] = {}

    @classmethod
    def replacing(cls, w: World) -> MeddlingPlatform:
        """Take the place of the world's Ecomail account, with its lists."""
        meddling = cls(KEY, clock=w.clock)
        meddling.contact_lists = w.ecomail.contact_lists
        w.platforms.accounts[KEY] = meddling
        w.ecomail = meddling
        return meddling

    async def add_contacts(
        self,
        list_id: str,
        contacts: Sequence[ContactData],
        *,
        before_send: BeforeSend | None = None,
    ) -> int:
        added = await super().add_contacts(list_id, contacts, before_send=before_send)
        await self._after("add_contacts")
        return added

    async def update_contacts(self, list_id: str, contacts: Sequence[ContactData]) -> int:
        updated = await super().update_contacts(list_id, contacts)
        await self._after("update_contacts")
        return updated

    async def _after(self, method: str) -> None:
        meanwhile = self.during.get(method)
        if meanwhile is not None:
            await meanwhile()
        lost = self.lose_answers.get(method)
        if lost:
            raise lost.pop(0)


async def test_an_add_whose_answer_is_lost_is_recorded_as_attempted_before_the_call(
    w: World,
) -> None:
    meddling = MeddlingPlatform.replacing(w)
    meddling.lose_answers["add_contacts"] = [MarketingUnavailable("Ecomail answered 500.")]
    ann = await w.customer("ann@example.cz")
    attempted = w.clock.now()
    assert await w.sync() == 0
    assert member_status(w, "ann@example.cz") == SubscriptionStatus.SUBSCRIBED  # it was added
    contact = w.store.state.contacts[ann.id]
    assert contact.add_attempted_at == attempted
    assert contact.pending_since is not None and not contact.in_list
    # the retry belongs to the same attempt: its time is kept
    w.clock.advance(CONTACT_RETRY.delay(1, item_id=w.shop.id))
    assert await w.sync() == 1
    contact = w.store.state.contacts[ann.id]
    assert contact.add_attempted_at == attempted
    assert contact.in_list and not await w.pending(ann)


async def test_an_add_held_back_by_the_request_budget_is_not_recorded_as_attempted(
    w: World,
) -> None:
    """Nothing left Ellity, so a sign-up of the person's own meanwhile cannot be Ellity's echo;
    the attempt is recorded when the add is finally sent."""
    ann = await w.customer("ann@example.cz")
    w.ecomail.budget = FakeSpendingBudget(w.clock, spacing=timedelta(minutes=1))
    w.ecomail.budget.next_slot = w.clock.now() + timedelta(seconds=30)
    assert await w.sync() == 0
    assert w.ecomail.budget.refused == 1 and w.ecomail.calls == []
    assert w.store.state.contacts[ann.id].add_attempted_at is None
    w.clock.advance(seconds=31)
    sent_at = w.clock.now()
    assert await w.sync() == 1
    assert w.store.state.contacts[ann.id].add_attempted_at == sent_at


async def test_every_half_of_a_split_add_is_recorded_before_a_429_interrupts_it(
    w: World,
) -> None:
    emails = [f"{name}@example.cz" for name in ("ann", "bob", "cyril", "dana")]
    customers = [await w.customer(email) for email in emails]
    w.ecomail.refuse["dana@example.cz"] = "The subscriber_data.3.email field is invalid."
    attempted = w.clock.now()
    # the whole call is refused, its first half goes through, then Ecomail rate-limits
    w.ecomail.fail_with = [None, None, MarketingRateLimited("Slow down.", retry_after=30)]
    assert await w.sync() == 0
    assert w.ecomail.calls == [("add_contacts", 4), ("add_contacts", 2), ("add_contacts", 2)]
    contacts = w.store.state.contacts
    assert [contacts[c.id].add_attempted_at for c in customers] == [attempted] * 4
    assert [member_status(w, e) is not None for e in emails] == [True, True, False, False]
    assert all([await w.pending(c) for c in customers])  # the claim waits, nothing failed
    assert await w.failures() == []


# -- when Ecomail fails -------------------------------------------------------------------------


async def test_while_ecomail_is_down_nothing_is_lost_and_it_is_retried_with_backoff(
    w: World,
) -> None:
    ann = await w.customer("ann@example.cz")
    w.ecomail.fail_with = [MarketingUnavailable("Ecomail did not answer.")]
    assert await w.sync() == 0
    assert await w.pending(ann)
    assert await w.failures() == []
    wait = CONTACT_RETRY.delay(1, item_id=w.shop.id)
    assert timedelta(seconds=5) <= wait < timedelta(seconds=7)
    w.clock.advance(wait - timedelta(seconds=1))
    assert await w.sync() == 0
    assert w.ecomail.calls == [("add_contacts", 1)]  # not due yet: not even tried
    w.clock.advance(seconds=1)
    assert await w.sync() == 1
    assert w.ecomail.member(LIST, "ann@example.cz") is not None


async def test_a_rate_limited_sync_waits_as_long_as_ecomail_asks(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    w.ecomail.fail_with = [MarketingRateLimited("Slow down.", retry_after=120)]
    assert await w.sync() == 0
    async with w.uow_factory(read_only=True) as uow:
        assert await uow.contacts.next_due() == w.clock.now() + timedelta(seconds=120)
    w.clock.advance(seconds=119)
    assert await w.sync() == 0
    w.clock.advance(seconds=1)
    assert await w.sync() == 1
    assert not await w.pending(ann)


async def test_repeated_outages_wait_longer_each_time(w: World) -> None:
    await w.customer("ann@example.cz")
    w.ecomail.fail_with = [MarketingUnavailable("down"), MarketingUnavailable("down")]
    await w.sync()
    w.clock.advance(CONTACT_RETRY.delay(1, item_id=w.shop.id))
    await w.sync()
    async with w.uow_factory(read_only=True) as uow:
        due = await uow.contacts.next_due()
    assert due == w.clock.now() + CONTACT_RETRY.delay(2, item_id=w.shop.id)
    assert due - w.clock.now() >= timedelta(seconds=10)


async def test_a_rejected_api_key_fails_the_contacts_with_what_to_do(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    w.ecomail.valid = False  # the key was regenerated in Ecomail
    assert await w.sync() == 0
    assert [(f.customer_id, f.error) for f in await w.failures()] == [(ann.id, KEY_REJECTED)]
    assert not await w.pending(ann)
    w.ecomail.valid = True
    assert await retry_failed_sync(w.shop.id, uow_factory=w.uow_factory, clock=w.clock) == 1
    assert await w.sync() == 1
    assert await w.failures() == []


async def test_a_deleted_list_fails_the_contacts_with_what_to_do(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.sync()
    await w.earn(ann, "1")  # known: goes through the update
    bob = await w.customer("bob@example.cz")  # new: goes through the add
    w.ecomail.delete_list(LIST)
    assert await w.sync() == 0
    failures = await w.failures()
    assert sorted((f.customer_id, f.error) for f in failures) == [
        (ann.id, LIST_GONE),
        (bob.id, LIST_GONE),
    ]


# -- the backfill -----------------------------------------------------------------------------


async def test_activation_pushes_every_customer_marked_in_chunks_resuming_after_a_crash(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    store: InMemoryStore,
    clock: FakeClock,
    platforms: FakeMarketingPlatforms,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(contact_backfill, "MARK_CHUNK", 2)
    emails = ["a@x.cz", None, "b@x.cz", "c@x.cz", None, "d@x.cz", "e@x.cz"]
    customers = [
        await new_customer(merchant, email=email, shop_customer_id=f"s{n}")
        for n, email in enumerate(emails)
    ]
    await set_ecomail_add(store.unit_of_work, merchant.id, EcomailAdd.CUSTOMERS)
    await activate(merchant, store, clock, platforms)  # writes the first one to confirm fields

    commits = 0

    def crashing_factory(*, read_only: bool = False) -> InMemoryUnitOfWork:
        """The worker dies on committing its third chunk."""
        nonlocal commits
        uow = store.unit_of_work(read_only=read_only)
        if not read_only:
            commits += 1
            if commits == 3:

                async def crash() -> None:
                    raise ConnectionError("the worker's database connection died")

                uow.commit = crash  # type: ignore[method-assign]
        return uow

    with pytest.raises(ConnectionError):
        await contact_backfill.mark_backfills(uow_factory=crashing_factory, clock=clock)
    async with store.unit_of_work(read_only=True) as uow:
        integration = await uow.ecomail.get(merchant.id)
    assert integration is not None and integration.backfill is not None
    # two chunks of two were committed before the crash
    assert (integration.backfill.after_id, integration.backfill.marked) == (customers[5].id, 4)
    assert integration.backfill.marking

    assert await contact_backfill.mark_backfills(uow_factory=store.unit_of_work, clock=clock) == 1
    async with store.unit_of_work(read_only=True) as uow:
        integration = await uow.ecomail.get(merchant.id)
        assert await uow.ecomail.backfilling() == []
    assert integration is not None and integration.backfill is not None
    assert (integration.backfill.after_id, integration.backfill.marked) == (customers[6].id, 5)
    assert integration.backfill.finished_marking_at == clock.now()

    ecomail.calls.clear()
    world = World(merchant, store, clock, platforms, ecomail, new_customer)
    assert await world.sync() == 5
    # the contact activation wrote is updated, the others added, in one call each
    assert ecomail.calls == [("update_contacts", 1), ("add_contacts", 4)]
    assert sorted(ecomail.contact_lists[LIST].members) == sorted(e for e in emails if e)


# -- the events that follow the contacts --------------------------------------------------------


async def test_an_event_waits_for_its_contact_and_follows_the_fields(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.earn(ann, "120")
    for _ in range(3):  # waiting counts no attempt, however long it takes
        assert await w.deliver() == 0
        [record] = w.events()
        assert (record.status, record.attempts) == ("pending", 0)
        assert record.available_at == w.clock.now() + timedelta(seconds=2)
        w.clock.advance(seconds=2)
    assert w.ecomail.events == []

    assert await w.sync() == 1
    assert await w.deliver() == 1
    assert w.ecomail.call_names == ["add_contacts", "send_event"]  # the credit after the fields
    [event] = w.ecomail.events
    assert event == TrackerEvent(
        email="ann@example.cz",
        category="ellity",
        action="change",
        label="credit",
        value=json.loads(record.payload)["value"],
    )
    assert (event.value["change"], event.value["balance"]) == ("120.00", "120.00")
    assert w.events()[0].status == "delivered"


async def test_an_event_for_a_deactivated_integration_is_skipped(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.earn(ann, "10")
    await w.sync()
    await deactivate_ecomail(w.shop.id, uow_factory=w.uow_factory, clock=w.clock)
    assert await w.deliver() == 0
    [record] = w.events()
    assert record.status == "skipped"
    assert record.last_error == "The Ecomail integration was deactivated before delivery."
    assert w.ecomail.events == []


# -- an email change --------------------------------------------------------------------------


async def test_an_email_change_empties_the_old_contacts_fields_and_keeps_its_status(
    w: World,
) -> None:
    ann = await w.customer("ann@exmaple.cz", first_name="Anna")
    await w.earn(ann, "120")
    await w.sync()
    w.ecomail.unsubscribe(LIST, "ann@exmaple.cz")  # whatever its status, it stays
    await w.change_email(ann, "ann@example.cz")  # staff fix the typo
    w.ecomail.calls.clear()
    assert await w.sync() == 1
    # the new address through the add, the old one through an update: never added again
    assert w.ecomail.calls == [("add_contacts", 1), ("update_contacts", 1)]
    old = w.ecomail.member(LIST, "ann@exmaple.cz")
    assert old is not None
    assert old.status == SubscriptionStatus.UNSUBSCRIBED
    assert old.fields == cleared_fields()
    new = w.fields_of("ann@example.cz")
    assert (new["ellity_credit_num"], new["ellity_referral_code"]) == (120, ann.referral_code)
    assert w.store.state.old_addresses == {}  # cleared: forgotten
    assert await w.sync() == 0
    assert len(w.ecomail.calls) == 2


async def test_an_old_contact_deleted_in_ecomail_is_not_added_back(w: World) -> None:
    ann = await w.customer("ann@exmaple.cz")
    await w.sync()
    del w.ecomail.contact_lists[LIST].members["ann@exmaple.cz"]
    await w.change_email(ann, "ann@example.cz")
    await w.sync()
    assert not w.ecomail.in_any_list("ann@exmaple.cz")
    assert w.ecomail.member(LIST, "ann@example.cz") is not None


async def test_quick_email_changes_clear_every_address_the_fields_reached(w: World) -> None:
    ann = await w.customer("a@example.cz")
    await w.earn(ann, "5")
    await w.sync()
    await w.change_email(ann, "b@example.cz")
    await w.sync()
    await w.change_email(ann, "c@example.cz")
    await w.change_email(ann, "d@example.cz")  # before the worker wrote c
    await w.sync()
    assert w.fields_of("a@example.cz") == cleared_fields()
    assert w.fields_of("b@example.cz") == cleared_fields()
    assert w.ecomail.member(LIST, "c@example.cz") is None  # never written, nothing to clear
    assert w.fields_of("d@example.cz")["ellity_credit_num"] == 5


async def test_an_email_change_before_the_contact_was_ever_written_clears_nothing(
    w: World,
) -> None:
    ann = await w.customer("ann@exmaple.cz")
    await w.change_email(ann, "ann@example.cz")
    assert await w.sync() == 1
    assert w.ecomail.calls == [("add_contacts", 1)]
    assert w.ecomail.member(LIST, "ann@exmaple.cz") is None


async def test_an_email_change_while_the_integration_is_off_remembers_nothing(w: World) -> None:
    ann = await w.customer("ann@exmaple.cz")
    await deactivate_ecomail(w.shop.id, uow_factory=w.uow_factory, clock=w.clock)
    await w.change_email(ann, "ann@example.cz")
    assert w.store.state.old_addresses == {}


async def test_a_change_to_another_customers_address_is_refused_and_remembers_nothing(
    w: World, new_customer: NewCustomer
) -> None:
    ann = await new_customer(w.shop, email="ann@example.cz")
    await w.customer("bob@example.cz")
    await w.sync()
    with pytest.raises(DuplicateCustomer):
        await w.change_email(ann, "Bob@Example.cz")
    async with w.uow_factory(read_only=True) as uow:
        stored = await uow.customers.get(w.shop.id, ann.id)
    assert stored is not None and (stored.email, stored.pin) == ("ann@example.cz", ann.pin)
    assert w.store.state.old_addresses == {}
    assert not await w.pending(ann)


async def test_a_change_of_case_only_is_the_same_contact_and_keeps_the_pin(
    w: World, new_customer: NewCustomer
) -> None:
    ann = await new_customer(w.shop, email="Ann@Example.cz")  # anonymous: has a PIN
    await w.consent(ann, MarketingConsent.GRANTED)
    await w.sync()
    await w.deliver()
    w.ecomail.calls.clear()
    changed = await w.change_email(ann, "ann@example.cz")
    assert changed.pin == ann.pin
    assert await w.sync() == 1
    assert await w.deliver() == 0  # no pin event
    assert w.ecomail.calls == [("update_contacts", 1)]
    assert w.fields_of("ann@example.cz")["ellity_pin"] == ann.pin
    assert w.store.state.old_addresses == {}


async def test_moving_back_to_the_old_address_keeps_the_fields_there(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.earn(ann, "9")
    await w.sync()
    await w.change_email(ann, "anna@example.cz")
    await w.change_email(ann, "ann@example.cz")  # a mistake undone before the worker ran
    await w.sync()
    assert w.fields_of("ann@example.cz")["ellity_credit_num"] == 9
    assert w.ecomail.member(LIST, "anna@example.cz") is None


async def test_an_old_address_another_customer_takes_gets_their_fields(w: World) -> None:
    ann = await w.customer("ann@example.cz")
    await w.earn(ann, "9")
    await w.sync()
    await w.change_email(ann, "anna@example.cz")
    bob = await w.customer("ann@example.cz")  # the address is someone else's now
    await w.sync()
    taken = w.fields_of("ann@example.cz")
    assert (taken["ellity_referral_code"], taken["ellity_credit_num"]) == (bob.referral_code, 0)
    assert w.fields_of("anna@example.cz")["ellity_referral_code"] == ann.referral_code


async def test_clearing_an_old_address_waits_while_ecomail_is_down_and_is_not_lost(
    w: World,
) -> None:
    ann = await w.customer("ann@exmaple.cz")
    await w.earn(ann, "7")
    await w.sync()
    await w.change_email(ann, "ann@example.cz")
    w.ecomail.fail_with = [None, MarketingUnavailable("Ecomail did not answer.")]
    assert await w.sync() == 0  # the new contact was written, the clearing was not
    assert w.fields_of("ann@exmaple.cz")["ellity_credit_num"] == 7
    assert await w.pending(ann)
    w.clock.advance(minutes=5)
    assert await w.sync() == 1
    assert w.fields_of("ann@exmaple.cz") == cleared_fields()
    assert w.store.state.old_addresses == {}


async def test_an_anonymous_customer_gets_a_new_pin_written_before_its_pin_event(
    w: World, new_customer: NewCustomer
) -> None:
    ann = await new_customer(w.shop, email="ann@exmaple.cz")  # anonymous: has a PIN
    await w.consent(ann, MarketingConsent.GRANTED)
    await w.sync()
    await w.deliver()
    w.ecomail.events.clear()
    w.ecomail.calls.clear()
    moved = await w.change_email(ann, "ann@example.cz")
    assert moved.pin is not None and moved.pin != ann.pin
    assert await w.deliver() == 0  # the event waits for the new contact's fields
    await w.sync()
    w.clock.advance(seconds=2)
    assert await w.deliver() == 1
    assert w.ecomail.call_names == ["add_contacts", "update_contacts", "send_event"]
    assert w.fields_of("ann@example.cz")["ellity_pin"] == moved.pin
    assert w.fields_of("ann@exmaple.cz")["ellity_pin"] == ""
    [event] = w.ecomail.events
    assert (event.email, event.label) == ("ann@example.cz", "pin")
    assert event.value["reason"] == "regenerated"


async def test_a_backfill_chunk_the_database_aborts_for_a_conflict_runs_again(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    store: InMemoryStore,
    clock: FakeClock,
    platforms: FakeMarketingPlatforms,
    ecomail: FakeMarketingPlatform,
    new_customer: NewCustomer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(contact_backfill, "MARK_CHUNK", 2)
    customers = [await new_customer(merchant, email=f"c{n}@x.cz") for n in range(5)]
    await activate(merchant, store, clock, platforms)
    store.conflicts = 2  # the first chunk's transaction is aborted twice

    assert await contact_backfill.mark_backfills(uow_factory=store.unit_of_work, clock=clock) == 5
    async with store.unit_of_work(read_only=True) as uow:
        integration = await uow.ecomail.get(merchant.id)
    assert integration is not None and integration.backfill is not None
    assert (integration.backfill.after_id, integration.backfill.marked) == (customers[-1].id, 5)
