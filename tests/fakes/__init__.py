"""Hand-written in-memory fakes of every port; the storage ones are in ``tests.fakes.storage``."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from ellity.adapters.csv_export import CsvTableEncoder
from ellity.domain.model.merchant import SmtpSettings
from ellity.domain.model.system_email import OutgoingEmail
from ellity.domain.services.export import SnapshotRows
from ellity.ports.marketing import (
    BULK_LIMIT,
    ContactData,
    ContactList,
    InvalidApiKey,
    ListDetail,
    ListNotFound,
    MarketingRejected,
    Membership,
    SubscriptionStatus,
    TrackerEvent,
)
from ellity.ports.secrets import SecretUnreadable
from ellity.ports.web_state import AttemptCount, StoredSession
from tests.fakes.storage import (
    EMPTY_SUMMARY,
    ContactRecord,
    EcomailRecord,
    EntryRow,
    ExpiryNoticeRecord,
    InMemoryApiTokenRepository,
    InMemoryContactSyncRepository,
    InMemoryCustomerRepository,
    InMemoryEcomailRepository,
    InMemoryLedgerRepository,
    InMemoryMerchantRepository,
    InMemoryNewsletterRepository,
    InMemoryOutboxRepository,
    InMemoryStaffRepository,
    InMemoryStore,
    InMemoryUnitOfWork,
    InMemoryViews,
    LotRow,
    NotificationRow,
    OldAddressRecord,
    OutboxRecord,
    RewardRow,
    StaffUser,
    StallingNightly,
    StoreState,
    WebhookRecord,
    expired_in,
    search_in_memory,
    summary_of,
)
from tests.fakes.storage.state import round_trip

if TYPE_CHECKING:
    from ellity.ports.clock import Clock, PasswordHasher, RandomSource
    from ellity.ports.export import Cell, Column, CustomerRowSource, TableEncoder
    from ellity.ports.mailer import Mailer
    from ellity.ports.marketing import MarketingPlatform, MarketingPlatforms
    from ellity.ports.queue import JobQueue
    from ellity.ports.secrets import SecretBox
    from ellity.ports.storage import UnitOfWorkFactory
    from ellity.ports.web_state import LoginAttempts, SessionStore

DEFAULT_NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until a test moves it; always aware UTC."""

    def __init__(self, now: datetime = DEFAULT_NOW) -> None:
        self._now = DEFAULT_NOW
        self.set(now)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware datetime")
        self._now = at.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**units)``; returns the new now."""
        self._now += delta if delta is not None else timedelta(**units)
        return self._now


class FakeRandom:
    """Deterministic ``randbelow``: scripted values first, then a seeded generator."""

    def __init__(self, seed: int = 0, *, script: Iterable[int] = ()) -> None:
        self._random = random.Random(seed)
        self._script: deque[int] = deque(script)

    def queue(self, *values: int) -> None:
        """The next calls return these values, in order."""
        self._script.extend(values)

    def randbelow(self, n: int) -> int:
        if self._script:
            value = self._script.popleft()
            if not 0 <= value < n:
                raise ValueError(f"scripted value {value} is not in [0, {n})")
            return value
        return self._random.randrange(n)


class FakePasswordHasher:
    """Readable, not secure: ``hash("secret")`` is ``"fake-hash:secret"``."""

    PREFIX = "fake-hash:"

    def hash(self, password: str) -> str:
        return self.PREFIX + password

    def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == self.PREFIX + password


class FakeSecretBox:
    """Reversible and readable in tests; not a cipher. Refuses what it did not produce."""

    PREFIX = "sealed:"

    def encrypt(self, plaintext: str) -> str:
        return self.PREFIX + plaintext[::-1]

    def decrypt(self, ciphertext: str) -> str:
        if not ciphertext.startswith(self.PREFIX):
            raise SecretUnreadable("not sealed by this box")
        return ciphertext.removeprefix(self.PREFIX)[::-1]


class JsonLinesTableEncoder:
    """A table as JSON lines: ints stay ints, so tests see exactly what the use case handed
    over. ``decode`` reads the bytes back."""

    media_type = "application/jsonl"
    file_extension = "jsonl"
    format = "jsonl"

    def header(self, columns: Sequence[Column]) -> bytes:
        return self._lines([{"header": [column.name for column in columns]}])

    def rows(self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bytes:
        return self._lines([{"row": list(row)} for row in rows])

    @staticmethod
    def _lines(items: Iterable[object]) -> bytes:
        return b"".join(json.dumps(item, ensure_ascii=False).encode() + b"\n" for item in items)

    @staticmethod
    def decode(data: bytes) -> tuple[list[str], list[list[Cell]]]:
        """The header and the rows."""
        items = [json.loads(line) for line in data.decode().split("\n") if line]
        if not items or "header" not in items[0]:
            raise ValueError("the table does not start with its header")
        return items[0]["header"], [item["row"] for item in items[1:]]


class InMemoryCustomerRowSource(SnapshotRows):
    """The export's rows from the in-memory store in CSV, the Python way (contact snapshots
    and ``CsvTableEncoder``): the bytes ``SqlCustomerRowSource`` must write for the same data."""

    def __init__(self, store: InMemoryStore) -> None:
        super().__init__(store.unit_of_work, CsvTableEncoder())


@dataclass(frozen=True)
class SentEmail:
    email: OutgoingEmail
    server: SmtpSettings
    password: str | None = field(repr=False)


class FakeMailer:
    """Records what it sent. ``fail_next`` makes the next sends raise the given errors;
    ``stall`` makes sends hang (for timeouts); ``while_sending`` runs during each send."""

    def __init__(self) -> None:
        self.sent: list[SentEmail] = []
        self.attempts = 0
        self.stall = False
        self.while_sending: Callable[[], None] | None = None
        self._failures: deque[Exception] = deque()

    def fail_next(self, *errors: Exception) -> None:
        self._failures.extend(errors)

    def to(self, address: str) -> list[OutgoingEmail]:
        return [sent.email for sent in self.sent if sent.email.to == address]

    async def send(
        self, email: OutgoingEmail, *, server: SmtpSettings, password: str | None
    ) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.while_sending is not None:
            self.while_sending()
        if self.stall:
            await asyncio.Event().wait()
        if self._failures:
            raise self._failures.popleft()
        self.sent.append(SentEmail(email, server, password))


class FakeJobQueue:
    """Records nudges: ``None`` for "now", else the time asked for; and the nightly runs
    queued, as ``(merchant id, local date)`` jobs: one per pair until ``take_nightlies``
    hands them out (to be run), as arq keeps one job per id while it waits or runs."""

    def __init__(self) -> None:
        self.nudges: list[datetime | None] = []
        self.nightlies: list[tuple[int, date]] = []

    async def nudge_delivery(self, *, at: datetime | None = None) -> None:
        self.nudges.append(at)

    async def queue_nightly(self, merchant_id: int, *, local_date: date) -> None:
        if (merchant_id, local_date) not in self.nightlies:
            self.nightlies.append((merchant_id, local_date))

    def take_nightlies(self) -> list[tuple[int, date]]:
        taken, self.nightlies = self.nightlies, []
        return taken


FAKE_WRONG_KEY = "Ecomail does not accept the API key."


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


class FakeMarketingPlatform:
    """One Ecomail account in memory, behaving as the port and ecomail-api.md describe.

    - ``add_contacts`` adds new members as subscribed and updates existing ones (fields and
      non-empty names), never touching a member's status; returns how many it added.
    - ``update_contacts`` updates members only; returns how many it updated.
    - A custom field is created with its type on its first write; a later write of another
      type keeps the field's type.
    - ``send_event`` refuses (404) an email that is in none of the account's lists.
    - Bulk calls refuse more than ``BULK_LIMIT`` contacts (like the client adapter), and a
      whole bulk call is refused (422) when it holds an email in ``refuse``.

    Every call is recorded in ``calls`` as ``(method, contacts sent)``. Faults: ``fail_with``
    holds errors the next calls raise, one per call (``None``: that call goes through);
    ``valid = False`` makes every call raise ``InvalidApiKey`` (a regenerated key).
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
        member = self.contact_lists[list_id].members[email.strip().lower()]
        member.status = SubscriptionStatus.UNSUBSCRIBED
        member.unsubscribed_at = self._now()

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

    async def add_contacts(self, list_id: str, contacts: Sequence[ContactData]) -> int:
        await self._call("add_contacts", len(contacts))
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
        if member is None:
            return None
        return Membership(
            email=member.email,
            status=member.status,
            subscribed_at=member.subscribed_at,
            unsubscribed_at=member.unsubscribed_at,
            custom_fields=dict(member.fields),
        )

    async def send_event(self, event: TrackerEvent) -> None:
        await self._call("send_event")
        if not self.in_any_list(event.email):
            raise MarketingRejected(
                "Ecomail refused the request (HTTP 404): Subscriber not found", status=404
            )
        self.events.append(event)

    # -- internals

    async def _call(self, method: str, size: int = 0) -> None:
        await asyncio.sleep(0)  # like a request: other tasks get a turn
        self.calls.append((method, size))
        if self.fail_with:
            error = self.fail_with.pop(0)
            if error is not None:
                raise error
        if not self.valid:
            raise InvalidApiKey(FAKE_WRONG_KEY)

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else DEFAULT_NOW

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


class FakeMarketingPlatforms:
    """Ecomail's accounts by API key. An unknown key gets an account whose every call raises
    ``InvalidApiKey``. ``accounts_asked`` records whose traffic each platform was for."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.accounts: dict[str, FakeMarketingPlatform] = {}
        self.accounts_asked: list[str] = []

    def add_account(self, key: str) -> FakeMarketingPlatform:
        platform = FakeMarketingPlatform(key, clock=self.clock)
        self.accounts[key] = platform
        return platform

    def for_key(self, api_key: str, *, account: str) -> FakeMarketingPlatform:
        self.accounts_asked.append(account)
        platform = self.accounts.get(api_key)
        if platform is None:
            return FakeMarketingPlatform(api_key, valid=False, clock=self.clock)
        return platform


class InMemorySessionStore:
    def __init__(self) -> None:
        self.sessions: dict[str, StoredSession] = {}

    async def get(self, session_id: str, *, now: datetime) -> StoredSession | None:
        await round_trip()
        found = self.sessions.get(session_id)
        return found if found is not None and found.expires_at > now else None

    async def set(self, session_id: str, data: bytes, *, expires_at: datetime) -> None:
        await round_trip()
        self.sessions[session_id] = StoredSession(data, expires_at)

    async def renew(self, session_id: str, *, expires_at: datetime) -> None:
        await round_trip()
        if session_id in self.sessions:
            self.sessions[session_id] = StoredSession(self.sessions[session_id].data, expires_at)

    async def delete(self, session_id: str) -> None:
        await round_trip()
        self.sessions.pop(session_id, None)

    async def prune(self, *, now: datetime) -> int:
        await round_trip()
        gone = [key for key, s in self.sessions.items() if s.expires_at <= now]
        for key in gone:
            del self.sessions[key]
        return len(gone)


class InMemoryLoginAttempts:
    def __init__(self) -> None:
        self.counts: dict[str, AttemptCount] = {}

    async def add(self, key: str, *, at: datetime, window: timedelta) -> AttemptCount:
        await round_trip()
        current = self.counts.get(key)
        if current is None or current.window_ends_at <= at:
            current = AttemptCount(0, at + window)
        self.counts[key] = AttemptCount(current.attempts + 1, current.window_ends_at)
        return self.counts[key]

    async def forgive(self, key: str, *, reset: bool = False) -> None:
        await round_trip()
        current = self.counts.get(key)
        if current is None:
            return
        if reset:
            del self.counts[key]
        else:
            self.counts[key] = AttemptCount(max(0, current.attempts - 1), current.window_ends_at)

    async def prune(self, *, now: datetime) -> int:
        await round_trip()
        gone = [key for key, c in self.counts.items() if c.window_ends_at < now]
        for key in gone:
            del self.counts[key]
        return len(gone)


if TYPE_CHECKING:  # mypy checks that the fakes satisfy the ports
    _clock: Clock = FakeClock()
    _random: RandomSource = FakeRandom()
    _hasher: PasswordHasher = FakePasswordHasher()
    _box: SecretBox = FakeSecretBox()
    _mailer: Mailer = FakeMailer()
    _queue: JobQueue = FakeJobQueue()
    _sessions: SessionStore = InMemorySessionStore()
    _attempts: LoginAttempts = InMemoryLoginAttempts()
    _encoder: TableEncoder = JsonLinesTableEncoder()
    _rows: CustomerRowSource = InMemoryCustomerRowSource(InMemoryStore())
    _platform: MarketingPlatform = FakeMarketingPlatform()
    _platforms: MarketingPlatforms = FakeMarketingPlatforms()
    _factory: UnitOfWorkFactory = InMemoryStore().unit_of_work

__all__ = [
    "DEFAULT_NOW",
    "EMPTY_SUMMARY",
    "FAKE_WRONG_KEY",
    "ContactRecord",
    "EcomailRecord",
    "EntryRow",
    "ExpiryNoticeRecord",
    "FakeClock",
    "FakeContactList",
    "FakeJobQueue",
    "FakeMailer",
    "FakeMarketingPlatform",
    "FakeMarketingPlatforms",
    "FakeMember",
    "FakePasswordHasher",
    "FakeRandom",
    "FakeSecretBox",
    "InMemoryApiTokenRepository",
    "InMemoryContactSyncRepository",
    "InMemoryCustomerRepository",
    "InMemoryCustomerRowSource",
    "InMemoryEcomailRepository",
    "InMemoryLedgerRepository",
    "InMemoryLoginAttempts",
    "InMemoryMerchantRepository",
    "InMemoryNewsletterRepository",
    "InMemoryOutboxRepository",
    "InMemorySessionStore",
    "InMemoryStaffRepository",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "InMemoryViews",
    "JsonLinesTableEncoder",
    "LotRow",
    "NotificationRow",
    "OldAddressRecord",
    "OutboxRecord",
    "RewardRow",
    "SentEmail",
    "StaffUser",
    "StallingNightly",
    "StoreState",
    "WebhookRecord",
    "expired_in",
    "search_in_memory",
    "summary_of",
]
