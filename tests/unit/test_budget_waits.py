"""A long wait for Ellity's Ecomail request budget, on the in-memory fakes and a controllable
clock: the outbox events, the contacts and the newsletter notifications all wait for it
without counting an attempt, for as long as it takes, and nothing is marked failed."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import NotificationState
from ellity.domain.model.outbox import OutboxStatus, Topic
from ellity.domain.services import contact_sync, delivery, newsletter_intake, newsletter_processing
from ellity.domain.services.integration import activate_ecomail, connect_ecomail
from ellity.domain.services.points import earn_points
from tests.fakes import (
    FakeClock,
    FakeMailer,
    FakeMarketingPlatforms,
    FakeRandom,
    FakeSecretBox,
    FakeSpendingBudget,
    InMemoryStore,
)
from tests.unit.conftest import NewCustomer

KEY = "ecomail-key-0001"
LIST = "1"
BACKLOG = timedelta(hours=5)
SLOT = timedelta(minutes=30)  # the budget frees a slot this often: 10 calls in the 5 hours
STEP = timedelta(minutes=5)  # a worker round this often


async def test_a_five_hour_wait_for_the_request_budget_fails_nothing_and_counts_no_attempt(  # noqa: PLR0917 - fixtures
    merchant: Merchant,
    store: InMemoryStore,
    clock: FakeClock,
    rng: FakeRandom,
    new_customer: NewCustomer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uow_factory, secret_box = store.unit_of_work, FakeSecretBox()
    platforms = FakeMarketingPlatforms(clock)
    ecomail = platforms.add_account(KEY)
    ecomail.add_list("Customers", list_id=LIST)
    services: dict[str, Any] = {
        "uow_factory": uow_factory,
        "platforms": platforms,
        "secret_box": secret_box,
        "clock": clock,
    }
    await connect_ecomail(merchant.id, KEY, **services)
    await activate_ecomail(merchant.id, LIST, **services)
    async with uow_factory() as uow:
        settings = dataclasses.replace(
            merchant.settings, ecomail_add=EcomailAdd.CUSTOMERS, newsletter_reward=Points(50)
        )
        await uow.merchants.update_settings(merchant.id, settings)
        await uow.commit()
    url = await newsletter_intake.webhook_address(
        merchant.id,
        uow_factory=uow_factory,
        secret_box=secret_box,
        rng=rng,
        clock=clock,
        base_url="https://ellity.example.cz",
    )

    async def work() -> None:
        """One worker round: contacts, then the outbox, then the notifications."""
        await contact_sync.sync_contacts(worker_token="worker-1", **services)
        await delivery.deliver_pending(
            mailer=FakeMailer(), worker_token="worker-1", limit=100, **services
        )
        await newsletter_processing.process_notifications(worker_token="worker-1", **services)

    # Ten customers in the list while the budget is free.
    customers = [
        await new_customer(merchant, email=f"c{n}@example.cz", registered=True) for n in range(10)
    ]
    await work()
    assert len(ecomail.contact_lists[LIST].members) == 10
    clock.advance(hours=1)

    # Then the budget runs short: a slot every 30 minutes, for five hours, while every
    # customer earns (an event and a contact write each) and five newsletter sign-ups arrive.
    budget = ecomail.budget = FakeSpendingBudget(clock, spacing=SLOT)
    for n, customer in enumerate(customers):
        assert customer.id is not None
        await earn_points(
            merchant.id,
            customer.id,
            Points(10),
            order_ref=f"o-{n}",
            uow=uow_factory(),
            clock=clock,
        )
    token = url.rsplit("/", 1)[1]
    for n in range(5):
        payload = {"email": f"c{n}@example.cz", "status": "SUBSCRIBED", "listId": 1}
        await newsletter_intake.receive_notification(
            token,
            json.dumps({"payload": payload}).encode(),
            uow_factory=uow_factory,
            clock=clock,
        )
    caplog.set_level(logging.DEBUG, logger="ellity")
    start = clock.now()
    while clock.now() < start + BACKLOG:
        await work()
        clock.advance(STEP)

    state = store.state
    events = [r for r in state.outbox.values() if r.topic == Topic.ECOMAIL_EVENT.value]
    waiting = [r for r in events if r.status == OutboxStatus.PENDING.value]
    assert budget.refused > 50  # the queues asked again and again
    assert waiting, "the backlog is not drained after five hours"
    assert all(r.attempts == 0 for r in waiting), "a wait for the budget counted an attempt"
    assert all(r.status != OutboxStatus.FAILED.value for r in events)
    assert all(c.attempts == 0 and c.failed_at is None for c in state.contacts.values())
    notifications = list(state.notifications.values())
    assert all(r.attempts == 0 for r in notifications if r.state is NotificationState.PENDING), (
        "a wait for the budget counted an attempt"
    )
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], "budget waits are logged at DEBUG"
    assert any("request budget" in r.getMessage() for r in caplog.records)

    # The budget comes back: everything is delivered, nothing failed.
    ecomail.budget = None
    for _ in range(10):
        await work()
        clock.advance(STEP)
    state = store.state
    events = [r for r in state.outbox.values() if r.topic == Topic.ECOMAIL_EVENT.value]
    assert {r.status for r in events} == {OutboxStatus.DELIVERED.value}
    assert all(r.attempts == 1 for r in events)  # the claim that delivered it
    assert len(ecomail.events) == len(events)
    assert all(c.pending_since is None and c.failed_at is None for c in state.contacts.values())
    notifications = list(state.notifications.values())
    assert {r.state for r in notifications} == {NotificationState.PROCESSED}
