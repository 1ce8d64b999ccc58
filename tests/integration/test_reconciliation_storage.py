"""The reconciliation storage contract, on the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

from ellity.domain.model.consent import EcomailAdd, MarketingConsent
from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    Notification,
    Origin,
    Outcome,
    RewardHold,
    SubscriptionChange,
)
from ellity.domain.model.reason import Reason
from ellity.domain.model.reconciliation import RepairKind, Schedule
from ellity.ports.storage import UnitOfWorkFactory
from ellity.ports.storage.reconciliation import Phase, Repair, Trigger
from tests import consenting
from tests.fakes import FakeClock
from tests.integration.test_contact_sync_storage import (
    NOW,
    add_customers,
    add_merchant,
    claim,
    connect,
    mark,
    settle,
)

LEASE = timedelta(minutes=2)
TODAY = date(2024, 3, 10)
WHY = Reason("Its Ellity fields in Ecomail differ from the customer's: %(fields)s.", fields="x")


async def request(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *, at: datetime = NOW
) -> tuple[int, bool]:
    async with uow_factory() as uow:
        made = await uow.reconciliation.request(merchant_id, "7", trigger=Trigger.MERCHANT, at=at)
        await uow.commit()
    return made


async def claim_run(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, token: str, *, now: datetime = NOW
) -> int | None:
    async with uow_factory() as uow:
        run = await uow.reconciliation.claim(merchant_id, token=token, now=now, until=now + LEASE)
        await uow.commit()
    return None if run is None else run.id


async def set_consent(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_id: CustomerId,
    consent: MarketingConsent,
    *,
    at: datetime = NOW,
) -> None:
    await consenting.set_consent(
        uow_factory, merchant_id, customer_id, consent, clock=FakeClock(at)
    )


async def written(uow_factory: UnitOfWorkFactory, shop: MerchantId) -> None:
    """Every pending contact written (none pending any more)."""
    await settle(uow_factory, shop, await _claimed(uow_factory, shop), "c")


async def test_a_merchant_has_one_unfinished_run_at_a_time(uow_factory: UnitOfWorkFactory) -> None:
    shop, other = await add_merchant(uow_factory), await add_merchant(uow_factory, "other")
    first, created = await request(uow_factory, shop)
    assert created
    assert await request(uow_factory, shop) == (first, False)
    assert (await request(uow_factory, other))[1]
    assert await claim_run(uow_factory, shop, "w1") == first
    async with uow_factory() as uow:
        assert await uow.reconciliation.finish(first, token="w1", at=NOW)
        await uow.commit()
    second, created = await request(uow_factory, shop, at=NOW + timedelta(1))
    assert created and second != first
    async with uow_factory(read_only=True) as uow:
        latest = await uow.reconciliation.latest(shop, limit=10)
        assert [r.id for r in latest] == [second, first]
        assert latest[1].finished and latest[1].phase is Phase.DONE
        assert (await uow.reconciliation.unfinished(shop)).id == second
        assert await uow.reconciliation.get(other, first) is None  # another merchant's run


async def test_a_run_is_held_by_one_claim_until_its_lease_runs_out(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    run_id, _ = await request(uow_factory, shop)
    assert await claim_run(uow_factory, shop, "w1") == run_id
    assert await claim_run(uow_factory, shop, "w2", now=NOW + timedelta(seconds=60)) is None
    async with uow_factory(read_only=True) as uow:
        assert await uow.reconciliation.claimable(now=NOW + timedelta(seconds=60)) == []
        assert await uow.reconciliation.claimable(now=NOW + LEASE) == [shop]
    # the first worker died: the second takes the run over where it was
    assert await claim_run(uow_factory, shop, "w2", now=NOW + LEASE) == run_id
    async with uow_factory() as uow:
        lost = uow.reconciliation
        assert not await lost.renew(run_id, token="w1", until=NOW + 2 * LEASE)
        assert not await lost.start(run_id, token="w1", expected=5, at=NOW)
        assert not await lost.finish(run_id, token="w1", at=NOW)
        assert await lost.start(run_id, token="w2", expected=5, at=NOW + LEASE)
        assert await lost.release(run_id, token="w2", available_at=NOW + 3 * LEASE)
        await uow.commit()
    assert await claim_run(uow_factory, shop, "w3", now=NOW + 2 * LEASE) is None  # waits
    assert await claim_run(uow_factory, shop, "w3", now=NOW + 3 * LEASE) == run_id
    async with uow_factory(read_only=True) as uow:
        run = await uow.reconciliation.get(shop, run_id)
    assert run is not None and run.expected == 5 and run.started_at == NOW + LEASE


async def test_page_facts_say_what_decides_each_members_repairs(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await add_merchant(uow_factory), await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    ann, bob, eve = await add_customers(
        uow_factory, shop, "Ann@Shop.cz", "bob@shop.cz", "eve@shop.cz"
    )
    (stranger,) = await add_customers(uow_factory, other, "zed@shop.cz", first=10)
    await set_consent(uow_factory, shop, ann, MarketingConsent.GRANTED)
    await written(uow_factory, shop)
    await mark(uow_factory, shop, bob)  # a write waits
    async with uow_factory() as uow:
        await uow.contacts.record_add_attempts(shop, [eve], at=NOW)
        await uow.newsletter.save_reward_hold(
            shop, ann, RewardHold(outstanding=Points(5000), paid_at=NOW), at=NOW
        )
        pending = Notification("bob@shop.cz", SubscriptionChange.UNSUBSCRIBED, "7")
        await uow.newsletter.enqueue(shop, pending, received_at=NOW, at=NOW)
        await uow.commit()
    keys = [
        email_key(e) or ""
        for e in ("ann@shop.cz", "BOB@shop.cz", "eve@shop.cz", "zed@shop.cz", "no@one.cz")
    ]
    async with uow_factory(read_only=True) as uow:
        facts = await uow.reconciliation.page_facts(shop, keys, today=TODAY)
    assert sorted(facts.customers) == ["ann@shop.cz", "bob@shop.cz", "eve@shop.cz"]
    a, b, e = (facts.customers[k] for k in ("ann@shop.cz", "bob@shop.cz", "eve@shop.cz"))
    assert a.loyalty.customer_id == ann and a.loyalty.email == "Ann@Shop.cz"
    assert a.loyalty.marketing_consent is MarketingConsent.GRANTED
    assert a.consent_changed_at == NOW
    assert a.reward_held and not a.write_pending and not a.added_by_ellity
    assert b.write_pending and b.notification_pending and not b.reward_held
    assert e.added_by_ellity and not e.write_pending and not e.notification_pending
    assert stranger not in {c.loyalty.customer_id for c in facts.customers.values()}


async def test_page_facts_know_an_unconfirmed_sign_up_and_an_address_left_behind(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    (ann,) = await add_customers(uow_factory, shop, "ann@shop.cz")
    await mark(uow_factory, shop, ann)
    await written(uow_factory, shop)  # written to the address it then leaves
    async with uow_factory() as uow:
        signup = Notification("ann@shop.cz", SubscriptionChange.SUBSCRIBED, "7")
        note_id = await uow.newsletter.enqueue(shop, signup, received_at=NOW, at=NOW)
        await uow.contacts.mark_moved(shop, ann, old_email="old@shop.cz", at=NOW)
        await uow.commit()
    async with uow_factory() as uow:
        (claimed,) = await uow.newsletter.claim(token="n", now=NOW, lease=LEASE, limit=5)
        assert claimed.id == note_id
        await uow.newsletter.settle(
            note_id,
            token="n",
            outcome=Outcome.UNCONFIRMED,
            reason=Reason("not yet"),
            points=None,
            customer_id=ann,
            at=NOW,
        )
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        facts = await uow.reconciliation.page_facts(
            shop, ["ann@shop.cz", "old@shop.cz"], today=TODAY
        )
    assert facts.customers["ann@shop.cz"].signup_unconfirmed
    assert not facts.customers["ann@shop.cz"].notification_pending
    assert facts.old_addresses == frozenset({"old@shop.cz"})


async def test_a_recorded_page_marks_the_members_seen_counts_its_repairs_and_moves_on(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@shop.cz", "bob@shop.cz")
    run_id, _ = await request(uow_factory, shop)
    await claim_run(uow_factory, shop, "w1")
    repairs = [
        Repair(RepairKind.FIELDS, "ann@shop.cz", WHY, ann),
        Repair(RepairKind.FIELDS, "bob@shop.cz", WHY, bob),
        Repair(RepairKind.CLEARED, "gone@shop.cz", WHY),
    ]
    async with uow_factory() as uow:
        recorded = await uow.reconciliation.record_page(
            run_id,
            token="w1",
            merchant_id=shop,
            seen=[(ann, 1), (bob, 2)],
            repairs=repairs,
            status_index=1,
            page=1,
            phase=Phase.READ,
            checked=3,
            api_calls=2,
            at=NOW,
        )
        assert recorded
        lost = await uow.reconciliation.record_page(
            run_id,
            token="w2",
            merchant_id=shop,
            seen=[(ann, 1)],
            repairs=repairs,
            status_index=4,
            page=9,
            phase=Phase.SWEEP,
            checked=100,
            api_calls=100,
            at=NOW,
        )
        assert not lost
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        run = await uow.reconciliation.get(shop, run_id)
        listed = await uow.reconciliation.repairs(shop, run_id, limit=10)
        anns = await uow.reconciliation.customer_repairs(shop, ann, limit=10)
    assert run is not None
    assert (run.status_index, run.page, run.phase, run.checked, run.api_calls) == (
        1,
        1,
        Phase.READ,
        3,
        2,
    )
    assert run.repairs.fields == 2 and run.repairs.cleared == 1 and run.repairs.total == 3
    assert [r.email for r in listed] == ["gone@shop.cz", "bob@shop.cz", "ann@shop.cz"]
    assert listed[0].customer_id is None and listed[0].reason == WHY
    assert [(r.kind, r.customer_id) for r in anns] == [(RepairKind.FIELDS, ann)]
    async with uow_factory() as uow:
        assert await uow.reconciliation.purge_repairs(before=NOW) == 0
        assert await uow.reconciliation.purge_repairs(before=NOW + timedelta(seconds=1)) == 3
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.reconciliation.repairs(shop, run_id, limit=10) == []
        kept = await uow.reconciliation.get(shop, run_id)
    assert kept is not None and kept.repairs.total == 3  # the run keeps its counts


async def test_the_sweep_finds_the_customers_the_list_lacks(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    seen, missing, refused, waiting, no_email, late = await add_customers(
        uow_factory,
        shop,
        "seen@shop.cz",
        "missing@shop.cz",
        "refused@shop.cz",
        "waiting@shop.cz",
        None,
        "late@shop.cz",
    )
    for customer_id in (seen, missing, late):
        await set_consent(uow_factory, shop, customer_id, MarketingConsent.GRANTED)
    await set_consent(uow_factory, shop, refused, MarketingConsent.REFUSED)
    await set_consent(uow_factory, shop, waiting, MarketingConsent.GRANTED)
    # all were written once and are known to be in the list
    await mark(uow_factory, shop, seen, missing, refused, late)
    await written(uow_factory, shop)
    await mark(uow_factory, shop, waiting)  # its write waits: the run cannot judge it
    started = NOW + timedelta(hours=1)
    run_id, _ = await request(uow_factory, shop, at=started)
    await claim_run(uow_factory, shop, "w1", now=started)
    async with uow_factory() as uow:
        await uow.reconciliation.start(run_id, token="w1", expected=1, at=started)
        await uow.reconciliation.record_page(
            run_id,
            token="w1",
            merchant_id=shop,
            seen=[(seen, 1)],
            repairs=[],
            status_index=5,
            page=1,
            phase=Phase.SWEEP,
            checked=1,
            api_calls=1,
            at=started,
        )
        await uow.commit()
    # written again after the run began: the run could not see it, so it is left alone
    async with uow_factory() as uow:
        await uow.contacts.record_written(shop, late, added_at=None, at=started + timedelta(1))
        await uow.commit()
    chunks = []
    after = CustomerId(0)
    while True:
        async with uow_factory() as uow:
            chunk = await uow.reconciliation.sweep(
                run_id,
                token="w1",
                merchant_id=shop,
                setting=EcomailAdd.CONSENTED,
                after_id=after,
                limit=2,
                since=started,
            )
            await uow.commit()
        assert chunk is not None
        if chunk.last_id is None:
            break
        chunks.append(chunk)
        after = chunk.last_id
    found = [m for c in chunks for m in c.missing]
    assert found == [(missing, "missing@shop.cz")]
    assert len(chunks) == 3  # six customers, two at a time
    async with uow_factory() as uow:
        assert (
            await uow.reconciliation.sweep(
                run_id,
                token="w2",
                merchant_id=shop,
                setting=EcomailAdd.CONSENTED,
                after_id=CustomerId(0),
                limit=2,
                since=started,
            )
            is None
        )
        everyone = await uow.reconciliation.sweep(
            run_id,
            token="w1",
            merchant_id=shop,
            setting=EcomailAdd.CUSTOMERS,
            after_id=CustomerId(0),
            limit=10,
            since=started,
        )
        assert everyone is not None
        assert [i for i, _ in everyone.missing] == [missing]  # refused is never added
        assert await uow.reconciliation.record_sweep(
            run_id,
            token="w1",
            merchant_id=shop,
            repairs=[Repair(RepairKind.ADDED, "missing@shop.cz", WHY, missing)],
            after_id=after,
            done=True,
            at=started,
        )
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        run = await uow.reconciliation.get(shop, run_id)
    assert run is not None and run.phase is Phase.DONE and run.repairs.added == 1
    assert run.sweep_after_id == after
    del no_email


async def _claimed(uow_factory: UnitOfWorkFactory, shop: MerchantId) -> list[CustomerId]:
    return [c.customer_id for c in await claim(uow_factory, shop, "c")]


async def test_schedules_list_active_integrations_whose_schedule_is_on(
    uow_factory: UnitOfWorkFactory,
) -> None:
    ids = [await add_merchant(uow_factory, s) for s in ("w", "o", "i")]
    w, o, i = ids
    await connect(uow_factory, w)
    await connect(uow_factory, o)
    await connect(uow_factory, i, active=False)
    async with uow_factory() as uow:
        merchant = await uow.merchants.get(o)
        assert merchant is not None
        off = dataclasses.replace(merchant.settings, ecomail_reconcile=Schedule.OFF)
        await uow.merchants.update_settings(o, off)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        (facts,) = await uow.reconciliation.schedules()
    assert facts.merchant_id == w and facts.schedule is Schedule.WEEKLY
    assert facts.list_id == "7" and facts.activated_at == NOW
    assert facts.last_requested_at is None and not facts.unfinished
    await request(uow_factory, w, at=NOW + timedelta(days=3))
    async with uow_factory(read_only=True) as uow:
        (facts,) = await uow.reconciliation.schedules()
    assert facts.last_requested_at == NOW + timedelta(days=3) and facts.unfinished


async def test_a_notification_keeps_who_reported_it(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    found = Notification(
        "ann@shop.cz", SubscriptionChange.UNSUBSCRIBED, "7", origin=Origin.RECONCILIATION
    )
    posted = Notification("bob@shop.cz", SubscriptionChange.SUBSCRIBED, "7")
    async with uow_factory() as uow:
        await uow.newsletter.enqueue(shop, found, received_at=NOW, at=NOW)
        await uow.newsletter.enqueue(shop, posted, received_at=NOW, at=NOW)
        await uow.commit()
    async with uow_factory() as uow:
        claimed = await uow.newsletter.claim(token="n", now=NOW, lease=LEASE, limit=5)
        await uow.commit()
    assert [c.notification for c in claimed] == [found, posted]
    async with uow_factory(read_only=True) as uow:
        listed = await uow.views.recent_notifications(shop, limit=5)
    assert [n.notification.origin for n in listed] == [Origin.WEBHOOK, Origin.RECONCILIATION]


async def test_a_full_page_of_members_is_recorded_in_a_few_statements(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """A page of 5000 members, half of them without a contact row yet: more values than
    PostgreSQL takes in one statement if each were a parameter of its own."""
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    emails = [f"m{n}@shop.cz" for n in range(5000)]
    ids = await add_customers(uow_factory, shop, *emails)
    await mark(uow_factory, shop, *ids[:2500])
    run_id, _ = await request(uow_factory, shop)
    await claim_run(uow_factory, shop, "w1")
    async with uow_factory() as uow:
        assert await uow.reconciliation.record_page(
            run_id,
            token="w1",
            merchant_id=shop,
            seen=[(i, 1) for i in ids],
            repairs=[],
            status_index=1,
            page=2,
            phase=Phase.READ,
            checked=5000,
            api_calls=1,
            at=NOW,
        )
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        facts = await uow.reconciliation.page_facts(shop, emails, today=TODAY)
    assert len(facts.customers) == 5000
    async with uow_factory() as uow:
        chunk = await uow.reconciliation.sweep(
            run_id,
            token="w1",
            merchant_id=shop,
            setting=EcomailAdd.CUSTOMERS,
            after_id=CustomerId(0),
            limit=10_000,
            since=NOW + timedelta(days=1),
        )
    assert chunk is not None and chunk.missing == []  # every one was seen by the run
