"""The newsletter reward on the in-memory fakes: the webhook URL, receiving Ecomail's
notifications, and the worker confirming and applying them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.customer import Customer
from ellity.domain.model.integration import IntegrationNotReady
from ellity.domain.model.ledger import EntryKind
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    ECHO,
    MalformedNotification,
    NotificationState,
    Outcome,
    UnknownWebhook,
)
from ellity.domain.model.outbox import Topic
from ellity.domain.services import contact_sync, newsletter_intake, newsletter_processing
from ellity.domain.services.integration import activate_ecomail, connect_ecomail
from ellity.domain.services.points import spend_points
from ellity.ports.marketing import (
    MarketingRateLimited,
    MarketingUnavailable,
    Membership,
    SubscriptionStatus,
)
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import (
    FakeClock,
    FakeMarketingPlatform,
    FakeMarketingPlatforms,
    FakeRandom,
    FakeSecretBox,
    InMemoryStore,
    NotificationRow,
)
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
        found them in the list: it added no one)."""
        self.ecomail.add_member(LIST, email)
        customer = await self.new_customer(self.shop, email=email, registered=True)
        await self.sync()
        self.clock.advance(minutes=30)
        self.ecomail.calls.clear()
        return customer

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


async def test_the_echo_of_ellitys_own_add_pays_nothing_and_needs_no_confirmation(
    w: World,
) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.post("ann@example.cz")  # Ecomail's webhook may arrive before the add is recorded
    assert await w.process() == 0  # waits for the contact to be written
    assert w.notifications()[0].state is NotificationState.PENDING
    await w.sync()  # Ellity adds Ann to the list
    w.clock.advance(seconds=5)
    assert await w.process() == 1
    assert w.balance(ann) == Points(0)
    (row,) = w.notifications()
    assert (row.outcome, row.reason) == (Outcome.IGNORED, ECHO)
    assert w.ecomail.call_names == ["add_contacts"]


async def test_a_late_echo_is_recognised_by_ecomails_subscription_time(w: World) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.sync()
    w.clock.advance(hours=2)  # the webhook was delivered (or processed) much later
    await w.post("ann@example.cz")
    assert await w.process() == 1
    assert w.balance(ann) == Points(0)
    assert w.notifications()[0].reason == ECHO
    assert w.ecomail.call_names[-1] == "membership"


async def test_a_contact_ellity_added_who_subscribes_again_later_is_paid(w: World) -> None:
    ann = await w.new_customer(w.shop, email="ann@example.cz", registered=True)
    await w.sync()
    w.clock.advance(days=2)
    w.ecomail.unsubscribe(LIST, "ann@example.cz")
    w.clock.advance(days=1)
    w.ecomail.subscribe_again(LIST, "ann@example.cz")
    await w.post("ann@example.cz")
    await w.process()
    assert w.balance(ann) == REWARD


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
    ("email", "list_id", "says"),
    [
        ("nobody@example.cz", 1, "No customer"),
        ("ann@example.cz", 2, "another list"),
        ("ann@example.cz", "99", "another list"),
    ],
)
async def test_another_list_or_an_unknown_email_is_recorded_as_ignored(
    w: World, email: str, list_id: object, says: str
) -> None:
    ann = await w.form_subscriber("ann@example.cz")
    await w.post(email, list_id=list_id)
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
    await w.post("nobody@example.cz")
    await w.process()
    panel = await newsletter_intake.newsletter_panel(w.shop.id, **w.common)
    assert panel.url == w.url and (panel.reward, panel.take_back) == (REWARD, True)
    assert [(r.notification.email, r.result) for r in panel.activity] == [
        ("nobody@example.cz", "ignored"),
        ("ann@example.cz", "paid 50"),
    ]
