"""The Ecomail integration end to end: the real adapters (SQLite, then PostgreSQL), the real
Ecomail client over HTTP, and the Ecomail emulator on a port of its own.

The worker's job is driven by hand (``worker.deliver_once``, what every run does) with a
clock the test moves, so retries and claims that run out are reached without waiting.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ellity.adapters.ecomail.limiter import LocalRequestLimiter
from ellity.adapters.ecomail.platforms import EcomailPlatforms, EcomailSettings
from ellity.adapters.sql.database import Database
from ellity.deps import Deps
from ellity.domain.model.consent import EcomailAdd, MarketingConsent
from ellity.domain.model.contact import FIELD_TYPES, cleared_fields
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.services import contact_backfill, integration, nightly
from ellity.domain.services.customers import (
    CustomerInput,
    contact_snapshots,
    regenerate_pin,
    update_customer,
    upsert_customer,
)
from ellity.domain.services.points import earn_points
from ellity.domain.services.work_loop import CLAIM_LEASE
from ellity.ports.marketing import InvalidApiKey
from ellity.worker import deliver_once
from tests.consenting import set_consent, set_ecomail_add
from tests.e2e.conftest import deps_on, new_shop
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.fakes import FakeClock

KEY_A, KEY_B = "anna-key-0001", "bob-key-0002"
P = Points.parse


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, EmulatorServer]]:
    emu = Emulator()
    with EmulatorServer(emu, port=0) as server:
        yield emu, server


@dataclass
class World:
    deps: Deps
    clock: FakeClock
    emu: Emulator
    server: EmulatorServer

    async def sync(self, rounds: int = 10) -> int:
        """Run the worker's job until a round does nothing (moving past short waits)."""
        total = 0
        for _ in range(rounds):
            done = await deliver_once(self.deps, "test-worker", limit=1000)
            total += done
            if not done:
                self.clock.advance(timedelta(seconds=3))  # events waiting for their contact
                done = await deliver_once(self.deps, "test-worker", limit=1000)
                total += done
                if not done:
                    break
        return total

    async def connect(
        self,
        merchant_id: MerchantId,
        key: str,
        list_id: int,
        *,
        adding: EcomailAdd = EcomailAdd.CUSTOMERS,
    ) -> None:
        """Activate the merchant's integration on ``list_id``; ``adding``: whom Ellity adds
        (every customer unless said: most tests are about what is written, not to whom)."""
        await set_ecomail_add(self.deps.uow, merchant_id, adding)
        common = {
            "uow_factory": self.deps.uow,
            "platforms": self.deps.marketing,
            "secret_box": self.deps.secret_box,
            "clock": self.deps.clock,
        }
        await integration.connect_ecomail(merchant_id, key, **common)  # type: ignore[arg-type]
        await integration.activate_ecomail(merchant_id, str(list_id), **common)  # type: ignore[arg-type]


@pytest.fixture
async def world(
    sql_database: Database, tmp_path: Path, emulator: tuple[Emulator, EmulatorServer]
) -> AsyncIterator[World]:
    emu, server = emulator
    clock = FakeClock()
    async with deps_on(sql_database, tmp_path, clock) as deps:
        platforms = EcomailPlatforms(
            LocalRequestLimiter(limit=950, window=60.0, max_wait=5.0),
            EcomailSettings(base_url=server.url, connect_timeout=1.0, read_timeout=1.0),
        )
        try:
            yield World(dataclasses.replace(deps, marketing=platforms), clock, emu, server)
        finally:
            await platforms.aclose()


async def add_customer(
    world: World, merchant_id: MerchantId, email: str | None, **kw: object
) -> CustomerId:
    result = await upsert_customer(
        merchant_id,
        CustomerInput(email=email, shop_customer_id=None if email else f"shop-{id(kw)}", **kw),  # type: ignore[arg-type]
        uow=world.deps.uow(),
        clock=world.clock,
        rng=world.deps.rng,
    )
    customer_id = result.view.customer.id
    assert customer_id is not None
    return customer_id


async def expected_fields(
    world: World, merchant_id: MerchantId, ids: list[CustomerId]
) -> dict[str, dict[str, Any]]:
    snapshots = await contact_snapshots(
        merchant_id, ids, uow=world.deps.uow(read_only=True), clock=world.clock
    )
    return {s.email.lower(): dict(s.fields) for s in snapshots if s.email}


def stored_fields(emu_list: object) -> dict[str, dict[str, Any]]:
    members = emu_list.members  # type: ignore[attr-defined]
    return {
        email: {k: v for k, v in m.custom_fields.items() if k.startswith("ellity_")}
        for email, m in members.items()
    }


async def test_activation_creates_the_fields_and_every_customer_reaches_ecomail(
    world: World,
) -> None:
    shop = await new_shop(world.deps, "anna")
    ids = [
        await add_customer(world, shop.id, "ann@example.cz", first_name="Ann"),
        await add_customer(world, shop.id, "Ben@Example.cz", registered=True),
        await add_customer(world, shop.id, "cyril@example.cz", last_name="Ćirić"),
    ]
    no_email = await add_customer(world, shop.id, None)
    await earn_points(
        shop.id, ids[0], P("1250.50"), order_ref="o-1", uow=world.deps.uow(), clock=world.clock
    )
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")

    with pytest.raises(InvalidApiKey):
        await world.connect(shop.id, "a-wrong-key", list_id)
    async with world.deps.uow(read_only=True) as uow:
        assert await uow.ecomail.get(shop.id) is None  # nothing stored

    await world.connect(shop.id, KEY_A, list_id)
    emu_list = account.lists[list_id]
    assert {k: v["type"] for k, v in emu_list.fields.items()} == FIELD_TYPES
    await world.sync()

    assert stored_fields(emu_list) == await expected_fields(world, shop.id, [*ids, no_email])
    assert emu_list.members["ann@example.cz"].custom_fields["ellity_credit"] == "1 250,50"
    assert emu_list.members["ann@example.cz"].custom_fields["ellity_credit_num"] == 1250
    async with world.deps.uow(read_only=True) as uow:
        health = await uow.views.contact_sync_health(shop.id)
    assert (health.pending, health.failed) == (0, 0)


async def test_earning_points_updates_the_fields_and_then_sends_one_credit_event(
    world: World,
) -> None:
    shop = await new_shop(world.deps, "anna")
    ann = await add_customer(world, shop.id, "ann@example.cz")
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    await world.connect(shop.id, KEY_A, list_id)
    await world.sync()
    account.events.clear()
    requests_before = len(world.emu.requests)

    await earn_points(
        shop.id, ann, P("120"), order_ref="o-1", uow=world.deps.uow(), clock=world.clock
    )
    await world.sync()

    member = account.lists[list_id].members["ann@example.cz"]
    assert member.custom_fields["ellity_credit"] == "120"
    assert member.custom_fields["ellity_credit_num"] == 120
    assert len(account.events) == 1
    event = account.events[0]
    assert (event["category"], event["action"], event["label"]) == ("ellity", "change", "credit")
    value = json.loads(event["value"])
    assert (value["change"], value["balance"], value["reason"]) == ("120.00", "120.00", "earn")
    paths = [r.path for r in world.emu.requests[requests_before:] if r.status < 400]
    fields_at = max(i for i, p in enumerate(paths) if "subscribe" in p or "subscriber" in p)
    event_at = paths.index("/tracker/events")
    assert fields_at < event_at  # the fields first, then the event


async def test_a_new_pin_sends_a_pin_event_after_the_new_pin_field(world: World) -> None:
    shop = await new_shop(world.deps, "anna")
    ann = await add_customer(world, shop.id, "ann@example.cz")
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    await world.connect(shop.id, KEY_A, list_id)
    await world.sync()
    account.events.clear()

    view = await regenerate_pin(
        shop.id, ann, uow=world.deps.uow(), clock=world.clock, rng=world.deps.rng
    )
    await world.sync()

    assert [e["label"] for e in account.events] == ["pin"]
    assert (
        account.lists[list_id].members["ann@example.cz"].custom_fields["ellity_pin"]
        == view.customer.pin
    )
    assert view.customer.pin not in account.events[0]["value"]


async def test_changes_made_while_ecomail_fails_all_arrive_once_it_recovers(
    world: World,
) -> None:
    shop = await new_shop(world.deps, "anna")
    ids = [await add_customer(world, shop.id, f"c{i}@example.cz") for i in range(5)]
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    await world.connect(shop.id, KEY_A, list_id)
    await world.sync()
    account.events.clear()
    faults = world.emu.faults

    async def change_during(fault: str, n: int) -> None:
        for i, customer_id in enumerate(ids):
            await earn_points(
                shop.id,
                customer_id,
                P("1"),
                order_ref=f"{fault}-{n}-{i}",
                uow=world.deps.uow(),
                clock=world.clock,
            )
        await deliver_once(world.deps, "test-worker", limit=1000)
        world.clock.advance(timedelta(minutes=10))
        await deliver_once(world.deps, "test-worker", limit=1000)

    faults.rate_limit_next(1000, retry_after=1)
    await change_during("limited", 1)
    faults.clear()
    faults.fail_always(500)
    await change_during("failing", 2)
    faults.clear()
    faults.delay = 2.0  # longer than the client's read timeout
    await change_during("slow", 3)
    faults.delay = 0.0
    world.server.stop()
    await change_during("refused", 4)
    world.server.start()

    world.clock.advance(timedelta(hours=6))
    await world.sync(rounds=30)

    assert stored_fields(account.lists[list_id]) == await expected_fields(world, shop.id, ids)
    for email in (f"c{i}@example.cz" for i in range(5)):
        assert account.lists[list_id].members[email].custom_fields["ellity_credit_num"] == 4
    credit_events = [e for e in account.events if e["label"] == "credit"]
    assert len(credit_events) == 4 * len(ids)  # every change's event, none twice
    assert world.emu.max_requests_in_window(KEY_A, 60.0) <= 1000


async def test_a_worker_that_dies_holding_a_batch_loses_none_of_it(world: World) -> None:
    shop = await new_shop(world.deps, "anna")
    ids = [await add_customer(world, shop.id, f"c{i}@example.cz") for i in range(4)]
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    await world.connect(shop.id, KEY_A, list_id)
    await contact_backfill.mark_backfills(uow_factory=world.deps.uow, clock=world.clock)
    async with world.deps.uow() as uow:  # a worker claims the batch, then is killed
        claimed = await uow.contacts.claim(
            shop.id,
            token="dead-worker",
            now=world.clock.now(),
            lease=CLAIM_LEASE,
            limit=3000,
        )
        await uow.commit()
    assert len(claimed) == len(ids)
    assert await world.sync() == 0  # the claim still holds: nothing is written twice at once

    world.clock.advance(CLAIM_LEASE + timedelta(seconds=1))
    await world.sync()

    assert stored_fields(account.lists[list_id]) == await expected_fields(world, shop.id, ids)


async def test_two_merchants_never_see_each_others_contacts(world: World) -> None:
    anna = await new_shop(world.deps, "anna")
    bob = await new_shop(world.deps, "bob")
    await add_customer(world, anna.id, "ann@example.cz")
    bob_customer = await add_customer(world, bob.id, "bert@example.cz")
    account_a, account_b = world.emu.add_account(KEY_A), world.emu.add_account(KEY_B)
    list_a, list_b = account_a.add_list("Anna's"), account_b.add_list("Bob's")
    await world.connect(anna.id, KEY_A, list_a)
    await world.connect(bob.id, KEY_B, list_b)
    await earn_points(
        bob.id, bob_customer, P("5"), order_ref="b-1", uow=world.deps.uow(), clock=world.clock
    )
    await world.sync()

    assert set(account_a.lists[list_a].members) == {"ann@example.cz"}
    assert set(account_b.lists[list_b].members) == {"bert@example.cz"}
    assert account_a.events == []
    assert [e["email"] for e in account_b.events] == ["bert@example.cz"]


async def test_an_event_waits_while_its_contact_fields_cannot_be_written(world: World) -> None:
    shop = await new_shop(world.deps, "anna")
    ann = await add_customer(world, shop.id, "ann@example.cz")
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    await world.connect(shop.id, KEY_A, list_id)
    await world.sync()
    account.events.clear()

    await earn_points(
        shop.id, ann, P("7"), order_ref="o-7", uow=world.deps.uow(), clock=world.clock
    )
    world.emu.faults.fail_next(1, status=503)  # the contact update fails once
    await deliver_once(world.deps, "test-worker", limit=1000)
    world.clock.advance(timedelta(seconds=3))
    await deliver_once(world.deps, "test-worker", limit=1000)

    member = account.lists[list_id].members["ann@example.cz"]
    assert member.custom_fields["ellity_credit_num"] == 0
    assert account.events == []  # the event did not overtake the fields

    world.clock.advance(timedelta(minutes=1))
    await world.sync()
    assert member.custom_fields["ellity_credit_num"] == 7
    assert [e["label"] for e in account.events] == ["credit"]


async def test_an_email_change_empties_the_old_contacts_fields_and_leaves_its_status(
    world: World,
) -> None:
    shop = await new_shop(world.deps, "anna")
    ann = await add_customer(world, shop.id, "ann@exmaple.cz", first_name="Ann")  # anonymous
    ben = await add_customer(world, shop.id, "ben@exmaple.cz", registered=True)
    for n, customer_id in enumerate((ann, ben)):
        await earn_points(
            shop.id,
            customer_id,
            P("120"),
            order_ref=f"o-{n}",
            uow=world.deps.uow(),
            clock=world.clock,
        )
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    await world.connect(shop.id, KEY_A, list_id)
    await world.sync()
    emu_list = account.lists[list_id]
    emu_list.unsubscribe_by_link("ann@exmaple.cz")
    before = {
        email: (m.status, m.subscribed_at, m.unsubscribed_at)
        for email, m in emu_list.members.items()
    }
    old_pin = stored_fields(emu_list)["ann@exmaple.cz"]["ellity_pin"]
    assert old_pin != ""
    account.events.clear()

    pins = []
    for customer_id, email in ((ann, "ann@example.cz"), (ben, "ben@example.cz")):
        view = await update_customer(
            shop.id,
            customer_id,
            CustomerInput(email=email),
            uow=world.deps.uow(),
            clock=world.clock,
            rng=world.deps.rng,
        )
        pins.append(view.customer.pin)
    await world.sync()

    for email in ("ann@exmaple.cz", "ben@exmaple.cz"):
        old = emu_list.members[email]
        assert (old.status, old.subscribed_at, old.unsubscribed_at) == before[email]
    stored = stored_fields(emu_list)
    assert stored["ann@exmaple.cz"] == stored["ben@exmaple.cz"] == cleared_fields()
    expected = await expected_fields(world, shop.id, [ann, ben])
    assert stored["ann@example.cz"] == expected["ann@example.cz"]
    assert stored["ben@example.cz"] == expected["ben@example.cz"]
    assert stored["ann@example.cz"]["ellity_credit_num"] == 120
    # the anonymous customer got a new PIN, announced at the new address; the registered none
    assert stored["ann@example.cz"]["ellity_pin"] == pins[0] != old_pin
    assert pins[1] is None
    assert [(e["email"], e["label"]) for e in account.events] == [("ann@example.cz", "pin")]
    async with world.deps.uow(read_only=True) as uow:
        health = await uow.views.contact_sync_health(shop.id)
    assert (health.pending, health.failed) == (0, 0)


# -- consent decides who is added -------------------------------------------------------------


async def consent(
    world: World, merchant_id: MerchantId, customer_id: CustomerId, value: MarketingConsent
) -> None:
    """The e-shop sets the customer's consent (what the API's ``marketing_consent`` does)."""
    await set_consent(world.deps.uow, merchant_id, customer_id, value, clock=world.clock)


async def test_with_consented_activation_adds_only_customers_who_granted_consent(
    world: World,
) -> None:
    shop = await new_shop(world.deps, "anna")
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    emu_list = account.lists[list_id]
    emu_list.add_member("una@example.cz", status=2, custom_fields={"colour": "blue"})
    una = await add_customer(world, shop.id, "una@example.cz")  # unknown, a member already
    ulf = await add_customer(world, shop.id, "ulf@example.cz")  # unknown, not a member
    gil = await add_customer(world, shop.id, "gil@example.cz")
    rob = await add_customer(world, shop.id, "rob@example.cz")
    await consent(world, shop.id, gil, MarketingConsent.GRANTED)
    await consent(world, shop.id, rob, MarketingConsent.REFUSED)

    await world.connect(shop.id, KEY_A, list_id, adding=EcomailAdd.CONSENTED)
    await world.sync()

    members = emu_list.members
    assert set(members) == {"una@example.cz", "gil@example.cz"}
    assert members["gil@example.cz"].status == 1
    assert members["una@example.cz"].status == 2  # her status is hers
    assert members["una@example.cz"].custom_fields["colour"] == "blue"
    assert stored_fields(emu_list) == await expected_fields(world, shop.id, [una, gil])
    adds = [r for r in world.emu.requests if r.path.endswith("/subscribe-bulk")]
    assert len(adds) == 1  # gil's, at activation; nobody else was ever added

    # later changes keep it so: the refused one is never added, the unknown only updated
    for customer in (una, ulf, gil, rob):
        await earn_points(
            shop.id,
            customer,
            P("3"),
            order_ref=f"o-{customer}",
            uow=world.deps.uow(),
            clock=world.clock,
        )
    await world.sync()
    assert set(members) == {"una@example.cz", "gil@example.cz"}
    assert members["una@example.cz"].custom_fields["ellity_credit_num"] == 3
    async with world.deps.uow(read_only=True) as uow:
        health = await uow.views.contact_sync_health(shop.id)
    assert (health.pending, health.failed) == (0, 0)


async def test_a_customer_who_refuses_is_unsubscribed_through_the_api_without_a_webhook(
    world: World,
) -> None:
    shop = await new_shop(world.deps, "anna")
    ann = await add_customer(world, shop.id, "ann@example.cz")
    await consent(world, shop.id, ann, MarketingConsent.GRANTED)
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter", webhook_url="http://127.0.0.1:9/ellity-webhook")
    await world.connect(shop.id, KEY_A, list_id, adding=EcomailAdd.CONSENTED)
    await world.sync()
    member = account.lists[list_id].members["ann@example.cz"]
    assert member.status == 1
    world.emu.wait_for_webhooks()
    assert [c.body["payload"]["status"] for c in world.emu.webhook_calls] == ["SUBSCRIBED"]

    requests_before = len(world.emu.requests)
    await consent(world, shop.id, ann, MarketingConsent.REFUSED)
    await world.sync()

    assert member.status == 2
    assert member.unsubscribed_at is not None
    paths = [(r.method, r.path) for r in world.emu.requests[requests_before:]]
    assert paths.count(("DELETE", f"/lists/{list_id}/unsubscribe")) == 1
    assert not any(path.endswith("/subscribe-bulk") for _, path in paths)
    world.emu.wait_for_webhooks()
    assert [c.body["payload"]["status"] for c in world.emu.webhook_calls] == ["SUBSCRIBED"]

    # never added again, whatever changes
    await earn_points(
        shop.id, ann, P("8"), order_ref="o-8", uow=world.deps.uow(), clock=world.clock
    )
    await world.sync()
    assert member.status == 2
    assert member.custom_fields["ellity_credit_num"] == 8
    async with world.deps.uow(read_only=True) as uow:
        health = await uow.views.contact_sync_health(shop.id)
    assert (health.pending, health.failed) == (0, 0)


# -- points past their expiry before the nightly run -----------------------------------------

PRAGUE = ZoneInfo("Europe/Prague")
AFTER_MIDNIGHT = datetime(2025, 3, 11, 0, 30, tzinfo=PRAGUE)  # the 10 March 2025 points are gone
NIGHTLY = datetime(2025, 3, 11, 2, 0, tzinfo=PRAGUE)
SPRING = datetime(2024, 4, 19, 9, 0, tzinfo=PRAGUE)


async def test_the_fields_ellity_writes_after_midnight_leave_out_expired_points(
    world: World,
) -> None:
    shop = await new_shop(world.deps, "anna")
    ann = await add_customer(world, shop.id, "ann@example.cz", first_name="Ann")
    cyril = await add_customer(world, shop.id, "cyril@example.cz")
    uow, clock = world.deps.uow, world.clock
    await earn_points(shop.id, ann, P("100"), order_ref="a-1", uow=uow(), clock=clock)
    await earn_points(shop.id, cyril, P("20"), order_ref="c-1", uow=uow(), clock=clock)
    clock.set(SPRING)
    await earn_points(shop.id, ann, P("30"), order_ref="a-2", uow=uow(), clock=clock)
    account = world.emu.add_account(KEY_A)
    list_id = account.add_list("Newsletter")
    await world.connect(shop.id, KEY_A, list_id)
    await world.sync()
    members = account.lists[list_id].members
    assert members["ann@example.cz"].custom_fields["ellity_credit_num"] == 130

    clock.set(AFTER_MIDNIGHT)
    await update_customer(
        shop.id, ann, CustomerInput(first_name="Anna"), uow=uow(), clock=clock, rng=world.deps.rng
    )
    await world.sync()
    fields = members["ann@example.cz"].custom_fields
    assert (fields["ellity_credit"], fields["ellity_credit_num"]) == ("30", 30)
    assert fields["ellity_next_expiration_date"] == "2025-04-19"
    assert fields["ellity_next_expiration_value_num"] == 30
    account.events.clear()

    clock.set(NIGHTLY)
    result = await nightly.expire_points(shop.id, uow_factory=uow, clock=clock)
    assert (result.customers, result.recorded.events) == (2, 2)
    await world.sync()
    credits = [e for e in account.events if e["label"] == "credit"]
    assert sorted((e["email"], json.loads(e["value"])["change"]) for e in credits) == [
        ("ann@example.cz", "-100.00"),
        ("cyril@example.cz", "-20.00"),
    ]
    assert members["cyril@example.cz"].custom_fields["ellity_credit_num"] == 0
    assert members["ann@example.cz"].custom_fields["ellity_credit_num"] == 30
