"""The first-run checklist on the dashboard: each step is done on its own fact, and the list is
complete only when all five are."""

from __future__ import annotations

import dataclasses

import pytest

from ellity.domain.model.first_run import SetupFacts, SetupStep, checklist
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.newsletter import Notification, SubscriptionChange
from ellity.domain.services import dashboard
from ellity.domain.services.api_tokens import create_api_token, revoke_api_token
from tests.fakes import FakeClock, FakeRandom, InMemoryStore

NOTHING = SetupFacts(
    api_token=False, ecomail_active=False, notification_received=False, test_email_sent=False
)


@pytest.mark.parametrize(
    ("shop_url", "facts", "done"),
    [
        ("", NOTHING, set()),
        ("https://shop.example.cz", NOTHING, {SetupStep.SHOP_ADDRESS}),
        ("", dataclasses.replace(NOTHING, api_token=True), {SetupStep.API_TOKEN}),
        ("", dataclasses.replace(NOTHING, ecomail_active=True), {SetupStep.ECOMAIL}),
        ("", dataclasses.replace(NOTHING, notification_received=True), {SetupStep.WEBHOOK}),
        ("", dataclasses.replace(NOTHING, test_email_sent=True), {SetupStep.TEST_EMAIL}),
    ],
)
def test_each_step_is_done_on_its_own_fact(
    shop_url: str, facts: SetupFacts, done: set[SetupStep]
) -> None:
    steps = checklist(shop_url=shop_url, facts=facts)
    assert {step for step, is_done in steps.steps if is_done} == done
    assert steps.done == len(done)
    assert not steps.complete


def test_the_steps_come_in_the_order_a_programme_is_set_up_and_all_done_is_complete() -> None:
    everything = SetupFacts(
        api_token=True, ecomail_active=True, notification_received=True, test_email_sent=True
    )
    steps = checklist(shop_url="https://shop.example.cz", facts=everything)
    assert [step for step, _ in steps.steps] == [
        SetupStep.SHOP_ADDRESS,
        SetupStep.API_TOKEN,
        SetupStep.ECOMAIL,
        SetupStep.WEBHOOK,
        SetupStep.TEST_EMAIL,
    ]
    assert steps.complete


def done_steps(board: dashboard.Dashboard) -> set[SetupStep]:
    return {step for step, is_done in board.checklist.steps if is_done}


async def test_the_dashboard_reads_each_step_from_what_is_stored(
    store: InMemoryStore,
    merchant: Merchant,
    other_merchant: Merchant,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    assert merchant.id is not None and other_merchant.id is not None

    async def board() -> dashboard.Dashboard:
        assert merchant.id is not None
        return await dashboard.dashboard(
            merchant.id, uow=store.unit_of_work(read_only=True), clock=clock
        )

    assert done_steps(await board()) == {SetupStep.SHOP_ADDRESS}  # the fixture's shop URL

    # another merchant's setup counts for nothing here
    await create_api_token(
        other_merchant.id, "shop", uow=store.unit_of_work(), clock=clock, rng=rng
    )
    async with store.unit_of_work() as uow:
        await uow.ecomail.save_key(other_merchant.id, encrypted="k", hint="abcd", at=clock.now())
        await uow.ecomail.activate(other_merchant.id, list_id="1", list_name="L", at=clock.now())
        await uow.newsletter.enqueue(
            other_merchant.id,
            Notification("ann@example.cz", SubscriptionChange.SUBSCRIBED, "1"),
            received_at=clock.now(),
            at=clock.now(),
        )
        await uow.merchants.record_test_email(other_merchant.id, at=clock.now())
        await uow.commit()
    assert done_steps(await board()) == {SetupStep.SHOP_ADDRESS}

    # a revoked token is no token
    token, _ = await create_api_token(
        merchant.id, "shop", uow=store.unit_of_work(), clock=clock, rng=rng
    )
    await revoke_api_token(merchant.id, token.id, uow=store.unit_of_work(), clock=clock)
    assert SetupStep.API_TOKEN not in done_steps(await board())
    await create_api_token(merchant.id, "shop", uow=store.unit_of_work(), clock=clock, rng=rng)
    assert done_steps(await board()) == {SetupStep.SHOP_ADDRESS, SetupStep.API_TOKEN}

    # a key alone is not a connection: the integration must be active
    async with store.unit_of_work() as uow:
        await uow.ecomail.save_key(merchant.id, encrypted="k", hint="abcd", at=clock.now())
        await uow.commit()
    assert SetupStep.ECOMAIL not in done_steps(await board())
    async with store.unit_of_work() as uow:
        await uow.ecomail.activate(merchant.id, list_id="1", list_name="L", at=clock.now())
        await uow.commit()
    assert SetupStep.ECOMAIL in done_steps(await board())

    async with store.unit_of_work() as uow:
        await uow.newsletter.enqueue(
            merchant.id,
            Notification("ann@example.cz", SubscriptionChange.SUBSCRIBED, "1"),
            received_at=clock.now(),
            at=clock.now(),
        )
        await uow.commit()
    assert SetupStep.WEBHOOK in done_steps(await board())
    assert not (await board()).checklist.complete

    async with store.unit_of_work() as uow:
        await uow.merchants.record_test_email(merchant.id, at=clock.now())
        await uow.commit()
    assert (await board()).checklist.complete
