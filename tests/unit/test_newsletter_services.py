"""The newsletter reward on the in-memory fakes: the webhook URL, receiving Ecomail's
notifications, and the worker confirming and applying them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from ellity.domain.model.consent import ConsentSource, EcomailAdd, MarketingConsent
from ellity.domain.model.customer import Customer
from ellity.domain.model.integration import IntegrationNotReady
from ellity.domain.model.ledger import EntryKind
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    SIGNUP_KEEP,
    MalformedNotification,
    NotificationState,
    Outcome,
    UnknownWebhook,
)
from ellity.domain.model.outbox import Topic
from ellity.domain.services import (
    contact_sync,
    newsletter_intake,
    newsletter_processing,
    newsletter_signups,
)
from ellity.domain.services.integration import activate_ecomail, connect_ecomail
from ellity.domain.services.points import spend_points
from ellity.ports.marketing import (
    MarketingRateLimited,
    MarketingUnavailable,
    Membership,
    SubscriptionStatus,
)
from ellity.ports.storage import UnitOfWorkFactory
from tests.consenting import set_consent
from tests.fakes import (
    FakeClock,
    FakeMarketingPlatform,
    FakeMarketingPlatforms,
    FakeRandom,
    FakeSecretBox,
    InMemoryStore,
    NotificationRow,
)
from tests.fakes.storage.state import ContactRecord
from tests.unit.conftest import NewCustomer

P = Points.parse
KEY = "ecomail-key-0001"
LIST = "1"
BASE_URL = "https://ellity.example.cz"
REWARD = P("50")


def body(email: str, status: str = "SUBSCRIBED", list_id: object = 1) -> bytes:
    payload = {"email": email, "status": status, "listId": list_id, "campaignId": None}
    return json.dumps({"payload": payload}).encode()


@dataclass
class World:
    """Anna's shop, Ecomail active with list 1, a reward of 50 points taken back on unsubscribe."""

    shop: Merchant
    store: InMemoryStore
    clock: FakeClock
    platforms: FakeMarketingPlatforms
    ecomail: FakeMarketingPlatform
    new_customer: NewCustomer
    rng: FakeRandom
    url: str = ""

    @property
    def uow_factory(self) -> UnitOfWorkFactory:
        return self.store.unit_of_work

    @property
    def token(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def common(self) -> dict[str, Any]:
        return {
            "uow_factory": self.uow_factory,
            "secret_box": FakeSecretBox(),
            "rng": self.rng,
            "clock": self.clock,
            "base_url": BASE_URL,
        }

    async def settings(self, **changes: object) -> None:
        async with self.uow_factory() as uow:
            merchant = await uow.merchants.get(self.shop.id)
            assert merchant is not None
            new = dataclasses.replace(merchant.settings, **changes)  # type: ignore[arg-type]
            await uow.merchants.update_settings(self.shop.id, new)
            await uow.commit()

    async def post(self, email: str, status: str = "SUBSCRIBED", **kw: Any) -> int:
        return await newsletter_intake.receive_notification(
            kw.pop("token", self.token),
            body(email, status, **kw),
            uow_factory=self.uow_factory,
            clock=self.clock,
        )

    async def process(self, worker: str = "worker-1", **kw: Any) -> int:
        return await newsletter_processing.process_notifications(
            uow_factory=self.uow_factory,
            platforms=self.platforms,
            secret_box=FakeSecretBox(),
            clock=self.clock,
            worker_token=worker,
            **kw,
        )

    async def work(self) -> int:
        """What a worker run does: write the contacts, then process the notifications."""
        await self.sync()
        return await self.process()

    async def sync(self) -> int:
        return await contact_sync.sync_contacts(
            uow_factory=self.uow_factory,
            platforms=self.platforms,
            secret_box=FakeSecretBox(),
            clock=self.clock,
            worker_token="worker-1",
        )

    async def form_subscriber(self, email: str) -> Customer:
        """Someone who subscribed on the list's form, then became a customer (Ellity's sync
        found them in the list, so Ecomail's ``subscribed_at`` lies before its add)."""
        self.ecomail.add_member(LIST, email)
        self.clock.advance(minutes=10)
        customer = await self.new_customer(self.shop, email=email, registered=True)
        await self.sync()
        self.clock.advance(minutes=30)
        self.ecomail.calls.clear()
        return customer

    async def ellity_adds(self, customer: Customer) -> None:
        """What the sync does for a contact it may add: record the attempt (before the add
        call, committed), then add it to the list (Ecomail posts ``SUBSCRIBED`` for it)."""
        self.attempted(customer)
        await self.sync()

    def attempted(self, customer: Customer, at: datetime | None = None) -> ContactRecord:
        """The sync's record of an attempt to add the customer's contact, written directly."""
        assert customer.id is not None
        contacts = self.store.state.contacts
        row = contacts.setdefault(customer.id, ContactRecord(customer.id, self.shop.id))
        row.add_attempted_at = at or self.clock.now()
        row.echo_taken_at = row.echo_subscribed_at = None
        return row

    def customer(self, customer: Customer) -> Customer:
        assert customer.id is not None
        return self.store.state.customers[customer.id]

    def consent_sources(self, customer: Customer) -> list[tuple[MarketingConsent, ConsentSource]]:
        """The customer's consent history, oldest first."""
        return [
            (c.consent, c.source)
            for c in self.store.state.consent_changes
            if c.customer_id == customer.id
        ]

    def balance(self, customer: Customer) -> Points:
        assert customer.id is not None
        summary = self.store.state.summaries.get(customer.id)
        return Points(0) if summary is None else summary.balance

    def kinds(self, customer: Customer) -> list[EntryKind]:
        return [
            row.entry.kind
            for row in self.store.state.entries.values()
            if row.customer_id == customer.id
        ]

    def notifications(self) -> list[NotificationRow]:
        return sorted(self.store.state.notifications.values(), key=lambda r: r.id)

    def outcomes(self) -> list[tuple[str, Outcome | None]]:
        return [(r.notification.email, r.outcome) for r in self.notifications()]


@pytest.fixture
async def w(
    merchant: Merchant,
    store: InMemoryStore,
    clock: FakeClock,
    rng: FakeRandom,
    new_customer: NewCustomer,
) -> World:
    platforms = FakeMarketingPlatforms(clock)
    ecomail = platforms.add_account(KEY)
    ecomail.add_list("Customers", list_id=LIST)
    services: dict[str, Any] = {
        "uow_factory": store.unit_of_work,
        "platforms": platforms,
        "secret_box": FakeSecretBox(),
        "clock": clock,
    }
    await connect_ecomail(merchant.id, KEY, **services)
    await activate_ecomail(merchant.id, LIST, **services)
    world = World(merchant, store, clock, platforms, ecomail, new_customer, rng)
    # every customer is added to the list, whatever their consent (these tests are about
    # the reward, not about who is added)
    await world.settings(
        newsletter_reward=REWARD, newsletter_take_back=True, ecomail_add=EcomailAdd.CUSTOMERS
    )
    world.url = await newsletter_intake.webhook_address(merchant.id, **world.common)
    ecomail.calls.clear()
    return world


# -- the webhook URL -----------------------------------------------------------------------


async def test_the_webhook_url_is_made_once_and_shown_again(w: World) -> None:
    assert w.url.startswith(f"{BASE_URL}/webhooks/ecomail/")
    assert await newsletter_intake.webhook_address(w.shop.id, **w.common) == w.url
    stored = w.store.state.webhooks[w.shop.id]
    assert w.token not in (stored.token_digest, stored.token_encrypted)  # neither is in clear


async def test_a_rotated_webhook_url_replaces_the_old_one_at_once(w: World) -> None:
    old = w.token
    new_url = await newsletter_intake.rotate_webhook(w.shop.id, **w.common)
    assert new_url != w.url
    assert await newsletter_intake.webhook_address(w.shop.id, **w.common) == new_url
    with pytest.raises(UnknownWebhook):
        await w.post("ann@example.cz", token=old)
    w.url = new_url
    assert await w.post("ann@example.cz")
    assert len(w.notifications()) == 1


async def test_the_webhook_needs_an_active_integration(other_merchant: Merchant, w: World) -> None:
    with pytest.raises(IntegrationNotReady):
        await newsletter_intake.webhook_address(other_merchant.id, **w.common)


async def test_concurrent_first_views_make_one_webhook(w: World) -> None:
    w.store.state.webhooks.clear()
    urls = await asyncio.gather(
        *(newsletter_intake.webhook_address(w.shop.id, **w.common) for _ in range(5))
    )
    assert len(set(urls)) == 1


# -- receiving -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "x" * 43, "not a token at all"])
async def test_a_wrong_token_is_unknown_and_stores_nothing(w: World, token: str) -> None:
    with pytest.raises(UnknownWebhook):
        await w.post("ann@example.cz", token=token)
    with pytest.raises(UnknownWebhook):  # a wrong token with a bad body: still unknown
        await newsletter_intake.receive_notification(
            token, b"{", uow_factory=w.uow_factory, clock=w.clock
        )
    assert w.notifications() == []


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", body("ann@example.cz", "MAYBE"), body("", "SUBSCRIBED")]
)
async def test_a_malformed_body_is_refused_and_stores_nothing(w: World, raw: bytes) -> None:
    with pytest.raises(MalformedNotification):
        await newsletter_intake.receive_notification(
            w.token, raw, uow_factory=w.uow_factory, clock=w.clock
        )
    assert w.notifications() == []


async def test_a_notification_is_stored_pending_and_wakes_the_worker(w: World) -> None:
    commits = w.store.outbox_commits
    await w.post("Ann@Example.cz", "UNSUBSCRIBED", list_id="1")
    (row,) = w.notifications()
    assert (row.notification.email, row.notification.change.value, row.notification.list_id) == (
        "Ann@Example.cz",
        "UNSUBSCRIBED",
        "1",
    )
    assert row.state is NotificationState.PENDING and row.received_at == w.clock.now()
    assert w.store.outbox_commits == commits + 1
    assert w.ecomail.calls == []  # nothing asked of Ecomail while the request waits


# -- paying and taking back ----------------------------------------------------------------


async def test_a_confirmed_subscription_pays_the_reward_with_the_usual_sync_and_event(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    assert await w.process() == 1
    assert w.balance(ann) == REWARD
    assert w.kinds(ann) == [EntryKind.NEWSLETTER_REWARD]
    (row,) = w.notifications()
    assert (row.outcome, row.points, row.customer_id) == (Outcome.PAID, REWARD, ann.id)
    assert w.ecomail.call_names == ["membership"]
    events = [r for r in w.store.state.outbox.values() if r.topic == Topic.ECOMAIL_EVENT.value]
    assert [json.loads(e.payload)["label"] for e in events] == ["credit"]
    assert json.loads(events[0].payload)["value"]["reason"] == "newsletter_reward"
    assert w.store.state.contacts[ann.id].pending_since is not None  # fields re-synced
    await w.sync()
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None and member.fields["ellity_credit_num"] == 50


async def test_a_confirmed_unsubscription_takes_the_reward_back(w: World) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    assert await w.process() == 1
    assert w.balance(ann) == Points(0)
    assert w.kinds(ann) == [EntryKind.NEWSLETTER_REWARD, EntryKind.NEWSLETTER_DEDUCTION]
    assert w.notifications()[-1].outcome is Outcome.DEDUCTED
    assert not w.store.state.rewards[ann.id].hold.held


async def test_the_same_notification_ten_times_pays_once(w: World) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    for _ in range(10):
        await w.post("ann@example.cz")
    assert await w.process() == 10
    assert w.balance(ann) == REWARD
    outcomes = [r.outcome for r in w.notifications()]
    assert outcomes.count(Outcome.PAID) == 1 and outcomes.count(Outcome.IGNORED) == 9
    assert w.ecomail.call_names == ["membership"]  # the held reward needs no confirmation


async def test_parallel_workers_pay_once(w: World) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    for _ in range(10):
        await w.post("ann@example.cz")
    done = await asyncio.gather(*(w.process(f"worker-{n}", batch_size=2) for n in range(5)))
    assert sum(done) == 10
    assert w.balance(ann) == REWARD
    assert [r.outcome for r in w.notifications()].count(Outcome.PAID) == 1


async def test_parallel_workers_confirming_at_once_pay_once(w: World) -> None:
    """Both workers ask Ecomail before either writes: the hold, read again under the
    customer's lock, lets only one pay."""
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    await w.post("ann@example.cz")
    gate = asyncio.Event()
    asked: list[str] = []
    membership = w.ecomail.membership

    async def slow_membership(list_id: str, email: str) -> Membership | None:
        asked.append(email)
        if len(asked) == 2:
            gate.set()
        await gate.wait()  # both are between screening and applying
        return await membership(list_id, email)

    w.ecomail.membership = slow_membership  # type: ignore[method-assign]
    await asyncio.gather(w.process("worker-a", batch_size=1), w.process("worker-b", batch_size=1))
    assert len(asked) == 2
    assert w.balance(ann) == REWARD
    assert sorted(str(r.outcome) for r in w.notifications()) == ["ignored", "paid"]


async def test_a_worker_whose_claim_ran_out_changes_nothing(w: World) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    membership = w.ecomail.membership
    takeover: list[int] = []

    async def stalled(list_id: str, email: str) -> Membership | None:
        if not takeover:  # the first worker stalls past its lease; another takes over
            w.clock.advance(hours=1)
            w.ecomail.membership = membership  # type: ignore[method-assign]
            takeover.append(await w.process("worker-b"))
        return await membership(list_id, email)

    w.ecomail.membership = stalled  # type: ignore[method-assign]
    assert await w.process("worker-a") == 0  # its settle found the claim gone: rolled back
    assert takeover == [1]
    assert w.balance(ann) == REWARD
    assert w.kinds(ann) == [EntryKind.NEWSLETTER_REWARD]


async def test_five_subscribe_unsubscribe_cycles_leave_at_most_one_reward(w: World) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    for _ in range(5):
        w.ecomail.subscribe_again(LIST, "ann@example.cz")
        await w.post("ann@example.cz")
        await w.work()
        assert w.balance(ann) == REWARD
        w.clock.advance(hours=1)
        w.ecomail.unsubscribe(LIST, "ann@example.cz")
        await w.post("ann@example.cz", "UNSUBSCRIBED")
        await w.work()
        assert w.balance(ann) == Points(0)
        w.clock.advance(hours=1)
    assert w.kinds(ann).count(EntryKind.NEWSLETTER_REWARD) == 5
    assert w.kinds(ann).count(EntryKind.NEWSLETTER_DEDUCTION) == 5


async def test_a_spent_reward_is_taken_back_only_as_far_as_the_balance_goes_and_stays_held(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    assert ann.id is not None
    await spend_points(w.shop.id, ann.id, P("40"), uow=w.uow_factory(), clock=w.clock)
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    await w.process()
    assert w.balance(ann) == Points(0)  # 10 taken, never below zero
    assert w.notifications()[-1].points == P("-10")
    assert w.store.state.rewards[ann.id].hold.outstanding == P("40")
    w.clock.advance(days=1)
    w.ecomail.subscribe_again(LIST, "ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    assert w.balance(ann) == Points(0)  # still held: subscribing again pays nothing
    assert w.notifications()[-1].outcome is Outcome.IGNORED


async def test_without_taking_back_the_reward_is_kept_and_never_paid_again(w: World) -> None:
    await w.settings(newsletter_take_back=False)
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    await w.process()
    w.clock.advance(days=1)
    w.ecomail.subscribe_again(LIST, "ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    assert w.balance(ann) == REWARD
    assert [r.outcome for r in w.notifications()] == [
        Outcome.PAID,
        Outcome.IGNORED,
        Outcome.IGNORED,
    ]
    assert "switched off" in (w.notifications()[1].reason or "")


# -- Ellity's own echo ---------------------------------------------------------------------


async def test_the_echo_of_ellitys_own_add_pays_nothing_and_leaves_consent_unchanged(
    w: World,
) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.ellity_adds(ann)
    w.clock.advance(seconds=5)
    await w.post("ann@example.cz")  # Ecomail's notification of Ellity's add
    assert await w.process() == 1
    assert w.balance(ann) == Points(0)
    (row,) = w.notifications()
    assert row.outcome is Outcome.IGNORED
    assert (row.reason or "").startswith("Ellity's own add of this contact (attempted")
    assert w.customer(ann).marketing_consent is MarketingConsent.UNKNOWN
    assert w.consent_sources(ann) == []
    contact = w.store.state.contacts[ann.id]
    assert contact.echo_taken_at == w.clock.now()
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None and contact.echo_subscribed_at == member.subscribed_at
    assert w.ecomail.call_names == ["add_contacts", "membership"]  # confirmed first


async def test_the_echo_of_an_add_whose_answer_was_lost_pays_nothing(w: World) -> None:
    """Ecomail processed the add but its answer never came (a timeout, a 5xx): the sync
    recorded its attempt before the call, and knows nothing more."""
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    w.attempted(ann)
    w.ecomail.add_member(LIST, "ann@example.cz")  # what the lost call did
    w.clock.advance(hours=1)  # the webhook came late; the retried add inserted no one
    await w.post("ann@example.cz")
    assert await w.process() == 1
    assert w.balance(ann) == Points(0) and w.kinds(ann) == []
    assert "Ellity's own add" in (w.notifications()[0].reason or "")


async def test_the_echo_notified_again_is_a_replay_and_pays_nothing(w: World) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.ellity_adds(ann)
    await w.post("ann@example.cz")
    await w.process()
    w.clock.advance(hours=3)
    await w.post("ann@example.cz")  # Ecomail delivers the same notification again
    assert await w.process() == 1
    assert w.balance(ann) == Points(0)
    replay = w.notifications()[-1]
    assert replay.outcome is Outcome.IGNORED
    assert "The same subscription as the echo" in (replay.reason or "")
    assert w.customer(ann).marketing_consent is MarketingConsent.UNKNOWN


async def test_a_forged_unsubscription_does_not_make_the_echo_a_paid_subscription(
    w: World,
) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.ellity_adds(ann)
    await w.post("ann@example.cz")  # the echo
    await w.process()
    w.clock.advance(seconds=30)
    await w.post("ann@example.cz", "UNSUBSCRIBED")  # forged: Ann is still subscribed
    await w.post("ann@example.cz")  # and the echo once more
    assert await w.process() == 2
    assert w.balance(ann) == Points(0)
    assert [r.outcome for r in w.notifications()] == [
        Outcome.IGNORED,
        Outcome.UNCONFIRMED,
        Outcome.IGNORED,
    ]
    assert "The same subscription as the echo" in (w.notifications()[-1].reason or "")


async def test_a_forged_unsubscription_before_the_echo_arrived_does_not_make_it_paid(
    w: World,
) -> None:
    """The echo of Ellity's add never arrived (the webhook was set up later): an
    unsubscription claimed after Ann's subscription began did not end it, so a subscription
    notified then is still the echo."""
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.ellity_adds(ann)
    w.clock.advance(minutes=10)
    await w.post("ann@example.cz", "UNSUBSCRIBED")  # forged: Ann is still subscribed
    await w.post("ann@example.cz")
    assert await w.process() == 2
    assert w.balance(ann) == Points(0)
    assert [r.outcome for r in w.notifications()] == [Outcome.UNCONFIRMED, Outcome.IGNORED]
    assert "Ellity's own add" in (w.notifications()[-1].reason or "")


async def test_a_sign_up_with_consent_given_and_no_reward_still_writes_the_fields_at_once(
    w: World,
) -> None:
    """Nothing is paid and the consent was granted already, yet Ecomail is asked: the
    person signed up through the form, and their contact's fields are written now."""
    await w.settings(newsletter_reward=Points(0), ecomail_add=EcomailAdd.NONE)
    zoe = await w.new_customer(w.shop, email="zoe@example.cz", registered=True)
    assert zoe.id is not None
    await set_consent(w.uow_factory, w.shop.id, zoe.id, MarketingConsent.GRANTED, clock=w.clock)
    await w.sync()  # Ellity adds nobody: Zoe is not in the list
    assert not w.store.state.contacts[zoe.id].in_list
    w.ecomail.add_member(LIST, "zoe@example.cz")  # her own sign-up on the list's form
    w.ecomail.calls.clear()
    await w.post("zoe@example.cz")
    assert await w.process() == 1
    assert w.ecomail.call_names == ["membership"]
    contact = w.store.state.contacts[zoe.id]
    assert contact.in_list and contact.pending_since is not None
    await w.sync()
    member = w.ecomail.member(LIST, "zoe@example.cz")
    assert member is not None and member.fields["ellity_referral_code"] == zoe.referral_code


async def test_unsubscribing_and_subscribing_again_ten_seconds_later_is_paid_once(
    w: World,
) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.ellity_adds(ann)
    await w.post("ann@example.cz")  # the echo
    await w.process()
    w.clock.advance(minutes=1)
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    await w.process()
    assert w.customer(ann).marketing_consent is MarketingConsent.REFUSED
    w.clock.advance(seconds=10)
    w.ecomail.subscribe_again(LIST, "ann@example.cz")  # the shop's form, 10 s later
    await w.post("ann@example.cz")
    await w.post("ann@example.cz")  # delivered twice
    await w.process()
    assert w.balance(ann) == REWARD
    assert w.kinds(ann) == [EntryKind.NEWSLETTER_REWARD]
    paid = [r for r in w.notifications() if r.outcome is Outcome.PAID]
    assert len(paid) == 1
    assert paid[0].reason == (
        "Subscribed again after unsubscribing: paid 50 points. Consent recorded as granted."
    )
    assert w.customer(ann).marketing_consent is MarketingConsent.GRANTED


async def test_a_notification_received_before_ellitys_attempt_is_the_customers_own(
    w: World,
) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    w.ecomail.add_member(LIST, "ann@example.cz")  # Ann signed up on the shop's form
    await w.post("ann@example.cz")
    w.clock.advance(seconds=1)
    w.attempted(ann)  # the sync tries to add her before the notification is processed
    await w.process()
    assert w.balance(ann) == REWARD
    assert "notified before Ellity's add" in (w.notifications()[0].reason or "")


async def test_a_subscription_ecomail_dates_before_ellitys_attempt_is_the_customers_own(
    w: World,
) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    w.ecomail.add_member(LIST, "ann@example.cz")  # subscribed on the form long ago
    w.clock.advance(days=2)
    await w.ellity_adds(ann)  # the add finds her a member: it adds no one
    await w.post("ann@example.cz")  # a late notification of her own sign-up
    await w.process()
    assert w.balance(ann) == REWARD
    assert "before Ellity's add" in (w.notifications()[0].reason or "")


# -- consent from Ecomail ------------------------------------------------------------------


async def test_a_confirmed_subscription_grants_consent_and_makes_the_contact_a_member(
    w: World,
) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.settings(newsletter_reward=Points(0))  # consent counts even without a reward
    w.ecomail.add_member(LIST, "ann@example.cz")  # the form: no ellity_* fields yet
    await w.post("ann@example.cz")
    assert await w.process() == 1
    assert w.customer(ann).marketing_consent is MarketingConsent.GRANTED
    assert w.customer(ann).consent_source is ConsentSource.ECOMAIL
    assert w.consent_sources(ann) == [(MarketingConsent.GRANTED, ConsentSource.ECOMAIL)]
    contact = w.store.state.contacts[ann.id]
    assert contact.in_list and contact.pending_since == w.clock.now()
    (row,) = w.notifications()
    assert row.reason == (
        "The customer's own subscription (Ellity never tried to add this contact): no"
        " newsletter reward is set (0 points). Consent recorded as granted."
    )
    w.ecomail.calls.clear()
    await w.sync()
    assert w.ecomail.call_names == ["update_contacts"]  # a member: its fields, never an add
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None and "ellity_credit_num" in member.fields


async def test_a_confirmed_unsubscription_refuses_consent_without_unsubscribing_again(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    assert await w.process() == 1
    assert w.customer(ann).marketing_consent is MarketingConsent.REFUSED
    assert w.consent_sources(ann) == [(MarketingConsent.REFUSED, ConsentSource.ECOMAIL)]
    assert not w.store.state.contacts[ann.id].unsubscribe_due
    (row,) = w.notifications()
    assert row.outcome is Outcome.IGNORED
    assert row.reason == (
        "The customer holds no newsletter reward to take back. Consent recorded as refused."
    )
    assert w.ecomail.call_names == ["membership"]


async def test_a_confirmed_change_records_the_contacts_status_as_ecomail_reported_it(
    w: World,
) -> None:
    def seen(customer: Customer) -> tuple[int | None, datetime | None]:
        contact = w.store.state.contacts[customer.id]
        return contact.list_status, contact.list_status_at

    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    w.ecomail.add_member(LIST, "ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    assert seen(ann) == (
        SubscriptionStatus.SUBSCRIBED,
        w.clock.now(),
    )
    w.clock.advance(minutes=5)
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    await w.process()
    assert seen(ann) == (
        SubscriptionStatus.UNSUBSCRIBED,
        w.clock.now(),
    )
    w.clock.advance(minutes=5)
    await w.post("ann@example.cz")  # Ecomail says unsubscribed: not confirmed, not recorded
    await w.process()
    assert w.notifications()[-1].outcome is Outcome.UNCONFIRMED
    assert seen(ann) == (SubscriptionStatus.UNSUBSCRIBED, w.clock.now() - timedelta(minutes=5))


async def test_what_could_change_nothing_is_not_asked_of_ecomail(w: World) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    await w.process()  # consent refused, nothing held
    await w.post("ann@example.cz", "UNSUBSCRIBED")
    await w.process()
    assert w.ecomail.call_names == ["membership"]  # the second needed no confirmation
    assert w.notifications()[-1].reason == "The customer holds no newsletter reward to take back."
    assert w.balance(ann) == Points(0)


# -- sign-ups before the customer exists ---------------------------------------------------


async def sign_up(w: World, email: str = "zoe@example.cz") -> None:
    """Someone signs up on the shop's form before being a customer."""
    w.ecomail.add_member(LIST, email)
    await w.post(email)
    assert await w.process() == 1


async def test_a_sign_up_before_the_customer_exists_is_kept(w: World) -> None:
    await sign_up(w)
    (row,) = w.notifications()
    assert (row.outcome, row.customer_id) == (Outcome.IGNORED, None)
    assert row.reason == (
        "No customer has this email yet: the sign-up is kept, and paid if a customer with"
        " this email is created within 30 days."
    )
    (kept,) = w.store.state.signups.values()
    assert (kept.email, kept.list_id, kept.received_at) == ("zoe@example.cz", LIST, row.received_at)
    assert (kept.notification_id, kept.used_at) == (row.id, None)
    assert w.ecomail.call_names == ["membership"]


async def test_a_sign_up_ecomail_does_not_confirm_is_not_kept(w: World) -> None:
    await w.post("zoe@example.cz")  # forged: Zoe is in no list
    await w.process()
    (row,) = w.notifications()
    assert row.outcome is Outcome.UNCONFIRMED and "no such contact" in (row.reason or "")
    assert w.store.state.signups == {}


async def test_a_customer_created_within_30_days_of_a_sign_up_is_paid_once(w: World) -> None:
    await sign_up(w)
    signed_up_at = w.clock.now()
    w.clock.advance(days=29)
    zoe = await w.new_customer(w.shop, email="Zoe@Example.cz", registered=True)
    pending = w.notifications()[-1]
    assert pending.state is NotificationState.PENDING
    assert (pending.received_at, pending.available_at) == (signed_up_at, w.clock.now())
    w.clock.advance(seconds=5)
    assert await w.work() == 1
    assert w.balance(zoe) == REWARD
    last = w.notifications()[-1]
    assert (last.outcome, last.customer_id) == (Outcome.PAID, zoe.id)
    assert last.reason == (
        "Signed up to the newsletter before becoming a customer: paid 50 points. Consent"
        " recorded as granted."
    )
    assert w.customer(zoe).marketing_consent is MarketingConsent.GRANTED
    assert w.ecomail.call_names.count("membership") == 2  # confirmed again before paying
    # not twice: the sign-up is used, and Zoe's later notifications find the reward held
    async with w.uow_factory() as uow:
        assert (
            await newsletter_signups.signup_for_new_customer(
                uow, w.shop, w.customer(zoe), at=w.clock.now()
            )
            is None
        )
    await w.post("zoe@example.cz")
    await w.work()
    assert w.balance(zoe) == REWARD and w.kinds(zoe) == [EntryKind.NEWSLETTER_REWARD]


async def test_a_customer_created_after_30_days_is_not_paid_for_the_sign_up(w: World) -> None:
    await sign_up(w)
    w.clock.advance(SIGNUP_KEEP + timedelta(seconds=1))
    zoe = await w.new_customer(w.shop, email="zoe@example.cz", registered=True)
    assert len(w.notifications()) == 1  # nothing new to process
    await w.work()
    assert w.balance(zoe) == Points(0)
    assert next(iter(w.store.state.signups.values())).used_at is None


async def test_sign_ups_no_customer_can_take_any_more_are_forgotten(w: World) -> None:
    await sign_up(w, "old@example.cz")
    w.clock.advance(days=2)
    await sign_up(w, "new@example.cz")
    w.clock.advance(SIGNUP_KEEP - timedelta(days=1))
    forget = newsletter_processing.forget_processed
    await forget(uow_factory=w.uow_factory, clock=w.clock, keep=timedelta(days=90))
    assert [r.email for r in w.store.state.signups.values()] == ["new@example.cz"]


async def test_a_customer_who_refused_marketing_is_not_paid_for_the_sign_up(w: World) -> None:
    await sign_up(w)
    zoe = Customer(
        merchant_id=w.shop.id,
        referral_code="ZOEZOEZO",
        created_at=w.clock.now(),
        updated_at=w.clock.now(),
        email="zoe@example.cz",
        marketing_consent=MarketingConsent.REFUSED,
    )
    async with w.uow_factory() as uow:
        await uow.customers.add(zoe)
        assert (
            await newsletter_signups.signup_for_new_customer(uow, w.shop, zoe, at=w.clock.now())
            is None
        )
        await uow.commit()
    assert next(iter(w.store.state.signups.values())).used_at is None
    assert len(w.notifications()) == 1


async def test_a_sign_up_no_longer_confirmed_when_the_customer_is_created_pays_nothing(
    w: World,
) -> None:
    await sign_up(w)
    w.clock.advance(days=3)
    w.ecomail.unsubscribe(LIST, "zoe@example.cz")  # Zoe left the list meanwhile
    zoe = await w.new_customer(w.shop, email="zoe@example.cz", registered=True)
    await w.work()
    assert w.balance(zoe) == Points(0)
    assert w.notifications()[-1].outcome is Outcome.UNCONFIRMED


async def test_a_customer_created_while_the_sign_up_is_confirmed_gets_it_processed(
    w: World,
) -> None:
    w.ecomail.add_member(LIST, "zoe@example.cz")
    await w.post("zoe@example.cz")
    membership = w.ecomail.membership
    made: list[Customer] = []

    async def customer_meanwhile(list_id: str, email: str) -> Membership | None:
        if not made:  # the shop creates Zoe while Ecomail is asked
            made.append(await w.new_customer(w.shop, email="zoe@example.cz", registered=True))
        return await membership(list_id, email)

    w.ecomail.membership = customer_meanwhile  # type: ignore[method-assign]
    assert await w.process() == 1  # waited once, then processed as Zoe's
    assert w.balance(made[0]) == REWARD
    assert w.store.state.signups == {}


# -- what changes nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "member_status", "says"),
    [
        ("SUBSCRIBED", SubscriptionStatus.UNSUBSCRIBED, "unsubscribed in the list now"),
        ("SUBSCRIBED", None, "no such contact"),
    ],
)
async def test_a_subscription_ecomail_does_not_confirm_changes_nothing(
    w: World, status: str, member_status: SubscriptionStatus | None, says: str
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    if member_status is None:
        del w.ecomail.contact_lists[LIST].members["ann@example.cz"]
    else:
        member = w.ecomail.member(LIST, "ann@example.cz")
        assert member is not None
        member.status = member_status
    await w.post("ann@example.cz", status)
    assert await w.process() == 1
    assert w.balance(ann) == Points(0)
    (row,) = w.notifications()
    assert row.outcome is Outcome.UNCONFIRMED and says in (row.reason or "")


async def test_a_double_optin_sign_up_waits_and_is_paid_once_the_person_confirms(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None
    member.status = SubscriptionStatus.UNCONFIRMED  # signed up on a double opt-in list
    await w.post("ann@example.cz")
    assert await w.process() == 0
    (row,) = w.notifications()
    assert row.state is NotificationState.PENDING and "double opt-in" in (row.reason or "")
    assert row.available_at == w.clock.now() + timedelta(minutes=5)
    assert row.attempts == 0  # waiting for the person, not a failure
    w.clock.advance(minutes=5)
    assert await w.process() == 0  # still unconfirmed: asked again later
    assert w.notifications()[0].available_at > w.clock.now()
    member.status = SubscriptionStatus.SUBSCRIBED  # Ann clicks the confirmation link
    w.clock.advance(hours=1)
    assert await w.process() == 1
    assert w.balance(ann) == REWARD
    assert w.outcomes() == [("ann@example.cz", Outcome.PAID)]
    assert w.ecomail.call_names.count("membership") == 3


async def test_a_double_optin_sign_up_never_confirmed_is_recorded_after_seven_days(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    member = w.ecomail.member(LIST, "ann@example.cz")
    assert member is not None
    member.status = SubscriptionStatus.UNCONFIRMED
    await w.post("ann@example.cz")
    settled = 0
    for _ in range(200):  # every hour for eight days, as the worker would wake
        settled += await w.process()
        w.clock.advance(hours=1)
    assert settled == 1 and w.balance(ann) == Points(0)
    (row,) = w.notifications()
    assert row.outcome is Outcome.UNCONFIRMED and "within 7 days" in (row.reason or "")
    assert 30 <= w.ecomail.call_names.count("membership") <= 45


async def test_an_unsubscription_ecomail_does_not_confirm_takes_nothing(w: World) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    await w.post("ann@example.cz", "UNSUBSCRIBED")  # forged: Ann is still subscribed
    await w.process()
    assert w.balance(ann) == REWARD
    assert w.notifications()[-1].outcome is Outcome.UNCONFIRMED


@pytest.mark.parametrize(
    ("email", "status", "list_id", "says"),
    [
        ("nobody@example.cz", "UNSUBSCRIBED", 1, "No customer"),
        ("ann@example.cz", "SUBSCRIBED", 2, "another list"),
        ("ann@example.cz", "SUBSCRIBED", "99", "another list"),
    ],
)
async def test_another_list_or_an_unknown_email_is_recorded_as_ignored(
    w: World, email: str, status: str, list_id: object, says: str
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post(email, status, list_id=list_id)
    assert await w.process() == 1
    assert w.balance(ann) == Points(0)
    (row,) = w.notifications()
    assert row.outcome is Outcome.IGNORED and says in (row.reason or "")
    assert w.ecomail.call_names == []


async def test_nothing_is_paid_while_the_reward_is_zero_or_the_integration_is_off(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.settings(newsletter_reward=Points(0))
    await w.post("ann@example.cz")
    await w.process()
    async with w.uow_factory() as uow:
        await uow.ecomail.deactivate(w.shop.id, at=w.clock.now())
        await uow.commit()
    await w.settings(newsletter_reward=REWARD)
    await w.post("ann@example.cz")
    await w.process()
    assert w.balance(ann) == Points(0)
    reasons = [r.reason for r in w.notifications()]
    assert "0 points" in (reasons[0] or "") and "not active" in (reasons[1] or "")


# -- Ecomail unavailable -------------------------------------------------------------------


async def test_a_notification_waits_while_ecomail_is_unavailable_and_is_paid_later(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    w.ecomail.fail_with = [
        MarketingUnavailable("Ecomail did not answer"),
        MarketingRateLimited("slow down", retry_after=90),
    ]
    assert await w.process() == 0
    (row,) = w.notifications()
    assert row.state is NotificationState.PENDING and "did not answer" in (row.reason or "")
    assert row.available_at == w.clock.now() + newsletter_processing.RETRY.delay(1, item_id=row.id)
    w.clock.advance(minutes=1)
    assert await w.process() == 0
    assert w.notifications()[0].available_at >= w.clock.now() + timedelta(seconds=90)
    w.clock.advance(minutes=2)
    assert await w.process() == 1
    assert w.balance(ann) == REWARD


async def test_the_activity_log_shows_the_latest_notifications_first(w: World) -> None:
    await w.form_subscriber("ann@example.cz")
    await w.post("ann@example.cz")
    await w.post("nobody@example.cz", "UNSUBSCRIBED")
    await w.process()
    panel = await newsletter_intake.newsletter_panel(w.shop.id, **w.common)
    assert panel.url == w.url and (panel.reward, panel.take_back) == (REWARD, True)
    assert [(r.notification.email, r.result) for r in panel.activity] == [
        ("nobody@example.cz", "ignored"),
        ("ann@example.cz", "paid 50"),
    ]
