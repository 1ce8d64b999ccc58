"""Reconciling the Ecomail list with the ledger, on the in-memory fakes: each way the list can
change behind Ellity's back is repaired once, by the normal paths, and a second run finds
nothing; runs are claimed by one worker, resume after a crash, and are scheduled."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from ellity.domain.model.consent import EcomailAdd, MarketingConsent
from ellity.domain.model.contact import cleared_fields
from ellity.domain.model.customer import Customer
from ellity.domain.model.ledger import EntryKind
from ellity.domain.model.newsletter import Origin, Outcome
from ellity.domain.model.reconciliation import RepairKind, Schedule
from ellity.domain.services import reconciliation
from ellity.domain.services.reconciliation import ReconciliationNotPossible
from ellity.ports.marketing import SubscriptionStatus
from ellity.ports.storage.reconciliation import Phase, ReconciliationRun, Trigger
from tests.fakes import FakeJobQueue, FakeSecretBox
from tests.unit.test_newsletter_services import LIST, REWARD, World, w

__all__ = ["w"]  # the newsletter tests' world: a reward of 50 points, taken back


async def run(
    w: World, *, worker: str = "worker-1", per_page: int = 2, **kw: Any
) -> ReconciliationRun | None:
    return await reconciliation.run_reconciliation(
        w.shop.id,
        uow_factory=w.uow_factory,
        platforms=w.platforms,
        secret_box=FakeSecretBox(),
        clock=w.clock,
        worker_token=worker,
        per_page=per_page,
        sleep=_no_sleep,
        **kw,
    )


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


async def reconcile(w: World, **kw: Any) -> ReconciliationRun:
    """A run requested and worked through to its end."""
    await reconciliation.request_run(
        w.shop.id,
        trigger=Trigger.MERCHANT,
        uow_factory=w.uow_factory,
        clock=w.clock,
        queue=FakeJobQueue(),
    )
    finished = await run(w, **kw)
    assert finished is not None and finished.finished, finished
    return finished


async def repairs(w: World, finished: ReconciliationRun) -> list[tuple[RepairKind, str]]:
    async with w.uow_factory(read_only=True) as uow:
        made = await uow.reconciliation.repairs(w.shop.id, finished.id, limit=100)
    return sorted((r.kind, r.email) for r in made)


async def settled(w: World) -> None:
    """What the worker does next: write the contacts, process the notifications, again."""
    for _ in range(3):
        await w.work()
        w.clock.advance(seconds=5)


async def customers_in_sync(w: World, *emails: str) -> list[Customer]:
    made = []
    for email in emails:
        made.append(await w.new_customer(w.shop, email=email, registered=True))
    await settled(w)
    return made


async def test_a_list_in_step_with_ellity_needs_nothing(w: World) -> None:
    await customers_in_sync(w, "ann@shop.cz", "bob@shop.cz", "cid@shop.cz")
    w.ecomail.add_member(LIST, "stranger@mail.cz")  # no Ellity values: not Ellity's business
    finished = await reconcile(w)
    assert finished.error is None and finished.phase is Phase.DONE
    assert finished.expected == 4 and finished.checked == 4
    assert finished.repairs.total == 0
    # 5 counts, 2 pages of subscribed and one page of each other status
    assert finished.api_calls == 5 + 2 + 4


async def test_fields_edited_by_hand_are_written_again_and_only_those(w: World) -> None:
    ann, bob, _ = await customers_in_sync(w, "ann@shop.cz", "bob@shop.cz", "cid@shop.cz")
    right = dict(w.ecomail.member(LIST, "ann@shop.cz").fields)
    w.ecomail.member(LIST, "ann@shop.cz").fields["ellity_credit"] = "999 999"
    w.ecomail.member(LIST, "bob@shop.cz").fields.pop("ellity_referral_link")
    finished = await reconcile(w)
    assert await repairs(w, finished) == [
        (RepairKind.FIELDS, "ann@shop.cz"),
        (RepairKind.FIELDS, "bob@shop.cz"),
    ]
    assert finished.repairs.fields == 2
    await settled(w)
    assert w.ecomail.member(LIST, "ann@shop.cz").fields == right
    assert "ellity_referral_link" in w.ecomail.member(LIST, "bob@shop.cz").fields
    assert (await reconcile(w)).repairs.total == 0
    del ann, bob  # their contacts are checked through the list


async def test_a_deleted_member_whom_ellity_may_add_is_added_again(w: World) -> None:
    await customers_in_sync(w, "ann@shop.cz", "bob@shop.cz")
    del w.ecomail.contact_lists[LIST].members["bob@shop.cz"]
    finished = await reconcile(w)
    assert await repairs(w, finished) == [(RepairKind.ADDED, "bob@shop.cz")]
    await settled(w)
    assert w.ecomail.member(LIST, "bob@shop.cz") is not None
    assert (await reconcile(w)).repairs.total == 0


async def test_a_deleted_member_whom_ellity_may_not_add_stays_out(w: World) -> None:
    (ann,) = await customers_in_sync(w, "ann@shop.cz")
    await w.settings(ecomail_add=EcomailAdd.CONSENTED)  # ann's consent is unknown
    del w.ecomail.contact_lists[LIST].members["ann@shop.cz"]
    finished = await reconcile(w)
    assert finished.repairs.total == 0
    await settled(w)
    assert w.ecomail.member(LIST, "ann@shop.cz") is None
    assert ann.id is not None
    assert not w.store.state.contacts[ann.id].in_list  # no longer believed to be in the list


async def test_an_unsubscription_through_the_api_is_recorded_and_the_reward_taken_back(
    w: World,
) -> None:
    ann = await w.form_subscriber("ann@shop.cz")
    await w.post("ann@shop.cz")  # her sign-up, paid
    await settled(w)
    assert w.balance(ann) == REWARD
    w.ecomail.unsubscribe(LIST, "ann@shop.cz")  # e.g. another tool's API call: no webhook
    finished = await reconcile(w)
    assert await repairs(w, finished) == [(RepairKind.UNSUBSCRIBED, "ann@shop.cz")]
    await settled(w)
    assert w.customer(ann).marketing_consent is MarketingConsent.REFUSED
    assert w.balance(ann).hundredths == 0
    assert w.kinds(ann).count(EntryKind.NEWSLETTER_DEDUCTION) == 1
    found = [n for n in w.notifications() if n.notification.origin is Origin.RECONCILIATION]
    assert [(n.notification.email, n.outcome) for n in found] == [("ann@shop.cz", Outcome.DEDUCTED)]
    assert (await reconcile(w)).repairs.total == 0


@pytest.mark.parametrize("status", [SubscriptionStatus.HARD_BOUNCED, SubscriptionStatus.COMPLAINED])
async def test_a_bounce_or_a_complaint_counts_as_an_unsubscription(
    w: World, status: SubscriptionStatus
) -> None:
    ann = await w.form_subscriber("ann@shop.cz")
    await w.post("ann@shop.cz")
    await settled(w)
    w.ecomail.member(LIST, "ann@shop.cz").status = status
    finished = await reconcile(w)
    assert await repairs(w, finished) == [(RepairKind.UNSUBSCRIBED, "ann@shop.cz")]
    await settled(w)
    assert w.customer(ann).marketing_consent is MarketingConsent.REFUSED
    assert w.balance(ann).hundredths == 0
    assert (await reconcile(w)).repairs.total == 0


async def test_a_sign_up_whose_notification_was_lost_is_paid_once(w: World) -> None:
    await w.settings(ecomail_add=EcomailAdd.NONE)  # Ellity adds nobody itself
    (ann,) = await customers_in_sync(w, "ann@shop.cz")
    w.clock.advance(hours=1)
    w.ecomail.add_member(LIST, "ann@shop.cz")  # she signs up; the notification never comes
    finished = await reconcile(w)
    assert await repairs(w, finished) == [(RepairKind.SIGNUP, "ann@shop.cz")]
    await settled(w)
    assert w.balance(ann) == REWARD
    assert w.customer(ann).marketing_consent is MarketingConsent.GRANTED
    assert (await reconcile(w)).repairs.total == 0
    assert w.balance(ann) == REWARD


async def test_a_confirmed_double_opt_in_is_paid_once(w: World) -> None:
    await w.settings(ecomail_add=EcomailAdd.NONE)
    (ann,) = await customers_in_sync(w, "ann@shop.cz")
    w.clock.advance(hours=1)
    w.ecomail.add_member(LIST, "ann@shop.cz", status=SubscriptionStatus.UNCONFIRMED)
    await w.post("ann@shop.cz")
    w.clock.advance(days=40)  # Ellity stopped asking: recorded as unconfirmed
    await settled(w)
    assert w.outcomes()[-1] == ("ann@shop.cz", Outcome.UNCONFIRMED)
    member = w.ecomail.member(LIST, "ann@shop.cz")
    assert member is not None
    member.status, member.subscribed_at = SubscriptionStatus.SUBSCRIBED, w.clock.now()
    finished = await reconcile(w)
    assert await repairs(w, finished) == [(RepairKind.CONFIRMED, "ann@shop.cz")]
    await settled(w)
    assert w.balance(ann) == REWARD
    assert (await reconcile(w)).repairs.total == 0


async def test_ellitys_own_add_is_no_sign_up(w: World) -> None:
    (ann,) = await customers_in_sync(w, "ann@shop.cz")  # added by Ellity's sync
    finished = await reconcile(w)
    assert finished.repairs.total == 0
    assert w.balance(ann).hundredths == 0


async def test_a_member_with_ellity_values_and_no_customer_is_cleared(w: World) -> None:
    await customers_in_sync(w, "ann@shop.cz")
    w.ecomail.add_member(
        LIST, "gone@shop.cz", fields={"ellity_credit": "120", "ellity_credit_num": 120}
    )
    finished = await reconcile(w)
    assert await repairs(w, finished) == [(RepairKind.CLEARED, "gone@shop.cz")]
    gone = w.ecomail.member(LIST, "gone@shop.cz")
    assert gone is not None and gone.status is SubscriptionStatus.SUBSCRIBED
    assert {k: gone.fields[k] for k in cleared_fields()} == cleared_fields()
    assert (await reconcile(w)).repairs.total == 0


async def test_two_workers_never_run_the_same_run(w: World) -> None:
    await customers_in_sync(w, "ann@shop.cz", "bob@shop.cz", "cid@shop.cz")
    await reconciliation.request_run(
        w.shop.id,
        trigger=Trigger.SCHEDULE,
        uow_factory=w.uow_factory,
        clock=w.clock,
        queue=FakeJobQueue(),
    )
    one, two = await asyncio.gather(run(w, worker="w1"), run(w, worker="w2"))
    done = [r for r in (one, two) if r is not None]
    assert len(done) == 1 and done[0].finished
    assert done[0].checked == 3


async def test_a_run_killed_in_the_middle_goes_on_from_its_page(w: World) -> None:
    emails = [f"c{n}@shop.cz" for n in range(7)]
    await customers_in_sync(w, *emails)
    for email in emails:
        w.ecomail.member(LIST, email).fields["ellity_credit"] = "0,01"
    await reconciliation.request_run(
        w.shop.id,
        trigger=Trigger.MERCHANT,
        uow_factory=w.uow_factory,
        clock=w.clock,
        queue=FakeJobQueue(),
    )

    class Killed(Exception):
        pass

    seen: list[ReconciliationRun] = []

    async def die_after_two_pages(progress: ReconciliationRun) -> None:
        seen.append(progress)
        if progress.checked >= 4:
            raise Killed

    with pytest.raises(Killed):
        await run(w, worker="w1", progress=die_after_two_pages)
    assert seen[-1].page == 3 and seen[-1].checked == 4
    reads_before = w.ecomail.call_names.count("members")
    assert await run(w, worker="w2") is None  # the dead worker's claim still holds
    w.clock.advance(minutes=3)
    finished = await run(w, worker="w2")
    assert finished is not None and finished.finished
    assert finished.checked == 7 and finished.repairs.fields == 7
    # pages 3 and 4 of the subscribed members, then one page of each other status
    assert w.ecomail.call_names.count("members") - reads_before == 2 + 4


async def test_the_run_uses_its_share_of_the_request_budget(w: World) -> None:
    await customers_in_sync(w, "ann@shop.cz")
    await reconcile(w, share=0.25)
    assert [s for s in w.platforms.shares_asked if s is not None] == [0.25]


async def test_a_run_needs_an_active_integration(w: World) -> None:
    async with w.uow_factory() as uow:
        await uow.ecomail.deactivate(w.shop.id, at=w.clock.now())
        await uow.commit()
    with pytest.raises(ReconciliationNotPossible):
        await reconciliation.request_run(
            w.shop.id,
            trigger=Trigger.MERCHANT,
            uow_factory=w.uow_factory,
            clock=w.clock,
            queue=FakeJobQueue(),
        )


async def test_the_schedule_requests_a_run_a_week_after_the_last_and_queues_it(w: World) -> None:
    queue = FakeJobQueue()
    tick: dict[str, Any] = {"uow_factory": w.uow_factory, "clock": w.clock, "queue": queue}
    assert await reconciliation.queue_due_runs(**tick) == []
    w.clock.advance(days=7)
    assert await reconciliation.queue_due_runs(**tick) == [w.shop.id]
    assert queue.take_reconciliations() == [w.shop.id]
    assert await reconciliation.queue_due_runs(**tick) == [w.shop.id]  # not held yet: again
    finished = await run(w)
    assert finished is not None and finished.finished
    assert await reconciliation.queue_due_runs(**tick) == []
    w.clock.advance(days=6)
    assert await reconciliation.queue_due_runs(**tick) == []
    await w.settings(ecomail_reconcile=Schedule.DAILY)
    assert await reconciliation.queue_due_runs(**tick) == [w.shop.id]
    await w.settings(ecomail_reconcile=Schedule.OFF)
    w.clock.advance(days=30)
    async with w.uow_factory() as uow:
        held = await uow.reconciliation.unfinished(w.shop.id)
        assert held is not None
    finished = await run(w)
    assert await reconciliation.queue_due_runs(**tick) == []


async def test_repairs_are_forgotten_after_the_time_kept_and_the_runs_keep_their_counts(
    w: World,
) -> None:
    await customers_in_sync(w, "ann@shop.cz")
    w.ecomail.member(LIST, "ann@shop.cz").fields["ellity_credit"] = "1"
    finished = await reconcile(w)
    keep = timedelta(days=90)
    tidy: dict[str, Any] = {"uow_factory": w.uow_factory, "clock": w.clock, "keep": keep}
    assert await reconciliation.forget_repairs(**tidy) == 0
    w.clock.advance(days=91)
    assert await reconciliation.forget_repairs(**tidy) == 1
    assert await repairs(w, finished) == []
    async with w.uow_factory(read_only=True) as uow:
        kept = await uow.reconciliation.get(w.shop.id, finished.id)
    assert kept is not None and kept.repairs.fields == 1
