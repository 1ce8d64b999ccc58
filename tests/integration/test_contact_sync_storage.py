"""The Ecomail integration and contact sync storage contract (and ``OutboxRepository.defer``),
on the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.tables.contact_sync import ecomail_contacts
from ellity.adapters.sql.tables.newsletter import newsletter_notifications
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.customer import Customer, email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.newsletter import Notification, SubscriptionChange
from ellity.ports.storage import ClaimedContact, ContactSyncHealth, OldAddress, UnitOfWorkFactory
from tests.fakes import FakeJobQueue, InMemoryStore

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
SECOND = timedelta(seconds=1)
UNSUB = SubscriptionChange.UNSUBSCRIBED


# -- helpers ---------------------------------------------------------------------------------


async def add_merchant(uow_factory: UnitOfWorkFactory, slug: str = "shop") -> MerchantId:
    async with uow_factory() as uow:
        merchant = await uow.merchants.add(
            Merchant(slug=slug, settings=MerchantSettings(name=slug)), at=NOW
        )
        await uow.commit()
    assert merchant.id is not None
    return merchant.id


async def add_customers(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *emails: str | None, first: int = 0
) -> list[CustomerId]:
    """One customer per email (``None``: a customer with only a shop customer id); ``first``:
    the number of the first one's referral code, for a merchant who has customers already."""
    ids = []
    async with uow_factory() as uow:
        for n, email in enumerate(emails, start=first):
            customer = await uow.customers.add(
                Customer(
                    merchant_id=merchant_id,
                    referral_code=f"CODE{n:04d}",
                    created_at=NOW,
                    updated_at=NOW,
                    email=email,
                    shop_customer_id=None if email else f"shop-{n}",
                )
            )
            assert customer.id is not None
            ids.append(customer.id)
        await uow.commit()
    return ids


async def connect(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *, active: bool = True
) -> None:
    async with uow_factory() as uow:
        await uow.ecomail.save_key(merchant_id, encrypted="sealed:key", hint="1234", at=NOW)
        if active:
            await uow.ecomail.activate(merchant_id, list_id="7", list_name="Customers", at=NOW)
        await uow.commit()


async def mark(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    *customer_ids: CustomerId,
    at: datetime = NOW,
    moved: bool = False,
) -> None:
    async with uow_factory() as uow:
        await uow.contacts.mark_changed(merchant_id, list(customer_ids), at=at, moved=moved)
        await uow.commit()


async def claim(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    token: str,
    *,
    now: datetime = NOW,
    limit: int = 100,
) -> list[ClaimedContact]:
    async with uow_factory() as uow:
        claimed = await uow.contacts.claim(
            merchant_id, token=token, now=now, lease=LEASE, limit=limit
        )
        await uow.commit()
    return claimed


def ids_of(claimed: list[ClaimedContact]) -> list[CustomerId]:
    return [contact.customer_id for contact in claimed]


async def settle(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_ids: list[CustomerId],
    token: str,
    *,
    members: Collection[CustomerId] | None = None,
    added: Collection[CustomerId] = (),
    unsubscribed: Collection[CustomerId] = (),
    at: datetime = NOW,
) -> int:
    """``members``: every contact settled unless given."""
    async with uow_factory() as uow:
        count = await uow.contacts.settle(
            merchant_id,
            customer_ids,
            token=token,
            members=customer_ids if members is None else members,
            added=added,
            unsubscribed=unsubscribed,
            at=at,
        )
        await uow.commit()
    return count


async def fail(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_ids: list[CustomerId] | None,
    token: str,
    *,
    error: str = "refused",
    at: datetime = NOW,
) -> int:
    async with uow_factory() as uow:
        count = await uow.contacts.fail(merchant_id, customer_ids, token=token, error=error, at=at)
        await uow.commit()
    return count


async def release(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, token: str, *, retry_at: datetime
) -> int:
    async with uow_factory() as uow:
        count = await uow.contacts.release(
            merchant_id, token=token, error="Ecomail is down", retry_at=retry_at, at=NOW
        )
        await uow.commit()
    return count


async def pending(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId
) -> bool:
    async with uow_factory(read_only=True) as uow:
        return await uow.contacts.is_pending(merchant_id, customer_id)


async def health(uow_factory: UnitOfWorkFactory, merchant_id: MerchantId) -> ContactSyncHealth:
    async with uow_factory(read_only=True) as uow:
        return await uow.views.contact_sync_health(merchant_id)


# -- marking, claiming, settling ----------------------------------------------------------


async def test_many_changes_leave_one_pending_contact(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    assert not await pending(uow_factory, shop, ann)
    for minutes in range(3):
        await mark(uow_factory, shop, ann, at=NOW + timedelta(minutes=minutes))
    assert await pending(uow_factory, shop, ann)
    assert await health(uow_factory, shop) == ContactSyncHealth(
        pending=1, failed=0, oldest_pending_at=NOW, last_synced_at=None
    )  # pending since the first change
    later = NOW + timedelta(minutes=3)
    assert await claim(uow_factory, shop, "w", now=later) == [ClaimedContact(ann, in_list=False)]


async def test_a_mark_that_is_rolled_back_is_never_there(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    async with uow_factory() as uow:
        await uow.contacts.mark_changed(shop, [ann], at=NOW)
    assert not await pending(uow_factory, shop, ann)


async def test_a_customer_without_an_email_is_never_marked(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [nobody] = await add_customers(uow_factory, shop, None)
    await mark(uow_factory, shop, nobody)
    assert not await pending(uow_factory, shop, nobody)
    assert await claim(uow_factory, shop, "w") == []


async def test_settling_puts_the_contact_in_the_list_unless_it_changed_since_the_claim(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann, bob)
    assert await claim(uow_factory, shop, "w") == [
        ClaimedContact(ann, in_list=False),
        ClaimedContact(bob, in_list=False),
    ]
    await mark(uow_factory, shop, ann, at=NOW + SECOND)  # changed while being written
    assert await settle(uow_factory, shop, [ann, bob], "w", at=NOW + 2 * SECOND) == 2
    assert await pending(uow_factory, shop, ann)
    assert not await pending(uow_factory, shop, bob)
    # ann is sent again, not yet known to be in the list; the claim is gone
    assert await claim(uow_factory, shop, "w2", now=NOW + 2 * SECOND) == [
        ClaimedContact(ann, in_list=False)
    ]
    assert await settle(uow_factory, shop, [ann], "w2") == 1
    await mark(uow_factory, shop, ann, bob, at=NOW + timedelta(minutes=1))
    again = await claim(uow_factory, shop, "w3", now=NOW + timedelta(minutes=1))
    assert again == [ClaimedContact(ann, in_list=True), ClaimedContact(bob, in_list=True)]
    assert (await health(uow_factory, shop)).pending == 2


async def test_a_new_email_is_not_known_to_be_in_the_list(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann, bob)
    await claim(uow_factory, shop, "w")
    await settle(uow_factory, shop, [ann, bob], "w")
    await mark(uow_factory, shop, ann, moved=True)
    await mark(uow_factory, shop, bob)
    assert await claim(uow_factory, shop, "w2") == [
        ClaimedContact(ann, in_list=False),
        ClaimedContact(bob, in_list=True),
    ]
    await mark(uow_factory, shop, ann)  # a later plain change does not put it back
    assert await settle(uow_factory, shop, [ann], "w2") == 1
    assert await claim(uow_factory, shop, "w3") == [ClaimedContact(ann, in_list=False)]


async def test_claims_are_taken_oldest_change_first(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob, cid = await add_customers(uow_factory, shop, "a@x.cz", "b@x.cz", "c@x.cz")
    await mark(uow_factory, shop, cid, at=NOW)
    await mark(uow_factory, shop, ann, at=NOW + SECOND)
    await mark(uow_factory, shop, bob, at=NOW)
    later = NOW + timedelta(minutes=1)
    assert ids_of(await claim(uow_factory, shop, "a", now=later, limit=2)) == [bob, cid]
    assert ids_of(await claim(uow_factory, shop, "b", now=later)) == [ann]


async def test_claims_are_exclusive_and_an_expired_lease_is_taken_over(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ids = await add_customers(uow_factory, shop, "a@x.cz", "b@x.cz", "c@x.cz")
    await mark(uow_factory, shop, *ids)
    assert ids_of(await claim(uow_factory, shop, "a", limit=2)) == ids[:2]
    assert ids_of(await claim(uow_factory, shop, "b")) == ids[2:]
    assert await claim(uow_factory, shop, "c", now=NOW + LEASE - SECOND) == []
    assert ids_of(await claim(uow_factory, shop, "c", now=NOW + LEASE)) == ids
    # the workers whose claims ran out learn it: nothing of theirs is settled
    assert await settle(uow_factory, shop, ids, "a") == 0
    assert await fail(uow_factory, shop, None, "b") == 0
    assert await settle(uow_factory, shop, ids, "c") == 3


async def test_concurrent_claimers_never_get_the_same_contact(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ids = await add_customers(uow_factory, shop, *(f"c{n}@x.cz" for n in range(30)))
    await mark(uow_factory, shop, *ids)

    async def claimer(token: str) -> list[CustomerId]:
        mine: list[CustomerId] = []
        while batch := await claim(uow_factory, shop, token, limit=3):
            mine += ids_of(batch)
        return mine

    claimed = await asyncio.gather(*(claimer(f"worker-{n}") for n in range(6)))
    every = [customer_id for mine in claimed for customer_id in mine]
    assert sorted(every) == sorted(ids)  # each exactly once


async def test_a_released_claim_waits_for_its_retry_time_and_counts_an_attempt(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann, bob)
    await claim(uow_factory, shop, "w")
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.attempts(shop, token="w") == 0
    retry_at = NOW + timedelta(minutes=10)
    assert await release(uow_factory, shop, "w", retry_at=retry_at) == 2
    assert await pending(uow_factory, shop, ann)  # not lost
    assert (await health(uow_factory, shop)).pending == 2
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.next_due() == retry_at
        assert await uow.contacts.due_merchants(now=retry_at - SECOND) == []
    assert await claim(uow_factory, shop, "w2", now=retry_at - SECOND) == []
    assert ids_of(await claim(uow_factory, shop, "w2", now=retry_at)) == [ann, bob]
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.attempts(shop, token="w2") == 1
        assert await uow.contacts.attempts(shop, token="nobody") == 0
    assert await settle(uow_factory, shop, [ann, bob], "w2", at=retry_at) == 2
    await mark(uow_factory, shop, ann, at=retry_at)
    await claim(uow_factory, shop, "w3", now=retry_at)
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.attempts(shop, token="w3") == 0  # settling reset the count


async def test_a_deferred_claim_waits_until_then_without_counting_an_attempt(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann, bob)
    await claim(uow_factory, shop, "w")
    await release(uow_factory, shop, "w", retry_at=NOW)  # one failed attempt before
    await claim(uow_factory, shop, "w2")
    until = NOW + timedelta(seconds=40)
    async with uow_factory() as uow:
        assert await uow.contacts.defer(shop, token="nobody", until=until) == 0
        assert await uow.contacts.defer(shop, token="w2", until=until) == 2
        await uow.commit()
    assert await pending(uow_factory, shop, ann)  # not lost, not failed
    assert (await health(uow_factory, shop)).failed == 0
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.next_due() == until
    assert await claim(uow_factory, shop, "w3", now=until - SECOND) == []
    assert ids_of(await claim(uow_factory, shop, "w3", now=until)) == [ann, bob]
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.attempts(shop, token="w3") == 1  # the failure only


async def test_failing_some_contacts_of_a_claim_and_then_the_rest(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob, cid = await add_customers(uow_factory, shop, "a@x.cz", "b@x.cz", "c@x.cz")
    await mark(uow_factory, shop, ann, bob, cid)
    await claim(uow_factory, shop, "w")
    assert await fail(uow_factory, shop, [ann], "w", error="invalid email", at=NOW) == 1
    assert not await pending(uow_factory, shop, ann)  # failed: not on its way any more
    assert await fail(uow_factory, shop, None, "w", error="wrong key", at=NOW + SECOND) == 2
    assert await settle(uow_factory, shop, [ann, bob, cid], "w") == 0
    assert await health(uow_factory, shop) == ContactSyncHealth(
        pending=0, failed=3, oldest_pending_at=None, last_synced_at=None
    )
    async with uow_factory(read_only=True) as uow:
        failures = await uow.views.contact_sync_failures(shop, limit=10)
        assert await uow.contacts.next_due() is None
        assert await uow.contacts.due_merchants(now=NOW + timedelta(days=1)) == []
        assert len(await uow.views.contact_sync_failures(shop, limit=2)) == 2
    assert [(f.customer_id, f.email, f.error, f.failed_at) for f in failures] == [
        (cid, "c@x.cz", "wrong key", NOW + SECOND),
        (bob, "b@x.cz", "wrong key", NOW + SECOND),
        (ann, "a@x.cz", "invalid email", NOW),
    ]
    assert await claim(uow_factory, shop, "w2", now=NOW + timedelta(days=1)) == []


async def test_retrying_failed_contacts_makes_them_pending_with_a_fresh_count(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann, bob)
    await claim(uow_factory, shop, "w")
    await fail(uow_factory, shop, None, "w")
    await mark(uow_factory, shop, bob, at=NOW + SECOND)  # a change retries it too
    assert await pending(uow_factory, shop, bob)
    later = NOW + timedelta(hours=1)
    async with uow_factory() as uow:
        assert await uow.contacts.retry_failed(shop, at=later) == 1
        await uow.commit()
    assert await pending(uow_factory, shop, ann)
    assert await health(uow_factory, shop) == ContactSyncHealth(
        pending=2, failed=0, oldest_pending_at=NOW, last_synced_at=None
    )
    assert ids_of(await claim(uow_factory, shop, "w2", now=later)) == [ann, bob]
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.attempts(shop, token="w2") == 1  # bob's count stayed
    async with uow_factory() as uow:
        assert await uow.contacts.retry_failed(shop, at=later) == 0


async def test_only_active_integrations_have_due_contacts(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await mark(uow_factory, shop, ann)

    async def due() -> tuple[list[MerchantId], datetime | None]:
        async with uow_factory(read_only=True) as uow:
            return await uow.contacts.due_merchants(now=NOW), await uow.contacts.next_due()

    assert await due() == ([], None)  # no integration
    await connect(uow_factory, shop, active=False)
    assert await due() == ([], None)  # a key, not active
    async with uow_factory() as uow:
        await uow.ecomail.activate(shop, list_id="7", list_name="Customers", at=NOW)
        await uow.commit()
    assert await due() == ([shop], NOW)
    await claim(uow_factory, shop, "w")
    assert await due() == ([], NOW + LEASE)  # claimed: due when the lease runs out
    async with uow_factory() as uow:
        await uow.ecomail.deactivate(shop, at=NOW)
        await uow.commit()
    assert await due() == ([], None)
    assert await pending(uow_factory, shop, ann)  # still waiting for a later activation


async def test_the_earliest_due_contact_of_every_active_merchant_is_next(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await add_merchant(uow_factory), await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    await connect(uow_factory, other)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    [bob] = await add_customers(uow_factory, other, "bob@example.cz")
    await mark(uow_factory, shop, ann, at=NOW + timedelta(minutes=3))
    await mark(uow_factory, other, bob, at=NOW + timedelta(minutes=2))
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.next_due() == NOW + timedelta(minutes=2)
        assert await uow.contacts.due_merchants(now=NOW + timedelta(minutes=3)) == [shop, other]
    await claim(uow_factory, other, "w", now=NOW + timedelta(minutes=2))
    await release(uow_factory, other, "w", retry_at=NOW + timedelta(minutes=9))
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.next_due() == NOW + timedelta(minutes=3)


async def test_mark_all_marks_customers_with_an_email_a_chunk_at_a_time(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await add_merchant(uow_factory), await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    ann, nobody, bob, cid = await add_customers(uow_factory, shop, "a@x.cz", None, "b@x.cz", "c@x")
    [theirs] = await add_customers(uow_factory, other, "d@x.cz")

    async def mark_all(after_id: CustomerId) -> tuple[int, CustomerId | None]:
        async with uow_factory() as uow:
            result = await uow.contacts.mark_all(shop, after_id=after_id, limit=2, at=NOW)
            await uow.commit()
        return result

    assert await mark_all(CustomerId(0)) == (2, bob)  # the customer without an email is skipped
    assert (await health(uow_factory, shop)).pending == 2
    assert await mark_all(bob) == (1, cid)
    assert await mark_all(cid) == (0, None)
    assert [await pending(uow_factory, shop, c) for c in (ann, nobody, bob, cid)] == [
        True,
        False,
        True,
        True,
    ]
    assert not await pending(uow_factory, other, theirs)
    assert ids_of(await claim(uow_factory, shop, "w")) == [ann, bob, cid]


async def test_health_counts_what_waits_what_failed_and_the_last_success(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    assert await health(uow_factory, shop) == ContactSyncHealth(0, 0, None, None)
    await connect(uow_factory, shop)
    ann, bob, cid = await add_customers(uow_factory, shop, "a@x.cz", "b@x.cz", "c@x.cz")
    await mark(uow_factory, shop, ann, at=NOW)
    await claim(uow_factory, shop, "w", now=NOW)
    await fail(uow_factory, shop, None, "w")
    await mark(uow_factory, shop, bob, at=NOW + SECOND)
    await mark(uow_factory, shop, cid, at=NOW + 2 * SECOND)
    async with uow_factory() as uow:
        await uow.ecomail.record_success(shop, at=NOW + timedelta(minutes=1))
        await uow.commit()
    assert await health(uow_factory, shop) == ContactSyncHealth(
        pending=2,
        failed=1,
        oldest_pending_at=NOW + SECOND,
        last_synced_at=NOW + timedelta(minutes=1),
    )


async def test_a_contact_written_outside_a_claim_is_recorded_in_the_list(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    async with uow_factory() as uow:
        await uow.contacts.record_written(shop, ann, added_at=NOW, at=NOW)
        await uow.contacts.record_written(shop, bob, added_at=None, at=NOW)
        await uow.commit()
    assert not await pending(uow_factory, shop, ann)
    async with uow_factory() as uow:  # written again: when it was added stays
        await uow.contacts.record_written(shop, ann, added_at=None, at=NOW + SECOND)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.added_at(shop, ann) == NOW
        assert await uow.contacts.added_at(shop, bob) is None
    await mark(uow_factory, shop, ann, bob)
    assert await claim(uow_factory, shop, "w") == [
        ClaimedContact(ann, in_list=True),
        ClaimedContact(bob, in_list=True),
    ]
    later = NOW + timedelta(minutes=1)
    assert await settle(uow_factory, shop, [ann, bob], "w", added=[ann, bob], at=later) == 2
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.added_at(shop, bob) == later


async def test_recording_a_written_contact_keeps_a_pending_change(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await mark(uow_factory, shop, ann)
    async with uow_factory() as uow:
        await uow.contacts.record_written(shop, ann, added_at=NOW, at=NOW)
        await uow.commit()
    assert await pending(uow_factory, shop, ann)
    assert await claim(uow_factory, shop, "w") == [ClaimedContact(ann, in_list=True)]


# -- unsubscriptions, members, add attempts -------------------------------------------------


async def refuse(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId, at: datetime
) -> None:
    async with uow_factory() as uow:
        await uow.contacts.request_unsubscribe(merchant_id, customer_id, at=at)
        await uow.commit()


async def test_a_due_unsubscription_is_claimed_and_cleared_by_the_settle_that_did_it(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob, cid = await add_customers(uow_factory, shop, "a@x.cz", "b@x.cz", "c@x.cz")
    await mark(uow_factory, shop, bob)
    await refuse(uow_factory, shop, ann, NOW)
    await refuse(uow_factory, shop, cid, NOW)
    assert await claim(uow_factory, shop, "w") == [
        ClaimedContact(ann, in_list=False, unsubscribe=True),
        ClaimedContact(bob, in_list=False, unsubscribe=False),
        ClaimedContact(cid, in_list=False, unsubscribe=True),
    ]
    # the claim unsubscribed ann only (cid's call failed and is retried later)
    assert await settle(uow_factory, shop, [ann, bob, cid], "w", unsubscribed=[ann]) == 3
    await mark(uow_factory, shop, ann, bob, cid, at=NOW + SECOND)
    assert await claim(uow_factory, shop, "w2", now=NOW + SECOND) == [
        ClaimedContact(ann, in_list=True, unsubscribe=False),
        ClaimedContact(bob, in_list=True, unsubscribe=False),
        ClaimedContact(cid, in_list=True, unsubscribe=True),
    ]


async def test_an_unsubscription_requested_again_during_the_claim_stays_due(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await refuse(uow_factory, shop, ann, NOW)
    await claim(uow_factory, shop, "w")
    await refuse(uow_factory, shop, ann, NOW + SECOND)  # refused again while being written
    await settle(uow_factory, shop, [ann], "w", unsubscribed=[ann], at=NOW + 2 * SECOND)
    assert await pending(uow_factory, shop, ann)
    assert await claim(uow_factory, shop, "w2", now=NOW + 2 * SECOND) == [
        ClaimedContact(ann, in_list=False, unsubscribe=True)
    ]


async def test_settling_puts_only_the_members_in_the_list(uow_factory: UnitOfWorkFactory) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob, cid = await add_customers(uow_factory, shop, "a@x.cz", "b@x.cz", "c@x.cz")
    await mark(uow_factory, shop, ann, bob, cid)
    await claim(uow_factory, shop, "w")
    await settle(uow_factory, shop, [ann, bob, cid], "w", members=[ann])
    # bob and cid were only updated: not known to be in the list, and no longer pending
    assert not await pending(uow_factory, shop, bob)
    await mark(uow_factory, shop, ann, bob, cid, at=NOW + SECOND)
    assert await claim(uow_factory, shop, "w2", now=NOW + SECOND) == [
        ClaimedContact(ann, in_list=True),
        ClaimedContact(bob, in_list=False),
        ClaimedContact(cid, in_list=False),
    ]
    # settling without them as members keeps what was known
    await settle(uow_factory, shop, [ann, bob, cid], "w2", members=[bob])
    await mark(uow_factory, shop, ann, bob, cid, at=NOW + 2 * SECOND)
    assert await claim(uow_factory, shop, "w3", now=NOW + 2 * SECOND) == [
        ClaimedContact(ann, in_list=True),
        ClaimedContact(bob, in_list=True),
        ClaimedContact(cid, in_list=False),
    ]


Attempt = tuple[datetime | None, datetime | None, datetime | None]


async def attempt_of(uow_factory: UnitOfWorkFactory, customer_id: CustomerId) -> Attempt | None:
    """The contact's ``add_attempted_at``, ``echo_taken_at`` and ``echo_subscribed_at`` as
    stored (newsletter processing reads them); ``None`` without a contact row."""
    if isinstance(uow_factory, SqlUnitOfWorkFactory):
        c = ecomail_contacts.c
        async with uow_factory.database.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(c.add_attempted_at, c.echo_taken_at, c.echo_subscribed_at).where(
                        c.customer_id == customer_id
                    )
                )
            ).one_or_none()
        return None if row is None else (row[0], row[1], row[2])
    record = _store_of(uow_factory).state.contacts.get(customer_id)
    if record is None:
        return None
    return record.add_attempted_at, record.echo_taken_at, record.echo_subscribed_at


async def take_echo(
    uow_factory: UnitOfWorkFactory, customer_id: CustomerId, *, at: datetime, subscribed: datetime
) -> None:
    """What newsletter processing records when it takes a notification as the echo."""
    if isinstance(uow_factory, SqlUnitOfWorkFactory):
        c = ecomail_contacts.c
        async with uow_factory.database.write_engine.begin() as conn:
            await conn.execute(
                ecomail_contacts.update()
                .where(c.customer_id == customer_id)
                .values(echo_taken_at=at, echo_subscribed_at=subscribed)
            )
        return
    record = _store_of(uow_factory).state.contacts[customer_id]
    record.echo_taken_at, record.echo_subscribed_at = at, subscribed


def _store_of(uow_factory: UnitOfWorkFactory) -> InMemoryStore:
    store = getattr(uow_factory, "__self__", None)
    assert isinstance(store, InMemoryStore)
    return store


async def notify(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    email: str,
    change: SubscriptionChange,
    *,
    at: datetime,
) -> None:
    """A notification of the merchant's list webhook, received at ``at`` (stored with its
    ``email_key``, as the intake stores it)."""
    digest = f"{merchant_id:064d}"
    async with uow_factory() as uow:
        await uow.newsletter.set_webhook_token(
            merchant_id, digest=digest, encrypted="sealed", at=NOW, replace=True
        )
        stored = await uow.newsletter.receive(
            digest, Notification(email=email, change=change, list_id="7"), at=at
        )
        await uow.commit()
    if isinstance(uow_factory, SqlUnitOfWorkFactory):
        n = newsletter_notifications.c
        async with uow_factory.database.write_engine.begin() as conn:
            await conn.execute(
                newsletter_notifications.update()
                .where(n.id == stored, n.email_key.is_(None))
                .values(email_key=email_key(email))
            )


async def record_attempts(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *ids: CustomerId, at: datetime
) -> None:
    async with uow_factory() as uow:
        await uow.contacts.record_add_attempts(merchant_id, list(ids), at=at)
        await uow.commit()


async def test_an_add_attempt_is_kept_by_the_retries_of_its_episode_until_its_echo_is_taken(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob, nobody = await add_customers(uow_factory, shop, "ann@example.cz", "b@x.cz", None)
    await mark(uow_factory, shop, bob)
    # activation's first contact has no row yet: it gets one, not pending
    await record_attempts(uow_factory, shop, ann, bob, nobody, at=NOW)
    assert await attempt_of(uow_factory, ann) == (NOW, None, None)
    assert await attempt_of(uow_factory, bob) == (NOW, None, None)
    assert await attempt_of(uow_factory, nobody) is None  # no email, no contact
    assert not await pending(uow_factory, shop, ann)
    assert await pending(uow_factory, shop, bob)  # the mark is left as it was
    # a retry (the answer was lost, a half of a split call) belongs to the same attempt
    later = NOW + timedelta(minutes=1)
    await record_attempts(uow_factory, shop, ann, bob, at=later)
    assert await attempt_of(uow_factory, ann) == (NOW, None, None)
    # once the echo is taken, the next add is a new attempt
    await take_echo(uow_factory, ann, at=NOW + 30 * SECOND, subscribed=NOW)
    assert await attempt_of(uow_factory, ann) == (NOW, NOW + 30 * SECOND, NOW)
    await record_attempts(uow_factory, shop, ann, bob, at=later)
    assert await attempt_of(uow_factory, ann) == (later, None, None)
    assert await attempt_of(uow_factory, bob) == (NOW, None, None)


async def test_an_unsubscription_received_since_the_attempt_starts_a_new_one(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    other = await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    ann, bob, cid, dan = await add_customers(
        uow_factory, shop, "ann@example.cz", "bob@example.cz", "cid@example.cz", "dan@x.cz"
    )
    await record_attempts(uow_factory, shop, ann, bob, cid, dan, at=NOW)
    # ann unsubscribed after the attempt (the address in another case); bob before it; cid
    # subscribed; dan unsubscribed from another merchant's list
    await notify(uow_factory, shop, "ANN@example.cz", UNSUB, at=NOW + SECOND)
    await notify(uow_factory, shop, "bob@example.cz", UNSUB, at=NOW - SECOND)
    await notify(uow_factory, shop, "cid@example.cz", SubscriptionChange.SUBSCRIBED, at=NOW)
    await notify(uow_factory, other, "dan@x.cz", UNSUB, at=NOW + SECOND)
    later = NOW + timedelta(minutes=1)
    await record_attempts(uow_factory, shop, ann, bob, cid, dan, at=later)
    assert await attempt_of(uow_factory, ann) == (later, None, None)
    for kept in (bob, cid, dan):
        assert await attempt_of(uow_factory, kept) == (NOW, None, None)
    # the unsubscription is older than ann's new attempt: its retries keep it
    await record_attempts(uow_factory, shop, ann, at=later + SECOND)
    assert await attempt_of(uow_factory, ann) == (later, None, None)


async def test_a_merchant_never_records_an_attempt_on_another_merchants_customer(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    other = await add_merchant(uow_factory, "other")
    [theirs] = await add_customers(uow_factory, other, "ann@example.cz")
    await record_attempts(uow_factory, shop, theirs, at=NOW)
    assert await attempt_of(uow_factory, theirs) is None
    await mark(uow_factory, other, theirs)
    await record_attempts(uow_factory, shop, theirs, at=NOW)
    assert await attempt_of(uow_factory, theirs) == (None, None, None)


async def test_the_first_customer_with_an_email_of_the_consents_asked(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    other = await add_merchant(uow_factory, "other")
    consents = [None, MarketingConsent.REFUSED, MarketingConsent.UNKNOWN, MarketingConsent.GRANTED]
    ids = []
    async with uow_factory() as uow:
        for n, consent in enumerate(consents):
            customer = await uow.customers.add(
                Customer(
                    merchant_id=shop,
                    referral_code=f"CODE{n:04d}",
                    created_at=NOW,
                    updated_at=NOW,
                    email=None if consent is None else f"c{n}@x.cz",
                    shop_customer_id=f"shop-{n}",
                    marketing_consent=consent or MarketingConsent.GRANTED,
                )
            )
            assert customer.id is not None
            ids.append(customer.id)
        await uow.commit()
    granted, customers_setting = (
        {MarketingConsent.GRANTED},
        set(MarketingConsent) - {MarketingConsent.REFUSED},
    )
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.first_customer(shop) == ids[1]
        assert await uow.contacts.first_customer(shop, consents=granted) == ids[3]
        assert await uow.contacts.first_customer(shop, consents=customers_setting) == ids[2]
        assert await uow.contacts.first_customer(shop, consents=[]) is None
        assert await uow.contacts.first_customer(other) is None


# -- addresses customers left -----------------------------------------------------------------


async def move(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId, email: str
) -> None:
    """The customer's email changes, and the contact is marked as moved, in one transaction."""
    async with uow_factory() as uow:
        customer = await uow.customers.get(merchant_id, customer_id, for_update=True)
        assert customer is not None and customer.email is not None
        old_email, customer.email = customer.email, email
        await uow.customers.update(customer)
        await uow.contacts.mark_moved(merchant_id, customer_id, old_email=old_email, at=NOW)
        await uow.commit()


async def old_addresses(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *customer_ids: CustomerId
) -> list[tuple[CustomerId, str]]:
    async with uow_factory(read_only=True) as uow:
        found = await uow.contacts.old_addresses(merchant_id, list(customer_ids))
    return [(address.customer_id, address.email) for address in found]


async def forget(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *customer_ids: CustomerId
) -> list[OldAddress]:
    """Read the customers' old addresses, then forget them (as the sync does after clearing)."""
    async with uow_factory(read_only=True) as uow:
        found = await uow.contacts.old_addresses(merchant_id, list(customer_ids))
    async with uow_factory() as uow:
        forgotten = await uow.contacts.forget_old_addresses(
            merchant_id, [address.id for address in found], at=NOW
        )
        await uow.commit()
    assert forgotten == len(found)
    return found


async def written(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, *customer_ids: CustomerId
) -> None:
    """The worker writes the customers' contacts to the list."""
    await mark(uow_factory, merchant_id, *customer_ids)
    await claim(uow_factory, merchant_id, "writer")
    await settle(uow_factory, merchant_id, list(customer_ids), "writer")


async def test_an_address_left_after_its_contact_was_written_is_remembered_until_cleared(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "Ann@Example.cz", "bob@example.cz")
    await written(uow_factory, shop, ann, bob)
    await move(uow_factory, shop, ann, "anna@example.cz")
    assert await old_addresses(uow_factory, shop, ann, bob) == [(ann, "Ann@Example.cz")]
    assert await pending(uow_factory, shop, ann)  # the new address is to be written
    assert await claim(uow_factory, shop, "w") == [ClaimedContact(ann, in_list=False)]
    [address] = await forget(uow_factory, shop, ann)
    assert address.email == "Ann@Example.cz"
    assert await old_addresses(uow_factory, shop, ann) == []


async def test_an_address_whose_contact_was_never_written_is_not_remembered(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann)  # waiting for the worker, never written
    await move(uow_factory, shop, ann, "anna@example.cz")
    await move(uow_factory, shop, bob, "bert@example.cz")  # never even marked
    assert await old_addresses(uow_factory, shop, ann, bob) == []
    assert await claim(uow_factory, shop, "w") == [
        ClaimedContact(ann, in_list=False),
        ClaimedContact(bob, in_list=False),
    ]


async def test_an_address_left_while_a_claim_may_be_writing_it_is_remembered(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await mark(uow_factory, shop, ann)
    await claim(uow_factory, shop, "w")  # the worker is writing ann@example.cz right now
    await move(uow_factory, shop, ann, "anna@example.cz")
    assert await old_addresses(uow_factory, shop, ann) == [(ann, "ann@example.cz")]
    assert await settle(uow_factory, shop, [ann], "w") == 1
    assert await pending(uow_factory, shop, ann)  # changed while written: sent again


async def test_quick_changes_remember_every_address_that_may_hold_the_fields_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "a@example.cz")
    await written(uow_factory, shop, ann)
    await move(uow_factory, shop, ann, "b@example.cz")
    await written(uow_factory, shop, ann)
    await move(uow_factory, shop, ann, "c@example.cz")
    await move(uow_factory, shop, ann, "d@example.cz")  # c was never written
    await move(uow_factory, shop, ann, "A@example.cz")  # back to a: a holds ann's fields
    await move(uow_factory, shop, ann, "e@example.cz")  # and away again: a is left once more
    assert await old_addresses(uow_factory, shop, ann) == [
        (ann, "a@example.cz"),
        (ann, "b@example.cz"),
    ]


async def test_an_address_someone_holds_now_is_not_cleared(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await written(uow_factory, shop, ann)
    await move(uow_factory, shop, ann, "anna@example.cz")
    [bob] = await add_customers(uow_factory, shop, "ANN@example.cz", first=1)  # takes it
    assert await old_addresses(uow_factory, shop, ann) == []  # bob's fields will be there
    # bob leaves it before his contact was ever written: it may still hold ann's fields
    await move(uow_factory, shop, bob, "bob@example.cz")
    assert await old_addresses(uow_factory, shop, ann, bob) == [
        (ann, "ann@example.cz"),
        (bob, "ANN@example.cz"),
    ]


async def test_a_customer_who_takes_an_address_while_it_is_cleared_is_written_again(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await written(uow_factory, shop, ann)
    await move(uow_factory, shop, ann, "anna@example.cz")
    await claim(uow_factory, shop, "w")
    async with uow_factory(read_only=True) as uow:
        [address] = await uow.contacts.old_addresses(shop, [ann])
    [bob] = await add_customers(uow_factory, shop, "ann@example.cz", first=1)  # meanwhile
    await written(uow_factory, shop, bob)  # his fields may be overwritten by the clearing
    assert not await pending(uow_factory, shop, bob)
    async with uow_factory() as uow:
        assert await uow.contacts.forget_old_addresses(shop, [address.id], at=NOW) == 1
        await uow.commit()
    assert await pending(uow_factory, shop, bob)  # so his fields are written again
    assert await old_addresses(uow_factory, shop, ann, bob) == []


async def test_a_merchant_never_sees_or_forgets_another_merchants_old_addresses(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await add_merchant(uow_factory), await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    await connect(uow_factory, other)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    await written(uow_factory, shop, ann)
    async with uow_factory() as uow:  # not the other merchant's customer: nothing recorded
        await uow.contacts.mark_moved(other, ann, old_email="x@example.cz", at=NOW)
        await uow.commit()
    assert await old_addresses(uow_factory, shop, ann) == []
    await move(uow_factory, shop, ann, "anna@example.cz")
    [theirs] = await add_customers(uow_factory, other, "ann@example.cz")  # not held in shop
    assert await old_addresses(uow_factory, other, ann) == []
    async with uow_factory(read_only=True) as uow:
        [address] = await uow.contacts.old_addresses(shop, [ann])
    async with uow_factory() as uow:
        assert await uow.contacts.forget_old_addresses(other, [address.id], at=NOW) == 0
        await uow.commit()
    assert await old_addresses(uow_factory, shop, ann) == [(ann, "ann@example.cz")]
    assert not await pending(uow_factory, other, theirs)


# -- the integration ------------------------------------------------------------------------


async def test_an_integration_goes_from_a_key_to_active_and_back(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    async with uow_factory(read_only=True) as uow:
        assert await uow.ecomail.get(shop) is None
        assert await uow.ecomail.api_key(shop) is None
        assert await uow.ecomail.active_list(shop) is None
    async with uow_factory() as uow:
        await uow.ecomail.save_key(shop, encrypted="sealed:yek", hint="abcd", at=NOW)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        saved = await uow.ecomail.get(shop)
        assert await uow.ecomail.api_key(shop) == "sealed:yek"
        assert await uow.ecomail.active_list(shop) is None
    assert saved is not None
    assert (saved.key_hint, saved.masked_key, saved.list_id, saved.list_name) == (
        "abcd",
        "••••abcd",
        None,
        "",
    )
    assert (saved.active, saved.activated_at, saved.backfill, saved.last_success_at) == (
        False,
        None,
        None,
        None,
    )

    activated_at = NOW + timedelta(minutes=1)
    async with uow_factory() as uow:
        await uow.ecomail.activate(shop, list_id="42", list_name="N" * 250, at=activated_at)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        active = await uow.ecomail.get(shop)
        assert await uow.ecomail.active_list(shop) == "42"
        assert await uow.ecomail.backfilling() == [shop]
    assert active is not None and active.backfill is not None
    assert (active.active, active.list_id, active.list_name) == (True, "42", "N" * 200)
    assert active.activated_at == activated_at
    assert (active.backfill.requested_at, active.backfill.after_id, active.backfill.marked) == (
        activated_at,
        0,
        0,
    )
    assert active.backfill.marking

    async with uow_factory() as uow:
        await uow.ecomail.record_success(shop, at=activated_at)
        await uow.ecomail.deactivate(shop, at=NOW + timedelta(minutes=2))
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        inactive = await uow.ecomail.get(shop)
        assert await uow.ecomail.active_list(shop) is None
        assert await uow.ecomail.backfilling() == []  # marking waits for an activation
        assert await uow.ecomail.api_key(shop) == "sealed:yek"  # the key stays
    assert inactive is not None
    assert (inactive.active, inactive.list_id, inactive.last_success_at) == (
        False,
        "42",
        activated_at,
    )

    async with uow_factory() as uow:  # a new key may open another account
        await uow.ecomail.save_key(shop, encrypted="sealed:wen", hint="wxyz", at=NOW)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        replaced = await uow.ecomail.get(shop)
        assert await uow.ecomail.api_key(shop) == "sealed:wen"
    assert replaced is not None
    assert (replaced.key_hint, replaced.active, replaced.list_id, replaced.list_name) == (
        "wxyz",
        False,
        None,
        "",
    )
    assert replaced.backfill is None
    assert (replaced.activated_at, replaced.last_success_at) == (activated_at, activated_at)


async def test_a_backfill_advances_finishes_and_can_be_restarted(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await add_merchant(uow_factory), await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    await connect(uow_factory, other)

    async def backfill_of(merchant_id: MerchantId) -> tuple[int, int, datetime | None]:
        async with uow_factory(read_only=True) as uow:
            integration = await uow.ecomail.get(merchant_id)
        assert integration is not None and integration.backfill is not None
        b = integration.backfill
        return b.after_id, b.marked, b.finished_marking_at

    async with uow_factory() as uow:
        await uow.ecomail.advance_backfill(
            shop, after_id=CustomerId(3_000_000_000), marked=2, finished_at=None
        )
        await uow.commit()
    assert await backfill_of(shop) == (3_000_000_000, 2, None)  # ids beyond 32 bits
    async with uow_factory() as uow:
        await uow.ecomail.advance_backfill(
            shop, after_id=CustomerId(3_000_000_000), marked=2, finished_at=NOW
        )
        await uow.commit()
    assert await backfill_of(shop) == (3_000_000_000, 2, NOW)
    async with uow_factory(read_only=True) as uow:
        assert await uow.ecomail.backfilling() == [other]
    later = NOW + timedelta(hours=1)
    async with uow_factory() as uow:
        await uow.ecomail.request_backfill(shop, at=later)
        await uow.commit()
    assert await backfill_of(shop) == (0, 0, None)
    async with uow_factory(read_only=True) as uow:
        integration = await uow.ecomail.get(shop)
        assert await uow.ecomail.backfilling() == [shop, other]
    assert integration is not None and integration.backfill is not None
    assert integration.backfill.requested_at == later


async def test_changing_a_merchant_without_an_integration_changes_nothing(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    async with uow_factory() as uow:
        await uow.ecomail.activate(shop, list_id="7", list_name="Customers", at=NOW)
        await uow.ecomail.request_backfill(shop, at=NOW)
        await uow.ecomail.record_success(shop, at=NOW)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.ecomail.get(shop) is None
        assert await uow.ecomail.backfilling() == []


# -- tenants ----------------------------------------------------------------------------------


async def test_a_merchant_never_sees_or_touches_another_merchants_contacts(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop, other = await add_merchant(uow_factory), await add_merchant(uow_factory, "other")
    await connect(uow_factory, shop)
    await connect(uow_factory, other)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, other, ann)  # not the other merchant's customer: nothing marked
    assert not await pending(uow_factory, shop, ann)
    await mark(uow_factory, shop, ann, bob)
    assert await claim(uow_factory, other, "theirs") == []
    await claim(uow_factory, shop, "mine", limit=1)
    async with uow_factory() as uow:
        await uow.contacts.fail(shop, [ann], token="mine", error="refused", at=NOW)
        await uow.commit()
    await claim(uow_factory, shop, "mine2")
    async with uow_factory() as uow:
        # the other merchant cannot settle, release or fail what this one claimed
        assert await uow.contacts.settle(other, [bob], token="mine2", members=[bob], at=NOW) == 0
        assert (
            await uow.contacts.release(other, token="mine2", error="x", retry_at=NOW, at=NOW) == 0
        )
        assert await uow.contacts.fail(other, None, token="mine2", error="x", at=NOW) == 0
        assert await uow.contacts.attempts(other, token="mine") == 0
        assert await uow.contacts.retry_failed(other, at=NOW) == 0
        assert await uow.contacts.mark_all(other, after_id=CustomerId(0), limit=10, at=NOW) == (
            0,
            None,
        )
        await uow.contacts.record_written(shop, bob, added_at=NOW, at=NOW)
        await uow.contacts.record_written(other, ann, added_at=NOW, at=NOW)  # not theirs
        assert await uow.contacts.added_at(shop, ann) is None
        assert await uow.contacts.added_at(other, ann) is None
        assert not await uow.contacts.is_pending(other, bob)
        assert await uow.contacts.added_at(other, bob) is None
        assert await uow.views.contact_sync_failures(other, limit=10) == []
        assert await uow.views.contact_sync_health(other) == ContactSyncHealth(0, 0, None, None)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.due_merchants(now=NOW + LEASE) == [shop]
        assert [f.customer_id for f in await uow.views.contact_sync_failures(shop, limit=10)] == [
            ann
        ]
    assert await settle(uow_factory, shop, [bob], "mine2") == 1


# -- the unit of work --------------------------------------------------------------------------


async def test_a_commit_that_marks_contacts_nudges_the_worker(sql_database: Database) -> None:
    queue = FakeJobQueue()
    uow_factory = SqlUnitOfWorkFactory(sql_database, on_outbox_work=queue.nudge_delivery)
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop, active=False)
    [ann] = await add_customers(uow_factory, shop, "ann@example.cz")
    assert queue.nudges == []  # a stored key is no work
    async with uow_factory() as uow:  # the activation's backfill starts at once
        await uow.ecomail.activate(shop, list_id="7", list_name="Customers", at=NOW)
        await uow.commit()
    assert queue.nudges == [None]
    await mark(uow_factory, shop, ann)
    assert queue.nudges == [None] * 2
    await claim(uow_factory, shop, "w")  # claiming gives no one new work
    await fail(uow_factory, shop, None, "w")
    assert queue.nudges == [None] * 2
    async with uow_factory() as uow:
        await uow.contacts.retry_failed(shop, at=NOW)
        await uow.commit()
    assert queue.nudges == [None] * 3
    async with uow_factory() as uow:  # "Re-push all customers"
        await uow.ecomail.request_backfill(shop, at=NOW)
        await uow.commit()
    assert queue.nudges == [None] * 4


async def test_the_fake_counts_commits_that_mark_contacts_as_work() -> None:
    store = InMemoryStore()
    shop = await add_merchant(store.unit_of_work)
    await connect(store.unit_of_work, shop, active=False)
    [ann] = await add_customers(store.unit_of_work, shop, "ann@example.cz")
    assert store.outbox_commits == 0
    async with store.unit_of_work() as uow:
        await uow.ecomail.activate(shop, list_id="7", list_name="Customers", at=NOW)
        await uow.commit()
    assert store.outbox_commits == 1
    await mark(store.unit_of_work, shop, ann)
    assert store.outbox_commits == 2
    await claim(store.unit_of_work, shop, "w")
    await fail(store.unit_of_work, shop, None, "w")
    assert store.outbox_commits == 2
    async with store.unit_of_work() as uow:
        await uow.contacts.retry_failed(shop, at=NOW)
        await uow.commit()
    assert store.outbox_commits == 3
    async with store.unit_of_work() as uow:
        await uow.ecomail.request_backfill(shop, at=NOW)
        await uow.commit()
    assert store.outbox_commits == 4


# -- OutboxRepository.defer ------------------------------------------------------------------


async def test_a_deferred_outbox_item_waits_without_counting_an_attempt(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    async with uow_factory() as uow:
        item_id = await uow.outbox.add(shop, "ecomail.event", {"label": "credit"}, at=NOW)
        await uow.commit()

    async def claim_items(token: str, now: datetime) -> list[tuple[int, int]]:
        async with uow_factory() as uow:
            items = await uow.outbox.claim(token=token, now=now, lease=LEASE, limit=10)
            await uow.commit()
        return [(item.id, item.attempts) for item in items]

    async def defer(token: str, until: datetime) -> bool:
        async with uow_factory() as uow:
            held = await uow.outbox.defer(item_id, token=token, until=until)
            await uow.commit()
        return held

    until = NOW + 2 * SECOND
    for round_ in range(3):
        now = NOW if round_ == 0 else until
        assert await claim_items(f"w{round_}", now) == [(item_id, 1)]  # never more than one
        assert not await defer("somebody else", until)
        until = now + 2 * SECOND
        assert await defer(f"w{round_}", until)
        assert not await defer(f"w{round_}", until)  # no longer held
        assert await claim_items("early", until - SECOND) == []
        async with uow_factory(read_only=True) as uow:
            assert await uow.outbox.next_due() == until
            health = await uow.views.delivery_health(shop)
        assert (health.pending, health.failed) == (1, 0)


async def test_a_contact_claim_is_renewed_by_its_holder_and_a_dropped_one_is_due_at_once(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await add_merchant(uow_factory)
    await connect(uow_factory, shop)
    ann, bob = await add_customers(uow_factory, shop, "ann@example.cz", "bob@example.cz")
    await mark(uow_factory, shop, ann, bob)
    assert ids_of(await claim(uow_factory, shop, "alive")) == [ann, bob]
    async with uow_factory() as uow:
        assert await uow.contacts.renew_claim(token="alive", until=NOW + 2 * LEASE) == 2
        assert await uow.contacts.renew_claim(token="nobody", until=NOW + 9 * LEASE) == 0
        await uow.commit()
    assert await claim(uow_factory, shop, "other", now=NOW + LEASE) == []
    async with uow_factory() as uow:
        assert await uow.contacts.drop_claim(token="alive") == 2
        assert await uow.contacts.attempts(shop, token="alive") == 0
        await uow.commit()
    assert ids_of(await claim(uow_factory, shop, "other", now=NOW + LEASE)) == [ann, bob]
    async with uow_factory(read_only=True) as uow:
        assert await uow.contacts.attempts(shop, token="other") == 0
