"""The Ecomail client against the local Ecomail emulator over real HTTP: what the port
promises (adds, updates, never re-subscribes, typed fields, events, unsubscribes) and how the
emulator's faults reach the caller. The unsubscribe cases run on the fake too."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
import pytest

from ellity.adapters.ecomail import (
    EcomailPlatforms,
    EcomailSettings,
    LocalRequestLimiter,
    RedisRequestLimiter,
)
from ellity.ports.marketing import (
    BULK_LIMIT,
    BudgetExhausted,
    ContactData,
    InvalidApiKey,
    ListNotFound,
    MarketingPlatform,
    MarketingRateLimited,
    MarketingRejected,
    MarketingUnavailable,
    MemberFilter,
    SubscriptionStatus,
    TrackerEvent,
    TypedValue,
)
from tests.ecomail_emulator import Account, Emulator, EmulatorServer, MailingList
from tests.fakes.marketing import FakeMarketingPlatform, FakeMarketingPlatforms
from tests.processes import free_port

KEY = "key-a-0123456789abcdef"
REDIS_URL = os.environ.get("ELLITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
READ_TIMEOUT = 0.5


@dataclass
class Ecomail:
    emu: Emulator
    server: EmulatorServer
    list_id: int

    @property
    def account(self) -> Account:
        return self.emu.accounts[KEY]

    @property
    def lst(self) -> MailingList:
        return self.account.lists[self.list_id]


@pytest.fixture
def ecomail() -> Iterator[Ecomail]:
    with Emulator(rate_limit=1000, rate_window=60.0) as emu:
        account = emu.add_account(KEY)
        list_id = account.add_list("Newsletter", double_optin=False, webhook_url=None)
        with EmulatorServer(emu, port=0) as server:
            yield Ecomail(emu, server, list_id)


def settings_for(ecomail: Ecomail) -> EcomailSettings:
    return EcomailSettings(
        base_url=ecomail.server.url, connect_timeout=2.0, read_timeout=READ_TIMEOUT
    )


@pytest.fixture
async def platforms(ecomail: Ecomail) -> AsyncIterator[EcomailPlatforms]:
    limiter = LocalRequestLimiter(limit=950, window=60.0, max_wait=0.5)
    async with EcomailPlatforms(limiter, settings_for(ecomail)) as platforms:
        yield platforms


@pytest.fixture
def platform(platforms: EcomailPlatforms) -> MarketingPlatform:
    return platforms.for_key(KEY, account="anna")


def ann(points: int = 120, *, first_name: str = "Ann", last_name: str = "Novak") -> ContactData:
    return ContactData(
        email="ann@example.cz",
        first_name=first_name,
        last_name=last_name,
        custom_fields={
            "ELLITY_Points": TypedValue(points, "int"),
            "ellity_expires": TypedValue("2025-03-31", "date"),
            "ellity_tier": TypedValue("gold", "string"),
        },
    )


def plain(email: str, points: int = 0) -> ContactData:
    return ContactData(email=email, custom_fields={"ellity_points": TypedValue(points, "int")})


def event(email: str = "ann@example.cz") -> TrackerEvent:
    return TrackerEvent(
        email=email,
        category="ellity",
        action="points_credited",
        label="Nákup 2024-03-10",
        value={"points": 120, "balance": 250, "note": "věrnost"},
    )


# --- the port's promises ----------------------------------------------------------------


async def test_check_key_accepts_the_right_key(platform: MarketingPlatform) -> None:
    await platform.check_key()


async def test_check_key_refuses_a_wrong_key(platforms: EcomailPlatforms) -> None:
    with pytest.raises(InvalidApiKey):
        await platforms.for_key("not-the-key", account="anna").check_key()


async def test_lists_are_all_of_the_accounts_lists_with_ids_as_strings(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    vip = ecomail.account.add_list("VIP")
    found = await platform.lists()
    assert sorted((x.id, x.name) for x in found) == sorted(
        [(str(ecomail.list_id), "Newsletter"), (str(vip), "VIP")]
    )


async def test_add_contacts_creates_typed_fields_under_lower_cased_keys(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    list_id = str(ecomail.list_id)
    assert dict((await platform.list_detail(list_id)).custom_fields) == {}
    await platform.add_contacts(list_id, [ann()])
    detail = await platform.list_detail(list_id)
    assert (detail.id, detail.name) == (list_id, "Newsletter")
    assert dict(detail.custom_fields) == {
        "ellity_points": "int",
        "ellity_expires": "date",
        "ellity_tier": "string",
    }


async def test_add_contacts_adds_new_ones_updates_existing_ones_and_counts_the_added(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    list_id = str(ecomail.list_id)
    assert await platform.add_contacts(list_id, [ann(), plain("bob@example.cz", 5)]) == 2
    again = await platform.add_contacts(list_id, [ann(points=200), plain("cyril@example.cz", 7)])
    # Whether Ecomail's "inserts" counts the updated members too is unconfirmed (the emulator
    # assumes it does); the port promises "how many were added".
    assert again in (1, 2)
    members = ecomail.lst.members
    assert set(members) == {"ann@example.cz", "bob@example.cz", "cyril@example.cz"}
    assert all(m.status == SubscriptionStatus.SUBSCRIBED for m in members.values())
    assert members["ann@example.cz"].custom_fields["ellity_points"] == 200
    assert (members["ann@example.cz"].name, members["ann@example.cz"].surname) == ("Ann", "Novak")


async def test_add_contacts_never_clears_a_name_it_does_not_know(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    list_id = str(ecomail.list_id)
    await platform.add_contacts(list_id, [ann()])
    await platform.add_contacts(list_id, [ann(first_name="", last_name="")])
    member = ecomail.lst.members["ann@example.cz"]
    assert (member.name, member.surname) == ("Ann", "Novak")


async def test_add_contacts_never_resubscribes_someone_who_unsubscribed(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    list_id = str(ecomail.list_id)
    await platform.add_contacts(list_id, [ann(), plain("bob@example.cz")])
    ecomail.lst.members["ann@example.cz"].status = 2  # unsubscribed in Ecomail's app
    async with httpx.AsyncClient(base_url=ecomail.server.url, headers={"key": KEY}) as http:
        answer = await http.request(
            "DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "bob@example.cz"}
        )
        assert answer.status_code == 200

    await platform.add_contacts(list_id, [ann(points=300), plain("bob@example.cz", 9)])

    for email in ("ann@example.cz", "bob@example.cz"):
        assert ecomail.lst.members[email].status == SubscriptionStatus.UNSUBSCRIBED
    membership = await platform.membership(list_id, "bob@example.cz")
    assert membership is not None
    assert membership.status is SubscriptionStatus.UNSUBSCRIBED
    assert membership.unsubscribed_at is not None


async def test_update_contacts_updates_members_only(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    list_id = str(ecomail.list_id)
    await platform.add_contacts(list_id, [ann(), plain("bob@example.cz", 1)])
    ecomail.lst.members["bob@example.cz"].status = 2

    updated = await platform.update_contacts(
        list_id, [plain("ann@example.cz", 500), plain("bob@example.cz", 2), plain("zoe@example.cz")]
    )

    assert updated == 2
    members = ecomail.lst.members
    assert "zoe@example.cz" not in members
    assert members["ann@example.cz"].custom_fields["ellity_points"] == 500
    assert members["ann@example.cz"].status == SubscriptionStatus.SUBSCRIBED
    assert members["bob@example.cz"].custom_fields["ellity_points"] == 2
    assert members["bob@example.cz"].status == SubscriptionStatus.UNSUBSCRIBED


async def test_a_full_bulk_call_reaches_ecomail_whole(ecomail: Ecomail) -> None:
    # a 3000-contact call on a busy machine may take longer than the short timeout the
    # fault tests use: this test is about the call's shape, not its speed
    patient = dataclasses.replace(settings_for(ecomail), read_timeout=30.0)
    async with EcomailPlatforms(LocalRequestLimiter(), patient) as platforms:
        platform = platforms.for_key(KEY, account="anna")
        contacts = [plain(f"c{n:04}@example.cz", n) for n in range(BULK_LIMIT)]
        assert await platform.add_contacts(str(ecomail.list_id), contacts) == BULK_LIMIT
        assert len(ecomail.lst.members) == BULK_LIMIT
        assert await platform.update_contacts(str(ecomail.list_id), contacts) == BULK_LIMIT


async def test_membership_of_a_member_and_of_a_stranger(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    list_id = str(ecomail.list_id)
    before = datetime.now(UTC).replace(microsecond=0)
    await platform.add_contacts(list_id, [ann(), plain("ann+vip@example.cz", 3)])

    member = await platform.membership(list_id, "ann@example.cz")
    assert member is not None
    assert member.email == "ann@example.cz"
    assert member.status is SubscriptionStatus.SUBSCRIBED
    assert member.subscribed_at is not None
    assert member.subscribed_at.tzinfo is not None
    assert member.subscribed_at >= before
    assert member.unsubscribed_at is None
    assert member.custom_fields["ellity_points"] == 120
    assert member.custom_fields["ellity_tier"] == "gold"

    plus = await platform.membership(list_id, "ann+vip@example.cz")
    assert plus is not None
    assert plus.custom_fields["ellity_points"] == 3
    assert await platform.membership(list_id, "stranger@example.cz") is None


async def test_send_event_stores_the_event_with_its_value_as_json(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    await platform.add_contacts(str(ecomail.list_id), [ann()])
    await platform.send_event(event())
    [stored] = ecomail.account.events
    assert {k: stored[k] for k in ("email", "category", "action", "label")} == {
        "email": "ann@example.cz",
        "category": "ellity",
        "action": "points_credited",
        "label": "Nákup 2024-03-10",
    }
    assert json.loads(stored["value"]) == {"points": 120, "balance": 250, "note": "věrnost"}


async def test_an_event_for_an_unknown_email_is_rejected(platform: MarketingPlatform) -> None:
    with pytest.raises(MarketingRejected) as raised:
        await platform.send_event(event("nobody@example.cz"))
    assert 400 <= raised.value.status < 500
    assert not isinstance(raised.value, ListNotFound)


async def test_a_deleted_list_is_not_found(ecomail: Ecomail, platform: MarketingPlatform) -> None:
    list_id = str(ecomail.list_id)
    await platform.add_contacts(list_id, [ann()])
    ecomail.account.delete_list(ecomail.list_id)
    with pytest.raises(ListNotFound):
        await platform.list_detail(list_id)
    with pytest.raises(ListNotFound):
        await platform.add_contacts(list_id, [ann()])
    with pytest.raises(ListNotFound):
        await platform.update_contacts(list_id, [ann()])
    assert await platform.lists() == []


# --- unsubscribe_contact: the same cases on the emulator (over HTTP) and on the fake ---------


class Scene(Protocol):
    """One Ecomail account with one list, reached through ``platform``."""

    @property
    def platform(self) -> MarketingPlatform: ...

    @property
    def list_id(self) -> str: ...

    def add_member(
        self,
        email: str,
        status: SubscriptionStatus,
        fields: Mapping[str, str | int] | None = None,
    ) -> None: ...

    def delete_list(self) -> None: ...


@dataclass
class EmulatorScene:
    ecomail: Ecomail
    platform: MarketingPlatform

    @property
    def list_id(self) -> str:
        return str(self.ecomail.list_id)

    def add_member(
        self,
        email: str,
        status: SubscriptionStatus,
        fields: Mapping[str, str | int] | None = None,
    ) -> None:
        self.ecomail.lst.add_member(email, status=int(status), custom_fields=dict(fields or {}))

    def delete_list(self) -> None:
        self.ecomail.account.delete_list(self.ecomail.list_id)


@dataclass
class FakeScene:
    platform: FakeMarketingPlatform
    list_id: str

    def add_member(
        self,
        email: str,
        status: SubscriptionStatus,
        fields: Mapping[str, str | int] | None = None,
    ) -> None:
        self.platform.add_member(self.list_id, email, status=status, fields=fields)

    def delete_list(self) -> None:
        self.platform.delete_list(self.list_id)


@pytest.fixture(params=["emulator", "fake"])
def scene(request: pytest.FixtureRequest) -> Scene:
    if request.param == "fake":
        fake = FakeMarketingPlatform(KEY)
        return FakeScene(fake, fake.add_list("Newsletter").id)
    return EmulatorScene(request.getfixturevalue("ecomail"), request.getfixturevalue("platform"))


async def test_unsubscribe_contact_unsubscribes_a_subscribed_member(scene: Scene) -> None:
    scene.add_member("ann@example.cz", SubscriptionStatus.SUBSCRIBED)
    scene.add_member("bob@example.cz", SubscriptionStatus.SUBSCRIBED)

    assert await scene.platform.unsubscribe_contact(scene.list_id, "ann@example.cz") is True

    ann_now = await scene.platform.membership(scene.list_id, "ann@example.cz")
    bob_now = await scene.platform.membership(scene.list_id, "bob@example.cz")
    assert ann_now is not None and ann_now.status is SubscriptionStatus.UNSUBSCRIBED
    assert ann_now.unsubscribed_at is not None
    assert bob_now is not None and bob_now.status is SubscriptionStatus.SUBSCRIBED


async def test_unsubscribe_contact_of_a_member_unsubscribed_before_is_true_and_changes_nothing(
    scene: Scene,
) -> None:
    """Ecomail answers the membership row either way (the emulator's reading of §6)."""
    scene.add_member("ann@example.cz", SubscriptionStatus.UNSUBSCRIBED)
    before = await scene.platform.membership(scene.list_id, "ann@example.cz")

    assert await scene.platform.unsubscribe_contact(scene.list_id, "ann@example.cz") is True

    after = await scene.platform.membership(scene.list_id, "ann@example.cz")
    assert before is not None and after is not None
    assert after.status is SubscriptionStatus.UNSUBSCRIBED
    assert after.unsubscribed_at == before.unsubscribed_at


async def test_unsubscribe_contact_of_someone_not_in_the_list_is_false(scene: Scene) -> None:
    scene.add_member("ann@example.cz", SubscriptionStatus.SUBSCRIBED)

    assert await scene.platform.unsubscribe_contact(scene.list_id, "bob@example.cz") is False

    assert await scene.platform.membership(scene.list_id, "bob@example.cz") is None


async def test_unsubscribe_contact_on_a_deleted_list_is_not_found(scene: Scene) -> None:
    scene.add_member("ann@example.cz", SubscriptionStatus.SUBSCRIBED)
    scene.delete_list()

    with pytest.raises(ListNotFound) as raised:
        await scene.platform.unsubscribe_contact(scene.list_id, "ann@example.cz")
    assert raised.value.status == 404


async def test_unsubscribe_contact_fires_no_list_webhook(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.lst.add_member("ann@example.cz")
    ecomail.lst.webhook_url = f"http://127.0.0.1:{free_port()}/hook"  # recorded even if unheard

    assert await platform.unsubscribe_contact(str(ecomail.list_id), "Ann@Example.cz") is True
    ecomail.emu.wait_for_webhooks()

    assert ecomail.lst.members["ann@example.cz"].status == SubscriptionStatus.UNSUBSCRIBED
    assert ecomail.emu.webhook_calls == []
    assert [(r.method, r.path) for r in ecomail.emu.requests] == [
        ("DELETE", f"/lists/{ecomail.list_id}/unsubscribe")
    ]


async def test_an_unsubscribe_whose_answer_was_lost_is_unavailable_and_true_when_sent_again(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.lst.add_member("ann@example.cz")
    ecomail.emu.faults.lose_answer_next()

    with pytest.raises(MarketingUnavailable, match="HTTP 500"):
        await platform.unsubscribe_contact(str(ecomail.list_id), "ann@example.cz")
    assert ecomail.lst.members["ann@example.cz"].status == SubscriptionStatus.UNSUBSCRIBED
    assert await platform.unsubscribe_contact(str(ecomail.list_id), "ann@example.cz") is True


# --- members: a list read page by page, on the emulator (over HTTP) and on the fake ----------


async def emails_on(scene: Scene, status: MemberFilter, page: int, per_page: int) -> list[str]:
    found = await scene.platform.members(scene.list_id, status=status, page=page, per_page=per_page)
    return [member.email for member in found.members]


async def test_members_come_in_pages_of_per_page_in_the_order_they_joined_the_last_one_partial(
    scene: Scene,
) -> None:
    for n in range(7):
        scene.add_member(f"m{n}@example.cz", SubscriptionStatus.SUBSCRIBED)
    scene.add_member("gone@example.cz", SubscriptionStatus.UNSUBSCRIBED)

    pages = [
        await scene.platform.members(
            scene.list_id, status=MemberFilter.SUBSCRIBED, page=n, per_page=3
        )
        for n in (1, 2, 3, 4)
    ]

    assert [[m.email for m in p.members] for p in pages] == [
        ["m0@example.cz", "m1@example.cz", "m2@example.cz"],
        ["m3@example.cz", "m4@example.cz", "m5@example.cz"],
        ["m6@example.cz"],
        [],
    ]
    assert [(p.page, p.last_page, p.total) for p in pages] == [(n, 3, 7) for n in (1, 2, 3, 4)]
    whole = await scene.platform.members(scene.list_id, status=MemberFilter.SUBSCRIBED, page=1)
    assert (len(whole.members), whole.last_page, whole.total) == (7, 1, 7)


async def test_each_status_filter_returns_only_its_members(scene: Scene) -> None:
    for email, status in [
        ("sub@example.cz", SubscriptionStatus.SUBSCRIBED),
        ("unsub@example.cz", SubscriptionStatus.UNSUBSCRIBED),
        ("soft@example.cz", SubscriptionStatus.SOFT_BOUNCED),
        ("hard@example.cz", SubscriptionStatus.HARD_BOUNCED),
        ("spam@example.cz", SubscriptionStatus.COMPLAINED),
        ("doi@example.cz", SubscriptionStatus.UNCONFIRMED),
    ]:
        scene.add_member(email, status)

    found = {}
    for wanted in MemberFilter:
        page = await scene.platform.members(scene.list_id, status=wanted, page=1, per_page=10)
        found[wanted] = {(m.email, m.status) for m in page.members}
        assert page.total == len(page.members)
        assert {m.status for m in page.members} <= wanted.statuses

    assert found == {
        MemberFilter.SUBSCRIBED: {("sub@example.cz", SubscriptionStatus.SUBSCRIBED)},
        MemberFilter.UNSUBSCRIBED: {("unsub@example.cz", SubscriptionStatus.UNSUBSCRIBED)},
        MemberFilter.BOUNCED: {
            ("soft@example.cz", SubscriptionStatus.SOFT_BOUNCED),
            ("hard@example.cz", SubscriptionStatus.HARD_BOUNCED),
        },
        MemberFilter.COMPLAINED: {("spam@example.cz", SubscriptionStatus.COMPLAINED)},
        MemberFilter.NOT_CONFIRMED: {("doi@example.cz", SubscriptionStatus.UNCONFIRMED)},
    }


async def test_a_members_fields_come_as_stored_and_no_fields_as_an_empty_mapping(
    scene: Scene,
) -> None:
    scene.add_member("bare@example.cz", SubscriptionStatus.SUBSCRIBED)
    scene.add_member(
        "ann@example.cz",
        SubscriptionStatus.UNSUBSCRIBED,
        {"ELLITY_Points": 120, "ellity_tier": "gold"},
    )

    (bare,) = (
        await scene.platform.members(scene.list_id, status=MemberFilter.SUBSCRIBED, page=1)
    ).members
    (ann,) = (
        await scene.platform.members(scene.list_id, status=MemberFilter.UNSUBSCRIBED, page=1)
    ).members

    assert dict(bare.custom_fields) == {}
    assert dict(ann.custom_fields) == {"ellity_points": 120, "ellity_tier": "gold"}
    assert bare.subscribed_at is not None and bare.unsubscribed_at is None


async def test_an_empty_list_has_one_empty_page(scene: Scene) -> None:
    page = await scene.platform.members(scene.list_id, status=MemberFilter.BOUNCED, page=1)
    assert (list(page.members), page.page, page.last_page, page.total) == ([], 1, 1, 0)


async def test_the_members_of_a_deleted_list_are_not_found(scene: Scene) -> None:
    scene.add_member("ann@example.cz", SubscriptionStatus.SUBSCRIBED)
    scene.delete_list()

    with pytest.raises(ListNotFound):
        await scene.platform.members(scene.list_id, status=MemberFilter.SUBSCRIBED, page=1)


async def test_the_fake_records_unsubscribe_contact_and_raises_its_queued_failures() -> None:
    fake = FakeMarketingPlatform(KEY)
    list_id = fake.add_list("Newsletter").id
    fake.add_member(list_id, "ann@example.cz")
    fake.fail_with = [MarketingUnavailable("down")]

    with pytest.raises(MarketingUnavailable):
        await fake.unsubscribe_contact(list_id, "ann@example.cz")
    member = fake.member(list_id, "ann@example.cz")
    assert member is not None and member.status is SubscriptionStatus.SUBSCRIBED
    fake.valid = False
    with pytest.raises(InvalidApiKey):
        await fake.unsubscribe_contact(list_id, "ann@example.cz")
    assert fake.calls == [("unsubscribe_contact", 1)] * 2


# --- faults -----------------------------------------------------------------------------


async def test_a_server_error_is_unavailable(ecomail: Ecomail, platform: MarketingPlatform) -> None:
    ecomail.emu.faults.fail_next(1, status=500)
    with pytest.raises(MarketingUnavailable, match="HTTP 500"):
        await platform.add_contacts(str(ecomail.list_id), [ann()])
    assert await platform.add_contacts(str(ecomail.list_id), [ann()]) == 1  # and then it works


async def test_a_429_is_rate_limited_and_holds_the_key_back(
    ecomail: Ecomail, platform: MarketingPlatform, platforms: EcomailPlatforms
) -> None:
    ecomail.emu.faults.rate_limit_next(1, retry_after=2)
    with pytest.raises(MarketingRateLimited) as raised:
        await platform.lists()
    assert raised.value.retry_after == 2
    assert not isinstance(raised.value, BudgetExhausted)  # a request was made and refused
    seen = len(ecomail.emu.requests)
    with pytest.raises(BudgetExhausted):  # the limiter waits at most 0.5 s, not 2 s
        await platforms.for_key(KEY, account="anna").lists()
    assert len(ecomail.emu.requests) == seen  # held back without asking Ecomail


async def test_a_stopped_server_is_unavailable(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.server.stop()
    with pytest.raises(MarketingUnavailable, match="could not reach Ecomail"):
        await platform.lists()


async def test_an_answer_slower_than_the_timeout_is_unavailable(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.emu.faults.delay = READ_TIMEOUT + 1.0
    with pytest.raises(
        MarketingUnavailable, match=f"did not answer within {READ_TIMEOUT:g} seconds"
    ):
        await platform.check_key()


async def test_two_workers_sharing_a_redis_limiter_stay_under_ecomails_limit(
    ecomail: Ecomail,
) -> None:
    """The emulator allows 5 requests a second; the workers' shared limiter allows 4 in 1.3 s
    (Ellity counts a request when it leaves, the emulator when it arrives, and the first
    requests arrive late while their connections are opened: the longer window absorbs it)."""
    ecomail.emu.rate_limit, ecomail.emu.rate_window = 5, 1.0
    prefix = f"ellity:test:contract:{uuid.uuid4().hex}"
    workers = [
        EcomailPlatforms(
            RedisRequestLimiter(REDIS_URL, limit=4, window=1.3, max_wait=10.0, prefix=prefix),
            settings_for(ecomail),
        )
        for _ in range(2)
    ]
    try:
        platforms = [w.for_key(KEY, account="anna") for w in workers]
        await asyncio.gather(*(platforms[n % 2].check_key() for n in range(10)))
    finally:
        for worker in workers:
            await worker.aclose()
    statuses = [r.status for r in ecomail.emu.requests]
    assert statuses.count(200) == 10
    assert 429 not in statuses
    assert ecomail.emu.max_requests_in_window(KEY, window=1.0) <= 5


def test_the_fake_records_the_share_of_the_budget_each_platform_was_given() -> None:
    platforms = FakeMarketingPlatforms()
    platforms.add_account(KEY)
    platforms.for_key(KEY, account="anna")
    platforms.for_key(KEY, account="anna", share=0.3)
    assert platforms.shares_asked == [None, 0.3]
    with pytest.raises(ValueError, match="share"):
        platforms.for_key(KEY, account="anna", share=0)
