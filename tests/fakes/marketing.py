"""Ecomail in memory: accounts by API key, their lists, members and tracker events."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ellity.ports.clock import Clock
from ellity.ports.marketing import (
    BULK_LIMIT,
    MEMBERS_PER_PAGE,
    BeforeSend,
    BudgetExhausted,
    ContactData,
    ContactList,
    InvalidApiKey,
    ListDetail,
    ListNotFound,
    MarketingPlatform,
    MarketingPlatforms,
    MarketingRejected,
    MemberFilter,
    MemberPage,
    Membership,
    SubscriptionStatus,
    TrackerEvent,
    check_member_page,
    check_share,
)
from tests.fakes.clock import DEFAULT_NOW

FAKE_WRONG_KEY = "Ecomail does not accept the API key."


class FakeSpendingBudget:
    """Ellity's request limiter as a platform's callers see it, on a clock: a call goes
    through when a slot is free (one every ``spacing``), otherwise it raises
    ``BudgetExhausted`` with the wait until the next slot and no request is made.
    ``refused`` counts the calls held back."""

    def __init__(self, clock: Clock, *, spacing: timedelta) -> None:
        self.clock = clock
        self.spacing = spacing
        self.next_slot = clock.now()
        self.refused = 0

    def take(self) -> None:
        now = self.clock.now()
        if now < self.next_slot:
            self.refused += 1
            wait = (self.next_slot - now).total_seconds()
            raise BudgetExhausted(retry_after=wait)
        self.next_slot = now + self.spacing


@dataclass
class FakeMember:
    """One email's membership of one list (Ecomail keeps custom-field keys lower case)."""

    email: str
    status: SubscriptionStatus = SubscriptionStatus.SUBSCRIBED
    fields: dict[str, str | int] = field(default_factory=dict)
    name: str = ""
    surname: str = ""
    subscribed_at: datetime | None = None
    unsubscribed_at: datetime | None = None


@dataclass
class FakeContactList:
    id: str
    name: str
    #: custom-field key -> its type, fixed by the first write (or by ``add_list``)
    custom_fields: dict[str, str] = field(default_factory=dict)
    #: lower-cased email -> membership
    members: dict[str, FakeMember] = field(default_factory=dict)


class FakeMarketingPlatform(MarketingPlatform):
    """One Ecomail account in memory, behaving as the port and ecomail-api.md describe.

    - ``add_contacts`` adds new members as subscribed and updates existing ones (fields and
      non-empty names), never touching a member's status; returns how many it added.
    - ``update_contacts`` updates members only; returns how many it updated.
    - A custom field is created with its type on its first write; a later write of another
      type keeps the field's type.
    - ``send_event`` refuses (404) an email that is in none of the account's lists.
    - ``members`` pages a list's members with one status in the order they joined the list
      (``custom_fields`` as stored).
    - ``unsubscribe_contact`` sets a member's status to unsubscribed (a member unsubscribed
      before keeps its ``unsubscribed_at``) and returns True; False for an email not in the
      list.
    - Bulk calls refuse more than ``BULK_LIMIT`` contacts (like the client adapter), and a
      whole bulk call is refused (422) when it holds an email in ``refuse``.

    Every call is recorded in ``calls`` as ``(method, contacts sent)``. Faults: ``fail_with``
    holds errors the next calls raise, one per call (``None``: that call goes through);
    ``valid = False`` makes every call raise ``InvalidApiKey`` (a regenerated key); a
    ``budget`` holds calls back before they are made (not recorded), as Ellity's limiter does.
    """

    def __init__(
        self, key: str = "fake-key", *, valid: bool = True, clock: Clock | None = None
    ) -> None:
        self.key = key
        self.valid = valid
        self.clock = clock
        self.contact_lists: dict[str, FakeContactList] = {}
        self.calls: list[tuple[str, int]] = []
        self.events: list[TrackerEvent] = []
        self.fail_with: list[Exception | None] = []
        self.refuse: dict[str, str] = {}  # lower-cased email -> Ecomail's reason
        self.budget: FakeSpendingBudget | None = None
        self._list_ids = itertools.count(1)

    # -- what happens in Ecomail itself (tests set the scene with these)

    def add_list(
        self, name: str, *, list_id: str | None = None, fields: Mapping[str, str] | None = None
    ) -> FakeContactList:
        """A new list; ``fields``: custom fields it has already (key -> type)."""
        new_id = list_id if list_id is not None else str(next(self._list_ids))
        if new_id in self.contact_lists:
            raise ValueError(f"list {new_id} exists already")
        created = FakeContactList(new_id, name, {k.lower(): t for k, t in (fields or {}).items()})
        self.contact_lists[new_id] = created
        return created

    def delete_list(self, list_id: str) -> None:
        del self.contact_lists[list_id]

    def add_member(
        self,
        list_id: str,
        email: str,
        *,
        status: SubscriptionStatus = SubscriptionStatus.SUBSCRIBED,
        fields: Mapping[str, str | int] | None = None,
        name: str = "",
        surname: str = "",
    ) -> FakeMember:
        """Someone joins the list in Ecomail (a form, an import); new fields get a type from
        their value."""
        target = self.contact_lists[list_id]
        member = FakeMember(email.strip().lower(), status, name=name, surname=surname)
        member.subscribed_at = self._now()
        for raw_key, value in (fields or {}).items():
            key = raw_key.strip().lower()
            target.custom_fields.setdefault(key, "int" if isinstance(value, int) else "string")
            member.fields[key] = value
        target.members[member.email] = member
        return member

    def unsubscribe(self, list_id: str, email: str) -> None:
        """The person clicks the unsubscribe link."""
        self._unsubscribe(self.contact_lists[list_id].members[email.strip().lower()])

    def subscribe_again(self, list_id: str, email: str) -> None:
        """The person subscribes again (the list's form) after unsubscribing."""
        member = self.contact_lists[list_id].members[email.strip().lower()]
        if member.status is not SubscriptionStatus.SUBSCRIBED:
            member.status = SubscriptionStatus.SUBSCRIBED
            member.subscribed_at, member.unsubscribed_at = self._now(), None

    def member(self, list_id: str, email: str) -> FakeMember | None:
        return self.contact_lists[list_id].members.get(email.strip().lower())

    def in_any_list(self, email: str) -> bool:
        key = email.strip().lower()
        return any(key in target.members for target in self.contact_lists.values())

    @property
    def call_names(self) -> list[str]:
        return [method for method, _ in self.calls]

    # -- the port

    async def check_key(self) -> None:
        await self._call("check_key")

    async def lists(self) -> list[ContactList]:
        await self._call("lists")
        return [ContactList(id=t.id, name=t.name) for t in self.contact_lists.values()]

    async def list_detail(self, list_id: str) -> ListDetail:
        await self._call("list_detail")
        target = self._list(list_id)
        return ListDetail(id=target.id, name=target.name, custom_fields=dict(target.custom_fields))

    async def add_contacts(
        self,
        list_id: str,
        contacts: Sequence[ContactData],
        *,
        before_send: BeforeSend | None = None,
    ) -> int:
        await self._call("add_contacts", len(contacts), before_send=before_send)
        target = self._bulk(list_id, contacts)
        added = 0
        for contact in contacts:
            key = contact.email.strip().lower()
            member = target.members.get(key)
            if member is None:
                member = FakeMember(key, subscribed_at=self._now())
                target.members[key] = member
                added += 1
            self._write(target, member, contact)
        return added

    async def update_contacts(self, list_id: str, contacts: Sequence[ContactData]) -> int:
        await self._call("update_contacts", len(contacts))
        target = self._bulk(list_id, contacts)
        updated = 0
        for contact in contacts:
            member = target.members.get(contact.email.strip().lower())
            if member is not None:
                self._write(target, member, contact)
                updated += 1
        return updated

    async def membership(self, list_id: str, email: str) -> Membership | None:
        await self._call("membership")
        member = self._list(list_id).members.get(email.strip().lower())
        return None if member is None else _membership(member)

    async def members(
        self, list_id: str, *, status: MemberFilter, page: int, per_page: int = MEMBERS_PER_PAGE
    ) -> MemberPage:
        check_member_page(page, per_page)
        await self._call("members")
        statuses = MemberFilter(status).statuses
        chosen = [m for m in self._list(list_id).members.values() if m.status in statuses]
        start = (page - 1) * per_page
        return MemberPage(
            members=[_membership(member) for member in chosen[start : start + per_page]],
            page=page,
            last_page=max(1, -(-len(chosen) // per_page)),
            total=len(chosen),
        )

    async def unsubscribe_contact(self, list_id: str, email: str) -> bool:
        await self._call("unsubscribe_contact", 1)
        member = self._list(list_id).members.get(email.strip().lower())
        if member is None:
            return False
        if member.status is not SubscriptionStatus.UNSUBSCRIBED:  # else it keeps its time
            self._unsubscribe(member)
        return True

    async def send_event(
        self, event: TrackerEvent, *, before_send: BeforeSend | None = None
    ) -> None:
        await self._call("send_event", before_send=before_send)
        if not self.in_any_list(event.email):
            raise MarketingRejected(
                "Ecomail refused the request (HTTP 404): Subscriber not found", status=404
            )
        self.events.append(event)

    # -- internals

    async def _call(
        self, method: str, size: int = 0, *, before_send: BeforeSend | None = None
    ) -> None:
        await asyncio.sleep(0)  # like a request: other tasks get a turn
        if self.budget is not None:
            self.budget.take()
        if before_send is not None:
            await before_send()
        self.calls.append((method, size))
        if self.fail_with:
            error = self.fail_with.pop(0)
            if error is not None:
                raise error
        if not self.valid:
            raise InvalidApiKey(FAKE_WRONG_KEY)

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else DEFAULT_NOW

    def _unsubscribe(self, member: FakeMember) -> None:
        member.status = SubscriptionStatus.UNSUBSCRIBED
        member.unsubscribed_at = self._now()

    def _list(self, list_id: str) -> FakeContactList:
        target = self.contact_lists.get(list_id)
        if target is None:
            raise ListNotFound(
                f"The Ecomail list {list_id} does not exist (any more); choose another list.",
                status=404,
            )
        return target

    def _bulk(self, list_id: str, contacts: Sequence[ContactData]) -> FakeContactList:
        if len(contacts) > BULK_LIMIT:
            raise ValueError(f"at most {BULK_LIMIT} contacts per call, not {len(contacts)}")
        target = self._list(list_id)
        for contact in contacts:
            reason = self.refuse.get(contact.email.strip().lower())
            if reason is not None:
                raise MarketingRejected(
                    f"Ecomail refused the request (HTTP 422): {reason}", status=422
                )
        return target

    @staticmethod
    def _write(target: FakeContactList, member: FakeMember, contact: ContactData) -> None:
        if contact.first_name:
            member.name = contact.first_name
        if contact.last_name:
            member.surname = contact.last_name
        for raw_key, typed in contact.custom_fields.items():
            key = raw_key.strip().lower()
            target.custom_fields.setdefault(key, typed.type)
            member.fields[key] = typed.value


def _membership(member: FakeMember) -> Membership:
    return Membership(
        email=member.email,
        status=member.status,
        subscribed_at=member.subscribed_at,
        unsubscribed_at=member.unsubscribed_at,
        custom_fields=dict(member.fields),
    )


class FakeMarketingPlatforms(MarketingPlatforms):
    """Ecomail's accounts by API key. An unknown key gets an account whose every call raises
    ``InvalidApiKey``. ``accounts_asked`` records whose traffic each platform was for and
    ``shares_asked`` the share of the request budget it was given (``None``: no share)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.accounts: dict[str, FakeMarketingPlatform] = {}
        self.accounts_asked: list[str] = []
        self.shares_asked: list[float | None] = []

    def add_account(self, key: str) -> FakeMarketingPlatform:
        platform = FakeMarketingPlatform(key, clock=self.clock)
        self.accounts[key] = platform
        return platform

    def for_key(
        self, api_key: str, *, account: str, share: float | None = None
    ) -> FakeMarketingPlatform:
        check_share(share)
        self.accounts_asked.append(account)
        self.shares_asked.append(share)
        platform = self.accounts.get(api_key)
        if platform is None:
            return FakeMarketingPlatform(api_key, valid=False, clock=self.clock)
        return platform
