"""Hand-written in-memory fakes of every port.

The storage fake keeps plain domain objects in one ``StoreState``. A unit of work works on a
deep copy of it and publishes the copy on ``commit()``; leaving the block without committing
discards it. Writers hold the store's lock from ``__aenter__`` to ``__aexit__`` (SQLite's
``BEGIN IMMEDIATE``), readers work on the state as it was when they began. Every repository
call yields to the event loop once, like real I/O, so concurrent use cases really interleave.

What is stored is a copy: changing a returned ``Customer`` changes nothing until ``update()``
writes it back, as with a database. Like the SQL adapter, ``add`` sets the id on the object it
is given and ``LedgerRepository.save`` marks the ledger saved.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import json
import random
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ellity.adapters.csv_export import CsvTableEncoder
from ellity.domain.model import staff as staff_model
from ellity.domain.model.activity import DayPeriod, DayTotals, ExpiryTotal
from ellity.domain.model.api_token import ApiToken
from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.customer import Customer, email_key, name_key
from ellity.domain.model.customer_query import CustomerQuery, SearchField
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.integration import (
    Backfill,
    EcomailIntegration,
    EventLabel,
    credit_event_value,
)
from ellity.domain.model.ledger import (
    Entry,
    EntryKind,
    Expiration,
    LastChange,
    Ledger,
    LedgerSummary,
    Lot,
    summary_on,
)
from ellity.domain.model.merchant import Merchant, MerchantSettings, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    ClaimedNotification,
    Notification,
    NotificationRecord,
    NotificationState,
    Outcome,
    RewardHold,
)
from ellity.domain.model.outbox import (
    DeliveryHealth,
    FailedDelivery,
    OutboxItem,
    OutboxStatus,
    Payload,
    Topic,
)
from ellity.domain.model.system_email import OutgoingEmail, PointsChanged
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
from ellity.ports.storage import (
    ClaimedContact,
    ContactSyncFailure,
    ContactSyncHealth,
    ExpiredChunk,
    ExpiryNotice,
    NightlySchedule,
    OldAddress,
    OrderUse,
    StoredEntry,
    TransientConflict,
    UniqueViolation,
)
from ellity.ports.web_state import AttemptCount, StoredSession

if TYPE_CHECKING:
    from ellity.ports.clock import Clock, PasswordHasher, RandomSource
    from ellity.ports.export import Cell, Column, CustomerRowSource, TableEncoder
    from ellity.ports.mailer import Mailer
    from ellity.ports.marketing import MarketingPlatform, MarketingPlatforms
    from ellity.ports.queue import JobQueue
    from ellity.ports.secrets import SecretBox
    from ellity.ports.storage import (
        ApiTokenRepository,
        ContactSyncRepository,
        CustomerRepository,
        EcomailRepository,
        LedgerRepository,
        MerchantRepository,
        NewsletterRepository,
        OutboxRepository,
        StaffRepository,
        UnitOfWorkFactory,
        Views,
    )
    from ellity.ports.web_state import LoginAttempts, SessionStore

DEFAULT_NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)


# -- clock, randomness, passwords ---------------------------------------------------------


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


# -- export ------------------------------------------------------------------------------


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


# -- mail and the job queue ---------------------------------------------------------------


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


# -- the marketing platform (Ecomail) -----------------------------------------------------

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


# -- storage: the state -------------------------------------------------------------------


@dataclass
class StaffUser:
    id: int
    merchant_id: int
    email: str
    password_hash: str
    created_at: datetime


@dataclass
class LotRow:
    merchant_id: int
    customer_id: int
    lot: Lot


@dataclass
class EntryRow:
    merchant_id: int
    customer_id: int
    entry: Entry


@dataclass
class ExpiryNoticeRecord:
    merchant_id: int
    points: Points
    created_at: datetime


@dataclass
class StoreState:
    """Everything stored, keyed by id. Tests may read it; they should not write it."""

    merchants: dict[int, Merchant] = field(default_factory=dict)
    merchant_created_at: dict[int, datetime] = field(default_factory=dict)
    staff: dict[int, StaffUser] = field(default_factory=dict)
    customers: dict[int, Customer] = field(default_factory=dict)
    lots: dict[int, LotRow] = field(default_factory=dict)
    entries: dict[int, EntryRow] = field(default_factory=dict)
    #: Per customer id: what the SQL adapter keeps in its summary columns.
    summaries: dict[int, LedgerSummary] = field(default_factory=dict)
    smtp_passwords: dict[int, str] = field(default_factory=dict)
    #: Per merchant id: the local date of its last finished nightly run.
    nightly_dates: dict[int, date] = field(default_factory=dict)
    #: Per merchant id: the claim of its nightly run in progress (token, until).
    nightly_claims: dict[int, tuple[str, datetime]] = field(default_factory=dict)
    #: Per (customer id, last valid day): the points a pre-expiry notice was recorded for.
    expiry_notices: dict[tuple[int, date], ExpiryNoticeRecord] = field(default_factory=dict)
    api_tokens: dict[int, ApiToken] = field(default_factory=dict)
    api_token_digests: dict[int, str] = field(default_factory=dict)
    outbox: dict[int, OutboxRecord] = field(default_factory=dict)
    #: Per merchant id: its Ecomail integration.
    ecomail: dict[int, EcomailRecord] = field(default_factory=dict)
    #: Per customer id: its contact's way to the Ecomail list.
    contacts: dict[int, ContactRecord] = field(default_factory=dict)
    #: Per id: addresses customers left, to be cleared in Ecomail.
    old_addresses: dict[int, OldAddressRecord] = field(default_factory=dict)
    #: Per merchant id: its webhook token (digest, encrypted).
    webhooks: dict[int, WebhookRecord] = field(default_factory=dict)
    #: Per id: the notifications Ecomail's list webhook posted.
    notifications: dict[int, NotificationRow] = field(default_factory=dict)
    #: Per customer id: the newsletter reward they hold.
    rewards: dict[int, RewardRow] = field(default_factory=dict)
    last_ids: dict[str, int] = field(default_factory=dict)

    def next_id(self, table: str) -> int:
        self.last_ids[table] = self.last_ids.get(table, 0) + 1
        return self.last_ids[table]


EMPTY_SUMMARY = LedgerSummary(balance=Points.zero(), next_expiration=None, last_change=None)


def expired_in(state: StoreState, chunk: ExpiredChunk) -> list[tuple[int, Entry]]:
    """The customers with an email that the chunk's expiry hit, with their expiry entry."""
    hit = []
    for row in state.entries.values():
        customer = state.customers[row.customer_id]
        if (
            row.merchant_id == chunk.merchant_id
            and row.entry.kind is EntryKind.EXPIRE
            and row.entry.at == chunk.at
            and row.customer_id > chunk.after_id
            and (chunk.up_to_id is None or row.customer_id <= chunk.up_to_id)
            and customer.email is not None
        ):
            hit.append((row.customer_id, row.entry))
    return sorted(hit, key=lambda pair: pair[0])


def summary_of(lots: Iterable[Lot], last_change: LastChange | None) -> LedgerSummary:
    """Balance, next expiration and last change, computed like ``Ledger.summary()``."""
    held = [lot for lot in lots if lot.remaining]
    balance = Points(sum(lot.remaining.hundredths for lot in held))
    dates = [lot.expires_on for lot in held if lot.expires_on is not None]
    next_expiration = None
    if dates:
        first = min(dates)
        value = sum(lot.remaining.hundredths for lot in held if lot.expires_on == first)
        next_expiration = Expiration(on=first, points=Points(value))
    return LedgerSummary(balance=balance, next_expiration=next_expiration, last_change=last_change)


async def _io() -> None:
    """Give other tasks a turn, as a database round trip would."""
    await asyncio.sleep(0)


# -- storage: repositories ----------------------------------------------------------------


class InMemoryMerchantRepository:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, merchant: Merchant, *, at: datetime) -> Merchant:
        await _io()
        state = self._uow.state
        if any(m.slug == merchant.slug for m in state.merchants.values()):
            raise UniqueViolation("slug")
        merchant.id = state.next_id("merchants")  # like the SQL adapter: the id is set in place
        state.merchants[merchant.id] = copy.deepcopy(merchant)
        state.merchant_created_at[merchant.id] = at
        return merchant

    async def get(self, merchant_id: int) -> Merchant | None:
        await _io()
        return copy.deepcopy(self._uow.state.merchants.get(merchant_id))

    async def get_by_slug(self, slug: str) -> Merchant | None:
        await _io()
        found = (m for m in self._uow.state.merchants.values() if m.slug == slug)
        return copy.deepcopy(next(found, None))

    async def update_settings(self, merchant_id: int, settings: MerchantSettings) -> None:
        await _io()
        merchant = self._uow.state.merchants.get(merchant_id)
        if merchant is None:
            raise LookupError(f"no merchant {merchant_id}")
        merchant.settings = settings

    async def count(self) -> int:
        await _io()
        return len(self._uow.state.merchants)

    async def add_first(self, merchant: Merchant, *, at: datetime) -> Merchant | None:
        # Writers hold the store's lock for their whole unit of work: no race to guard.
        if await self.count():
            return None
        return await self.add(merchant, at=at)

    async def update_smtp(self, merchant_id: int, smtp: SmtpSettings) -> None:
        await _io()
        merchant = self._uow.state.merchants.get(merchant_id)
        if merchant is None:
            raise LookupError(f"no merchant {merchant_id}")
        merchant.smtp = smtp

    async def set_smtp_password(self, merchant_id: int, encrypted: str | None) -> None:
        await _io()
        if encrypted is None:
            self._uow.state.smtp_passwords.pop(merchant_id, None)
        else:
            self._uow.state.smtp_passwords[merchant_id] = encrypted

    async def smtp_password(self, merchant_id: int) -> str | None:
        await _io()
        return self._uow.state.smtp_passwords.get(merchant_id)

    async def nightly_schedules(self) -> list[NightlySchedule]:
        await _io()
        state = self._uow.state
        return [
            NightlySchedule(
                m_id,
                m.settings.timezone,
                state.nightly_dates.get(m_id),
                claim[1] if (claim := state.nightly_claims.get(m_id)) else None,
            )
            for m_id, m in sorted(state.merchants.items())
        ]

    async def claim_nightly(
        self, merchant_id: int, *, today: date, token: str, at: datetime, until: datetime
    ) -> bool:
        await _io()
        state = self._uow.state
        if merchant_id not in state.merchants:
            return False
        last = state.nightly_dates.get(merchant_id)
        if last is not None and last >= today:
            return False
        claim = state.nightly_claims.get(merchant_id)
        if claim is not None and claim[1] > at:
            return False
        state.nightly_claims[merchant_id] = (token, until)
        return True

    async def finish_nightly(self, merchant_id: int, *, today: date, token: str) -> bool:
        await _io()
        state = self._uow.state
        claim = state.nightly_claims.get(merchant_id)
        if claim is None or claim[0] != token:
            return False
        del state.nightly_claims[merchant_id]
        state.nightly_dates[merchant_id] = today
        return True

    async def release_nightly(self, merchant_id: int, *, token: str) -> None:
        await _io()
        claim = self._uow.state.nightly_claims.get(merchant_id)
        if claim is not None and claim[0] == token:
            del self._uow.state.nightly_claims[merchant_id]


class InMemoryApiTokenRepository:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(
        self, merchant_id: int, *, name: str, token_digest: str, hint: str, at: datetime
    ) -> ApiToken:
        await _io()
        state = self._uow.state
        if token_digest in state.api_token_digests.values():
            raise UniqueViolation("token_hash")
        token = ApiToken(
            id=state.next_id("api_tokens"),
            merchant_id=merchant_id,
            name=name,
            hint=hint,
            created_at=at,
        )
        state.api_tokens[token.id] = token
        state.api_token_digests[token.id] = token_digest
        return token

    async def find_active(self, token_digest: str) -> ApiToken | None:
        await _io()
        state = self._uow.state
        for token_id, digest in state.api_token_digests.items():
            token = state.api_tokens[token_id]
            if digest == token_digest and token.is_active:
                return token
        return None

    async def list(self, merchant_id: int) -> list[ApiToken]:
        await _io()
        found = [t for t in self._uow.state.api_tokens.values() if t.merchant_id == merchant_id]
        return sorted(found, key=lambda t: t.id, reverse=True)

    async def revoke(self, merchant_id: int, token_id: int, *, at: datetime) -> bool:
        await _io()
        token = self._uow.state.api_tokens.get(token_id)
        if token is None or token.merchant_id != merchant_id or not token.is_active:
            return False
        self._uow.state.api_tokens[token_id] = dataclasses.replace(token, revoked_at=at)
        return True

    async def touch(self, token_id: int, *, at: datetime) -> None:
        await _io()
        token = self._uow.state.api_tokens.get(token_id)
        if token is not None:
            self._uow.state.api_tokens[token_id] = dataclasses.replace(token, last_used_at=at)


class InMemoryStaffRepository:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, merchant_id: int, *, email: str, password_hash: str, at: datetime) -> int:
        await _io()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        if any(email_key(s.email) == email_key(email) for s in state.staff.values()):
            raise UniqueViolation("email")
        staff_id = state.next_id("staff")
        state.staff[staff_id] = StaffUser(staff_id, merchant_id, email, password_hash, at)
        return staff_id

    async def get(self, staff_id: int) -> staff_model.StaffUser | None:
        await _io()
        return self._user(self._uow.state.staff.get(staff_id))

    async def find_by_email(self, email: str) -> staff_model.StaffUser | None:
        await _io()
        key = email_key(email)
        found = (s for s in self._uow.state.staff.values() if email_key(s.email) == key)
        return self._user(next(found, None))

    @staticmethod
    def _user(row: StaffUser | None) -> staff_model.StaffUser | None:
        if row is None:
            return None
        return staff_model.StaffUser(row.id, row.merchant_id, row.email, row.password_hash)


class InMemoryCustomerRepository:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, customer: Customer) -> Customer:
        await _io()
        state = self._uow.state
        if customer.merchant_id not in state.merchants:
            raise LookupError(f"no merchant {customer.merchant_id}")
        self._check_unique(customer, ignore_id=None)
        customer.id = state.next_id("customers")  # like the SQL adapter: the id is set in place
        state.customers[customer.id] = copy.deepcopy(customer)
        return customer

    async def get(
        self, merchant_id: int, customer_id: int, *, for_update: bool = False
    ) -> Customer | None:
        # for_update needs nothing more: writers are serialized by the store's lock.
        await _io()
        return copy.deepcopy(self._own(merchant_id, customer_id))

    async def find_by_email(self, merchant_id: int, email: str) -> Customer | None:
        await _io()
        key = email_key(email)
        return self._first(merchant_id, lambda c: c.email is not None and c.email_key == key)

    async def find_by_shop_customer_id(
        self, merchant_id: int, shop_customer_id: str
    ) -> Customer | None:
        await _io()
        return self._first(merchant_id, lambda c: c.shop_customer_id == shop_customer_id)

    async def find_by_referral_code(self, merchant_id: int, code: str) -> Customer | None:
        await _io()
        return self._first(merchant_id, lambda c: c.referral_code == code)

    async def update(self, customer: Customer) -> None:
        await _io()
        if customer.id is None:
            raise ValueError("update needs a stored customer")
        stored = self._own(customer.merchant_id, customer.id)
        if stored is None:
            raise LookupError(f"no customer {customer.id} of merchant {customer.merchant_id}")
        written = dataclasses.replace(  # the identity fields, as the SQL adapter writes them
            stored,
            email=customer.email,
            first_name=customer.first_name,
            last_name=customer.last_name,
            shop_customer_id=customer.shop_customer_id,
            registered=customer.registered,
            pin=customer.pin,
            updated_at=customer.updated_at,
        )
        self._check_unique(written, ignore_id=customer.id)
        self._uow.state.customers[customer.id] = written

    async def count(self, merchant_id: int) -> int:
        await _io()
        return sum(1 for c in self._uow.state.customers.values() if c.merchant_id == merchant_id)

    async def chunk_end(self, merchant_id: int, *, after_id: int, size: int) -> int | None:
        await _io()
        chunk = sorted(
            customer_id
            for customer_id, c in self._uow.state.customers.items()
            if c.merchant_id == merchant_id and customer_id > after_id
        )[:size]
        return chunk[-1] if chunk else None

    def _own(self, merchant_id: int, customer_id: int) -> Customer | None:
        customer = self._uow.state.customers.get(customer_id)
        return customer if customer is not None and customer.merchant_id == merchant_id else None

    def _first(self, merchant_id: int, matches: Callable[[Customer], bool]) -> Customer | None:
        for customer in self._uow.state.customers.values():
            if customer.merchant_id == merchant_id and matches(customer):
                return copy.deepcopy(customer)
        return None

    def _check_unique(self, customer: Customer, *, ignore_id: int | None) -> None:
        others = [
            c
            for c in self._uow.state.customers.values()
            if c.merchant_id == customer.merchant_id and c.id != ignore_id
        ]
        if customer.email is not None and any(c.email_key == customer.email_key for c in others):
            raise UniqueViolation("email")
        if customer.shop_customer_id is not None and any(
            c.shop_customer_id == customer.shop_customer_id for c in others
        ):
            raise UniqueViolation("shop_customer_id")
        if any(c.referral_code == customer.referral_code for c in others):
            raise UniqueViolation("referral_code")


class InMemoryLedgerRepository:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def get(self, merchant_id: int, customer_id: int, policy: ExpiryPolicy) -> Ledger:
        await _io()
        state = self._uow.state
        lots = [
            dataclasses.replace(copy.deepcopy(row.lot), id=lot_id, loaded_remaining=None)
            for lot_id, row in state.lots.items()
            if (row.merchant_id, row.customer_id) == (merchant_id, customer_id)
            and row.lot.remaining
        ]
        summary = state.summaries.get(customer_id) if self._owns(merchant_id, customer_id) else None
        return Ledger(
            customer_id=customer_id,
            policy=policy,
            lots=lots,
            last_change=summary.last_change if summary else None,
        )

    async def save(self, merchant_id: int, ledger: Ledger, *, at: datetime) -> None:
        """Writes new entries, new and changed lots, then the summary.

        Like the SQL adapter it marks the ledger saved: new lots get their ids, every lot's
        ``loaded_remaining`` becomes its ``remaining`` and ``new_entries`` is emptied.
        """
        await _io()
        state = self._uow.state
        customer_id = ledger.customer_id
        if not self._owns(merchant_id, customer_id):
            raise LookupError(f"no customer {customer_id} of merchant {merchant_id}")
        self._check_order_refs(merchant_id, ledger.new_entries)
        for lot in ledger.lots:
            if lot.is_new:
                lot.id = state.next_id("lots")
                state.lots[lot.id] = LotRow(merchant_id, customer_id, copy.deepcopy(lot))
            elif lot.is_changed and lot.id is not None:
                row = state.lots.get(lot.id)
                if row is None or (row.merchant_id, row.customer_id) != (merchant_id, customer_id):
                    raise LookupError(f"no lot {lot.id} of customer {customer_id}")
                row.lot.remaining = lot.remaining
            lot.loaded_remaining = lot.remaining
        for entry in ledger.new_entries:
            state.entries[state.next_id("entries")] = EntryRow(merchant_id, customer_id, entry)
        ledger.new_entries.clear()
        state.summaries[customer_id] = summary_of(self._lots_of(customer_id), ledger.last_change)

    async def find_order(
        self, merchant_id: int, kind: EntryKind, order_ref: str
    ) -> OrderUse | None:
        await _io()
        for row in self._uow.state.entries.values():
            if (row.merchant_id, row.entry.kind, row.entry.order_ref) == (
                merchant_id,
                kind,
                order_ref,
            ):
                return OrderUse(customer_id=row.customer_id, entry=row.entry)
        return None

    async def has_entry(self, merchant_id: int, customer_id: int, kind: EntryKind) -> bool:
        await _io()
        return any(
            (row.merchant_id, row.customer_id, row.entry.kind) == (merchant_id, customer_id, kind)
            for row in self._uow.state.entries.values()
        )

    async def entries(
        self, merchant_id: int, customer_id: int, *, limit: int, before_id: int | None = None
    ) -> list[StoredEntry]:
        await _io()
        found = [
            StoredEntry(id=entry_id, customer_id=row.customer_id, entry=row.entry)
            for entry_id, row in self._uow.state.entries.items()
            if (row.merchant_id, row.customer_id) == (merchant_id, customer_id)
            and (before_id is None or entry_id < before_id)
        ]
        found.sort(key=lambda stored: stored.id, reverse=True)
        return found[:limit]

    async def expire_due(
        self,
        merchant_id: int,
        *,
        at: datetime,
        today: date,
        after_id: int = 0,
        up_to_id: int | None = None,
    ) -> int:
        await _io()
        state = self._uow.state
        expired: dict[int, int] = {}  # customer id -> hundredths expired
        for row in state.lots.values():
            lot = row.lot
            if (
                row.merchant_id == merchant_id
                and row.customer_id > after_id
                and (up_to_id is None or row.customer_id <= up_to_id)
                and lot.expires_on is not None
                and lot.expires_on < today
                and lot.remaining.is_positive()
            ):
                expired[row.customer_id] = (
                    expired.get(row.customer_id, 0) + lot.remaining.hundredths
                )
                lot.remaining = Points.zero()
        for customer_id in sorted(expired):
            change = LastChange(on=today, points=Points(-expired[customer_id]))
            summary = summary_of(self._lots_of(customer_id), change)
            entry = Entry(
                kind=EntryKind.EXPIRE, points=change.points, at=at, balance_after=summary.balance
            )
            state.entries[state.next_id("entries")] = EntryRow(merchant_id, customer_id, entry)
            state.summaries[customer_id] = summary
        return len(expired)

    async def record_expiry_notices(
        self,
        merchant_id: int,
        *,
        first_day: date,
        last_day: date,
        after_id: int,
        up_to_id: int,
        at: datetime,
    ) -> list[ExpiryNotice]:
        await _io()
        state = self._uow.state
        held: dict[tuple[int, date], int] = {}
        for row in state.lots.values():
            lot, customer = row.lot, state.customers.get(row.customer_id)
            if (
                row.merchant_id == merchant_id
                and after_id < row.customer_id <= up_to_id
                and customer is not None
                and customer.email is not None
                and lot.remaining.is_positive()
                and lot.expires_on is not None
                and first_day <= lot.expires_on <= last_day
            ):
                key = (row.customer_id, lot.expires_on)
                held[key] = held.get(key, 0) + lot.remaining.hundredths
        noted = []
        for (customer_id, on), cents in sorted(held.items()):
            if (customer_id, on) in state.expiry_notices:
                continue
            state.expiry_notices[(customer_id, on)] = ExpiryNoticeRecord(
                merchant_id=merchant_id, points=Points(cents), created_at=at
            )
            summary = state.summaries.get(customer_id, EMPTY_SUMMARY)
            noted.append(
                ExpiryNotice(
                    customer_id=customer_id,
                    expiration=Expiration(on, Points(cents)),
                    balance=summary.balance,
                )
            )
        return noted

    async def loyalty(
        self, merchant_id: int, customer_ids: Sequence[int], *, today: date
    ) -> list[CustomerLoyalty]:
        await _io()
        wanted = sorted(set(customer_ids))
        return [self._loyalty_of(i, today) for i in wanted if self._owns(merchant_id, i)]

    def _owns(self, merchant_id: int, customer_id: int) -> bool:
        customer = self._uow.state.customers.get(customer_id)
        return customer is not None and customer.merchant_id == merchant_id

    def _lots_of(self, customer_id: int) -> list[Lot]:
        return [row.lot for row in self._uow.state.lots.values() if row.customer_id == customer_id]

    def _loyalty_of(self, customer_id: int, today: date) -> CustomerLoyalty:
        """The stored summary, or, while it counts a lot past its last valid day, the
        summary of the lots valid on ``today`` (as the SQL adapter reads it)."""
        c = self._uow.state.customers[customer_id]
        summary = self._uow.state.summaries.get(customer_id, EMPTY_SUMMARY)
        if summary.next_expiration is not None and summary.next_expiration.on < today:
            summary = summary_on(self._lots_of(customer_id), summary.last_change, on=today)
        return CustomerLoyalty(
            customer_id=customer_id,
            email=c.email,
            first_name=c.first_name,
            last_name=c.last_name,
            registered=c.registered,
            pin=c.pin,
            referral_code=c.referral_code,
            summary=summary,
        )

    def _check_order_refs(self, merchant_id: int, new_entries: Sequence[Entry]) -> None:
        """(merchant, kind, order_ref) is unique among entries that have an order_ref."""
        taken = {
            (row.entry.kind, row.entry.order_ref)
            for row in self._uow.state.entries.values()
            if row.merchant_id == merchant_id and row.entry.order_ref is not None
        }
        for entry in new_entries:
            if entry.order_ref is None:
                continue
            key = (entry.kind, entry.order_ref)
            if key in taken:
                raise UniqueViolation("order_ref")
            taken.add(key)


def _search_keys(customer: Customer) -> dict[SearchField, str | None]:
    return {
        "email": customer.email_key,
        "first_name": name_key(customer.first_name),
        "last_name": name_key(customer.last_name),
    }


def search_in_memory(
    customers: Sequence[Customer], query: CustomerQuery, *, after_id: int | None, limit: int
) -> list[Customer]:
    """``CustomerRepository.search`` over customers in id order, as the SQL adapter pages."""
    if query.referral_code is not None:
        if after_id is not None:
            return []
        return [c for c in customers if c.referral_code == query.referral_code][:limit]
    if query.is_everyone:
        newest = [c for c in reversed(customers) if after_id is None or (c.id or 0) < after_id]
        return newest[:limit]
    alternatives = query.alternatives
    listed: list[tuple[int, str, int, Customer]] = []  # (alternative, key, id, customer)
    for customer in customers:
        keys = _search_keys(customer)
        for index, alternative in enumerate(alternatives):
            if alternative.matches(keys):
                key = keys[alternative.order_field] or ""
                listed.append((index, key, customer.id or 0, customer))
                break
    listed.sort(key=lambda item: item[:3])
    if after_id is not None:
        at = next((i for i, item in enumerate(listed) if item[2] == after_id), None)
        if at is None:
            return []
        listed = listed[at + 1 :]
    return [item[3] for item in listed[:limit]]


# -- web state ----------------------------------------------------------------------------


class InMemorySessionStore:
    def __init__(self) -> None:
        self.sessions: dict[str, StoredSession] = {}

    async def get(self, session_id: str, *, now: datetime) -> StoredSession | None:
        await _io()
        found = self.sessions.get(session_id)
        return found if found is not None and found.expires_at > now else None

    async def set(self, session_id: str, data: bytes, *, expires_at: datetime) -> None:
        await _io()
        self.sessions[session_id] = StoredSession(data, expires_at)

    async def renew(self, session_id: str, *, expires_at: datetime) -> None:
        await _io()
        if session_id in self.sessions:
            self.sessions[session_id] = StoredSession(self.sessions[session_id].data, expires_at)

    async def delete(self, session_id: str) -> None:
        await _io()
        self.sessions.pop(session_id, None)

    async def prune(self, *, now: datetime) -> int:
        await _io()
        gone = [key for key, s in self.sessions.items() if s.expires_at <= now]
        for key in gone:
            del self.sessions[key]
        return len(gone)


class InMemoryLoginAttempts:
    def __init__(self) -> None:
        self.counts: dict[str, AttemptCount] = {}

    async def add(self, key: str, *, at: datetime, window: timedelta) -> AttemptCount:
        await _io()
        current = self.counts.get(key)
        if current is None or current.window_ends_at <= at:
            current = AttemptCount(0, at + window)
        self.counts[key] = AttemptCount(current.attempts + 1, current.window_ends_at)
        return self.counts[key]

    async def forgive(self, key: str, *, reset: bool = False) -> None:
        await _io()
        current = self.counts.get(key)
        if current is None:
            return
        if reset:
            del self.counts[key]
        else:
            self.counts[key] = AttemptCount(max(0, current.attempts - 1), current.window_ends_at)

    async def prune(self, *, now: datetime) -> int:
        await _io()
        gone = [key for key, c in self.counts.items() if c.window_ends_at < now]
        for key in gone:
            del self.counts[key]
        return len(gone)


# -- storage: the outbox ------------------------------------------------------------------


@dataclass
class OutboxRecord:
    """One outbox row; the payload is kept as JSON text, as the SQL adapter keeps it."""

    id: int
    merchant_id: int
    customer_id: int | None
    topic: str
    payload: str
    created_at: datetime
    available_at: datetime
    status: str = OutboxStatus.PENDING.value
    attempts: int = 0
    claim_token: str | None = None
    claimed_until: datetime | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None

    def claimable_from(self) -> datetime:
        if self.claimed_until is not None and self.claimed_until > self.available_at:
            return self.claimed_until
        return self.available_at


class InMemoryOutboxRepository:
    """Claims are exclusive because writers hold the store's lock (like ``BEGIN IMMEDIATE``)."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(
        self,
        merchant_id: int,
        topic: str,
        payload: Payload,
        *,
        customer_id: int | None = None,
        at: datetime,
    ) -> int:
        await _io()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        record = OutboxRecord(
            id=state.next_id("outbox"),
            merchant_id=merchant_id,
            customer_id=customer_id,
            topic=topic,
            payload=json.dumps(payload, ensure_ascii=False),
            created_at=at,
            available_at=at,
        )
        state.outbox[record.id] = record
        self._uow.made_outbox_work = True
        return record.id

    async def add_many(
        self,
        merchant_id: int,
        topic: str,
        items: Sequence[tuple[int | None, Payload]],
        *,
        at: datetime,
    ) -> int:
        for customer_id, payload in items:
            await self.add(merchant_id, topic, payload, customer_id=customer_id, at=at)
        return len(items)

    async def add_for_expired(self, chunk: ExpiredChunk, topic: str) -> int:
        """Built by the domain's own functions: the SQL adapter builds them in SQL."""
        state = self._uow.state
        items: list[tuple[int | None, Payload]] = []
        for customer_id, entry in expired_in(state, chunk):
            nxt = state.summaries[customer_id].next_expiration
            if topic == Topic.ECOMAIL_EVENT.value:
                value = credit_event_value(entry, next_expiration=nxt)
                items.append(
                    (customer_id, {"label": EventLabel.CREDIT.value, "value": dict(value)})
                )
            elif topic == Topic.POINTS_CHANGED_EMAIL.value:
                items.append((customer_id, PointsChanged.of(entry, nxt).to_payload()))
            else:
                raise ValueError(f"no payload for expired points in {topic} items")
        return await self.add_many(chunk.merchant_id, topic, items, at=chunk.at)

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        await _io()
        due = sorted(
            (
                r
                for r in self._uow.state.outbox.values()
                if r.status == OutboxStatus.PENDING.value
                and r.available_at <= now
                and (r.claimed_until is None or r.claimed_until <= now)
            ),
            key=lambda r: (r.available_at, r.id),
        )[:limit]
        for record in due:
            record.claim_token, record.claimed_until = token, now + lease
            record.attempts += 1
            record.last_attempt_at = now
        return [
            OutboxItem(
                id=r.id,
                merchant_id=r.merchant_id,
                customer_id=r.customer_id,
                topic=r.topic,
                payload=json.loads(r.payload),
                attempts=r.attempts,
                created_at=r.created_at,
            )
            for r in sorted(due, key=lambda r: r.id)
        ]

    async def mark_delivered(self, item_id: int, *, token: str, at: datetime) -> bool:
        return await self._settle(
            item_id, token, status=OutboxStatus.DELIVERED.value, delivered_at=at, last_error=None
        )

    async def mark_skipped(self, item_id: int, *, token: str, reason: str, at: datetime) -> bool:
        return await self._settle(
            item_id, token, status=OutboxStatus.SKIPPED.value, delivered_at=at, last_error=reason
        )

    async def mark_failed(
        self, item_id: int, *, token: str, error: str, retry_at: datetime | None, at: datetime
    ) -> bool:
        if retry_at is None:
            return await self._settle(
                item_id, token, status=OutboxStatus.FAILED.value, last_error=error
            )
        return await self._settle(item_id, token, available_at=retry_at, last_error=error)

    async def defer(self, item_id: int, *, token: str, until: datetime) -> bool:
        record = self._uow.state.outbox.get(item_id)
        # the claim counted an attempt (at least 1 while a claim holds it): take it back
        attempts = record.attempts - 1 if record is not None else 0
        return await self._settle(item_id, token, available_at=until, attempts=attempts)

    async def _settle(self, item_id: int, token: str, **changes: object) -> bool:
        await _io()
        record = self._uow.state.outbox.get(item_id)
        if (
            record is None
            or record.claim_token != token
            or record.status != OutboxStatus.PENDING.value
        ):
            return False
        record.claim_token = record.claimed_until = None
        for name, value in changes.items():
            setattr(record, name, value)
        return True

    async def next_due(self) -> datetime | None:
        await _io()
        pending = [
            r.claimable_from()
            for r in self._uow.state.outbox.values()
            if r.status == OutboxStatus.PENDING.value
        ]
        return min(pending, default=None)

    async def retry_failed(self, merchant_id: int, item_id: int | None, *, at: datetime) -> int:
        await _io()
        count = 0
        for record in self._mine(merchant_id):
            if record.status == OutboxStatus.FAILED.value and item_id in (None, record.id):
                record.status, record.attempts, record.available_at = "pending", 0, at
                record.claim_token = record.claimed_until = None
                count += 1
        if count:
            self._uow.made_outbox_work = True
        return count

    async def purge_settled(self, *, before: datetime) -> int:
        await _io()
        settled = (OutboxStatus.DELIVERED.value, OutboxStatus.SKIPPED.value)
        gone = [
            r.id
            for r in self._uow.state.outbox.values()
            if r.status in settled and r.delivered_at is not None and r.delivered_at < before
        ]
        for record_id in gone:
            del self._uow.state.outbox[record_id]
        return len(gone)

    def _mine(self, merchant_id: int) -> Iterable[OutboxRecord]:
        return (r for r in self._uow.state.outbox.values() if r.merchant_id == merchant_id)


# -- storage: the Ecomail integration and its contacts -------------------------------------


@dataclass
class EcomailRecord:
    """One merchant's integration row, as the SQL adapter keeps it."""

    merchant_id: int
    api_key_encrypted: str
    key_hint: str
    updated_at: datetime
    list_id: str | None = None
    list_name: str = ""
    active: bool = False
    activated_at: datetime | None = None
    backfill_requested_at: datetime | None = None
    backfill_after_id: int = 0
    backfill_marked: int = 0
    backfill_finished_at: datetime | None = None
    last_success_at: datetime | None = None


class InMemoryEcomailRepository:
    """Updates of a merchant without an integration change nothing, as an SQL ``UPDATE``."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def get(self, merchant_id: int) -> EcomailIntegration | None:
        await _io()
        row = self._uow.state.ecomail.get(merchant_id)
        if row is None:
            return None
        backfill = None
        if row.backfill_requested_at is not None:
            backfill = Backfill(
                requested_at=row.backfill_requested_at,
                after_id=row.backfill_after_id,
                marked=row.backfill_marked,
                finished_marking_at=row.backfill_finished_at,
            )
        return EcomailIntegration(
            merchant_id=row.merchant_id,
            key_hint=row.key_hint,
            list_id=row.list_id,
            list_name=row.list_name,
            active=row.active,
            activated_at=row.activated_at,
            backfill=backfill,
            last_success_at=row.last_success_at,
        )

    async def api_key(self, merchant_id: int) -> str | None:
        await _io()
        row = self._uow.state.ecomail.get(merchant_id)
        return None if row is None else row.api_key_encrypted

    async def save_key(self, merchant_id: int, *, encrypted: str, hint: str, at: datetime) -> None:
        await _io()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        row = state.ecomail.get(merchant_id)
        if row is None:
            row = state.ecomail[merchant_id] = EcomailRecord(merchant_id, encrypted, hint, at)
        # activated_at and last_success_at stay, as the SQL upsert leaves them
        _assign(
            row,
            api_key_encrypted=encrypted,
            key_hint=hint,
            list_id=None,
            list_name="",
            active=False,
            **_backfill_cleared(),
            updated_at=at,
        )

    async def activate(
        self, merchant_id: int, *, list_id: str, list_name: str, at: datetime
    ) -> None:
        await self._update(
            merchant_id,
            list_id=list_id,
            list_name=list_name[:200],
            active=True,
            activated_at=at,
            **_backfill_from_start(at),
        )

    async def deactivate(self, merchant_id: int, *, at: datetime) -> None:
        await self._update(merchant_id, active=False, updated_at=at)

    async def request_backfill(self, merchant_id: int, *, at: datetime) -> None:
        await self._update(merchant_id, **_backfill_from_start(at))

    async def advance_backfill(
        self, merchant_id: int, *, after_id: int, marked: int, finished_at: datetime | None
    ) -> None:
        await self._update(
            merchant_id,
            backfill_after_id=after_id,
            backfill_marked=marked,
            backfill_finished_at=finished_at,
        )

    async def record_success(self, merchant_id: int, *, at: datetime) -> None:
        await self._update(merchant_id, last_success_at=at)

    async def active_list(self, merchant_id: int) -> str | None:
        await _io()
        row = self._uow.state.ecomail.get(merchant_id)
        return row.list_id if row is not None and row.active else None

    async def backfilling(self) -> list[int]:
        await _io()
        return sorted(
            row.merchant_id
            for row in self._uow.state.ecomail.values()
            if row.active
            and row.backfill_requested_at is not None
            and row.backfill_finished_at is None
        )

    async def _update(self, merchant_id: int, **values: object) -> None:
        await _io()
        row = self._uow.state.ecomail.get(merchant_id)
        if row is not None:
            _assign(row, **values)


def _assign(row: object, **values: object) -> None:
    for name, value in values.items():
        if not hasattr(row, name):
            raise AttributeError(f"{type(row).__name__} has no {name}")
        setattr(row, name, value)


def _backfill_cleared() -> dict[str, object]:
    return {
        "backfill_requested_at": None,
        "backfill_after_id": 0,
        "backfill_marked": 0,
        "backfill_finished_at": None,
    }


def _backfill_from_start(at: datetime) -> dict[str, object]:
    return {**_backfill_cleared(), "backfill_requested_at": at, "updated_at": at}


def _later(*instants: datetime | None) -> datetime | None:
    known = [instant for instant in instants if instant is not None]
    return max(known, default=None)


@dataclass
class ContactRecord:
    """One customer's contact row, as the SQL adapter keeps it (see ``EcomailContactRow``)."""

    customer_id: int
    merchant_id: int
    pending_since: datetime | None = None
    change_seq: int = 0
    claimed_seq: int | None = None
    claim_token: str | None = None
    claimed_until: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    failed_at: datetime | None = None
    in_list: bool = False
    added_at: datetime | None = None
    synced_at: datetime | None = None

    @property
    def waiting(self) -> bool:
        """Pending and not failed."""
        return self.pending_since is not None and self.failed_at is None

    def due(self, now: datetime) -> bool:
        return (
            self.waiting
            and (self.next_attempt_at is None or self.next_attempt_at <= now)
            and (self.claimed_until is None or self.claimed_until <= now)
        )

    def unclaim(self) -> None:
        self.claim_token = self.claimed_until = self.claimed_seq = None


@dataclass
class OldAddressRecord:
    """An address a customer left (see ``EcomailOldAddressRow``)."""

    id: int
    merchant_id: int
    customer_id: int
    email: str
    left_at: datetime

    @property
    def key(self) -> str | None:
        return email_key(self.email)


class InMemoryContactSyncRepository:
    """Claims are exclusive because writers hold the store's lock (like ``BEGIN IMMEDIATE``).
    Marking and retrying tell the unit of work that the worker has work (it counts the
    commit in ``InMemoryStore.outbox_commits``, where the SQL one nudges the worker)."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def mark_changed(
        self, merchant_id: int, customer_ids: Sequence[int], *, at: datetime, moved: bool = False
    ) -> None:
        await _io()
        if not customer_ids:
            return
        self._mark(merchant_id, set(customer_ids), at=at, moved=moved)
        self._uow.made_outbox_work = True

    async def mark_moved(
        self, merchant_id: int, customer_id: int, *, old_email: str, at: datetime
    ) -> None:
        await _io()
        state = self._uow.state
        customer = state.customers.get(customer_id)
        if customer is None or customer.merchant_id != merchant_id:
            return
        row = state.contacts.get(customer_id)
        written = row is not None and (row.in_list or row.claim_token is not None)
        mine = [a for a in state.old_addresses.values() if a.merchant_id == merchant_id]
        remembered = any(a.key == email_key(old_email) for a in mine)
        known = any(a.customer_id == customer_id and a.key == email_key(old_email) for a in mine)
        if (written or remembered) and not known:
            address_id = state.next_id("old_addresses")
            state.old_addresses[address_id] = OldAddressRecord(
                address_id, merchant_id, customer_id, old_email, at
            )
        await self.mark_changed(merchant_id, [customer_id], at=at, moved=True)

    async def old_addresses(
        self, merchant_id: int, customer_ids: Sequence[int]
    ) -> list[OldAddress]:
        await _io()
        state = self._uow.state
        wanted = set(customer_ids)
        held = {c.email_key for c in state.customers.values() if c.merchant_id == merchant_id}
        return [
            OldAddress(a.id, a.customer_id, a.email)
            for a in sorted(state.old_addresses.values(), key=lambda a: a.id)
            if a.merchant_id == merchant_id and a.customer_id in wanted and a.key not in held
        ]

    async def forget_old_addresses(
        self, merchant_id: int, address_ids: Sequence[int], *, at: datetime
    ) -> int:
        await _io()
        state = self._uow.state
        gone = [
            state.old_addresses.pop(i)
            for i in sorted(set(address_ids))
            if i in state.old_addresses and state.old_addresses[i].merchant_id == merchant_id
        ]
        keys = {a.key for a in gone}
        taken = {
            customer_id
            for customer_id, c in state.customers.items()
            if c.merchant_id == merchant_id and c.email is not None and c.email_key in keys
        }
        if taken:
            self._mark(merchant_id, taken, at=at, moved=False)
            self._uow.made_outbox_work = True
        return len(gone)

    async def mark_expired(self, chunk: ExpiredChunk) -> int:
        await _io()
        hit = {customer_id for customer_id, _ in expired_in(self._uow.state, chunk)}
        if hit:
            self._mark(chunk.merchant_id, hit, at=chunk.at, moved=False)
            self._uow.made_outbox_work = True
        return len(hit)

    async def mark_all(
        self, merchant_id: int, *, after_id: int, limit: int, at: datetime
    ) -> tuple[int, int | None]:
        await _io()
        chunk = sorted(
            customer_id
            for customer_id, c in self._uow.state.customers.items()
            if c.merchant_id == merchant_id and customer_id > after_id and c.email is not None
        )[:limit]
        if not chunk:
            return 0, None
        self._mark(merchant_id, set(chunk), at=at, moved=False)
        self._uow.made_outbox_work = True
        return len(chunk), chunk[-1]

    def _mark(self, merchant_id: int, customer_ids: set[int], *, at: datetime, moved: bool) -> None:
        state = self._uow.state
        for customer_id in sorted(customer_ids):
            customer = state.customers.get(customer_id)
            if customer is None or customer.merchant_id != merchant_id or customer.email is None:
                continue
            row = state.contacts.get(customer_id)
            if row is None:
                state.contacts[customer_id] = ContactRecord(
                    customer_id=customer_id, merchant_id=merchant_id, pending_since=at
                )
                continue
            if row.pending_since is None:
                row.pending_since = at
            row.change_seq += 1
            row.failed_at = None
            if moved:
                row.in_list = False

    async def claim(
        self, merchant_id: int, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedContact]:
        await _io()
        due = sorted(
            (r for r in self._mine(merchant_id) if r.due(now)),
            key=lambda r: (r.pending_since, r.customer_id),
        )[:limit]
        for row in due:
            row.claim_token, row.claimed_until = token, now + lease
            row.claimed_seq = row.change_seq
        return [
            ClaimedContact(customer_id=r.customer_id, in_list=r.in_list)
            for r in sorted(due, key=lambda r: r.customer_id)
        ]

    async def settle(
        self,
        merchant_id: int,
        customer_ids: Sequence[int],
        *,
        token: str,
        added: Collection[int] = (),
        at: datetime,
    ) -> int:
        await _io()
        wanted = set(customer_ids)
        held = [r for r in self._claimed(merchant_id, token) if r.customer_id in wanted]
        for row in held:
            if row.change_seq == row.claimed_seq:  # not changed since the claim
                row.pending_since = None
                row.in_list = True
            row.attempts, row.last_error, row.next_attempt_at = 0, None, None
            row.synced_at = at
            if row.customer_id in added:
                row.added_at = at
            row.unclaim()
        return len(held)

    async def release(
        self, merchant_id: int, *, token: str, error: str, retry_at: datetime, at: datetime
    ) -> int:
        await _io()
        held = list(self._claimed(merchant_id, token))
        for row in held:
            row.attempts += 1
            row.next_attempt_at, row.last_error = retry_at, error
            row.unclaim()
        return len(held)

    async def fail(
        self,
        merchant_id: int,
        customer_ids: Sequence[int] | None,
        *,
        token: str,
        error: str,
        at: datetime,
    ) -> int:
        await _io()
        wanted = None if customer_ids is None else set(customer_ids)
        held = [
            r
            for r in self._claimed(merchant_id, token)
            if wanted is None or r.customer_id in wanted
        ]
        for row in held:
            row.attempts += 1
            row.failed_at, row.last_error = at, error
            row.unclaim()
        return len(held)

    async def record_written(
        self, merchant_id: int, customer_id: int, *, added_at: datetime | None, at: datetime
    ) -> None:
        await _io()
        state = self._uow.state
        customer = state.customers.get(customer_id)
        if customer is None or customer.merchant_id != merchant_id:
            return  # another merchant's customer: nothing is recorded, as in SQL
        row = state.contacts.get(customer_id)
        if row is None:
            row = state.contacts[customer_id] = ContactRecord(customer_id, merchant_id)
        row.in_list, row.synced_at = True, at
        if added_at is not None:
            row.added_at = added_at

    async def attempts(self, merchant_id: int, *, token: str) -> int:
        await _io()
        return max((r.attempts for r in self._claimed(merchant_id, token)), default=0)

    async def is_pending(self, merchant_id: int, customer_id: int) -> bool:
        await _io()
        row = self._uow.state.contacts.get(customer_id)
        return row is not None and row.merchant_id == merchant_id and row.waiting

    async def due_merchants(self, *, now: datetime) -> list[int]:
        await _io()
        state = self._uow.state
        return sorted(
            merchant_id
            for merchant_id, integration in state.ecomail.items()
            if integration.active and any(r.due(now) for r in self._mine(merchant_id))
        )

    async def next_due(self) -> datetime | None:
        await _io()
        state = self._uow.state
        active = {m for m, integration in state.ecomail.items() if integration.active}
        dues = [
            _later(r.pending_since, r.next_attempt_at, r.claimed_until)
            for r in state.contacts.values()
            if r.waiting and r.merchant_id in active
        ]
        return min((due for due in dues if due is not None), default=None)

    async def retry_failed(self, merchant_id: int, *, at: datetime) -> int:
        await _io()
        failed = [r for r in self._mine(merchant_id) if r.failed_at is not None]
        for row in failed:  # the last error stays, as in the SQL adapter
            row.failed_at, row.attempts, row.next_attempt_at = None, 0, None
            if row.pending_since is None:
                row.pending_since = at
        if failed:
            self._uow.made_outbox_work = True
        return len(failed)

    async def added_at(self, merchant_id: int, customer_id: int) -> datetime | None:
        await _io()
        row = self._uow.state.contacts.get(customer_id)
        return row.added_at if row is not None and row.merchant_id == merchant_id else None

    def _mine(self, merchant_id: int) -> Iterable[ContactRecord]:
        return (r for r in self._uow.state.contacts.values() if r.merchant_id == merchant_id)

    def _claimed(self, merchant_id: int, token: str) -> Iterable[ContactRecord]:
        return (r for r in self._mine(merchant_id) if r.claim_token == token)


@dataclass
class WebhookRecord:
    merchant_id: int
    token_digest: str
    token_encrypted: str
    created_at: datetime


@dataclass
class NotificationRow:
    """One notification row, as the SQL adapter keeps it (``NewsletterNotificationRow``)."""

    id: int
    merchant_id: int
    received_at: datetime
    notification: Notification
    available_at: datetime
    state: NotificationState = NotificationState.PENDING
    outcome: Outcome | None = None
    reason: str | None = None
    points: Points | None = None
    customer_id: int | None = None
    processed_at: datetime | None = None
    attempts: int = 0
    claim_token: str | None = None
    claimed_until: datetime | None = None

    def claimable_from(self) -> datetime:
        if self.claimed_until is not None and self.claimed_until > self.available_at:
            return self.claimed_until
        return self.available_at


@dataclass
class RewardRow:
    merchant_id: int
    hold: RewardHold
    updated_at: datetime


class InMemoryNewsletterRepository:
    """Claims are exclusive because writers hold the store's lock (like ``BEGIN IMMEDIATE``);
    receiving a notification tells the unit of work that the worker has work."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def webhook_token(self, merchant_id: int) -> str | None:
        await _io()
        row = self._uow.state.webhooks.get(merchant_id)
        return None if row is None else row.token_encrypted

    async def set_webhook_token(
        self, merchant_id: int, *, digest: str, encrypted: str, at: datetime, replace: bool
    ) -> bool:
        await _io()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        if merchant_id in state.webhooks and not replace:
            return False
        if any(w.token_digest == digest for m, w in state.webhooks.items() if m != merchant_id):
            raise UniqueViolation("token_digest")
        state.webhooks[merchant_id] = WebhookRecord(merchant_id, digest, encrypted, at)
        return True

    async def webhook_merchant(self, digest: str) -> int | None:
        await _io()
        return next(
            (m for m, w in self._uow.state.webhooks.items() if w.token_digest == digest), None
        )

    async def receive(self, digest: str, notification: Notification, *, at: datetime) -> int | None:
        merchant_id = await self.webhook_merchant(digest)
        if merchant_id is None:
            return None
        state = self._uow.state
        row = NotificationRow(
            id=state.next_id("notifications"),
            merchant_id=merchant_id,
            received_at=at,
            notification=notification,
            available_at=at,
        )
        state.notifications[row.id] = row
        self._uow.made_outbox_work = True
        return row.id

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> list[ClaimedNotification]:
        await _io()
        due = sorted(
            (
                r
                for r in self._uow.state.notifications.values()
                if r.state is NotificationState.PENDING
                and r.available_at <= now
                and (r.claimed_until is None or r.claimed_until <= now)
            ),
            key=lambda r: (r.available_at, r.id),
        )[:limit]
        for row in due:
            row.claim_token, row.claimed_until = token, now + lease
            row.attempts += 1
        return [
            ClaimedNotification(
                id=r.id,
                merchant_id=r.merchant_id,
                notification=r.notification,
                received_at=r.received_at,
                attempts=r.attempts,
            )
            for r in sorted(due, key=lambda r: r.id)
        ]

    async def settle(
        self,
        notification_id: int,
        *,
        token: str,
        outcome: Outcome,
        reason: str,
        points: Points | None,
        customer_id: int | None,
        at: datetime,
    ) -> bool:
        return await self._update_claimed(
            notification_id,
            token,
            state=NotificationState.PROCESSED,
            outcome=outcome,
            reason=reason,
            points=points,
            customer_id=customer_id,
            processed_at=at,
        )

    async def defer(
        self,
        notification_id: int,
        *,
        token: str,
        until: datetime,
        reason: str,
        count_attempt: bool,
    ) -> bool:
        row = self._uow.state.notifications.get(notification_id)
        changes: dict[str, object] = {"available_at": until, "reason": reason}
        if not count_attempt and row is not None:
            changes["attempts"] = row.attempts - 1
        return await self._update_claimed(notification_id, token, **changes)

    async def _update_claimed(self, notification_id: int, token: str, **changes: object) -> bool:
        await _io()
        row = self._uow.state.notifications.get(notification_id)
        if row is None or row.claim_token != token or row.state is not NotificationState.PENDING:
            return False
        row.claim_token = row.claimed_until = None
        _assign(row, **changes)
        return True

    async def next_due(self) -> datetime | None:
        await _io()
        pending = [
            r.claimable_from()
            for r in self._uow.state.notifications.values()
            if r.state is NotificationState.PENDING
        ]
        return min(pending, default=None)

    async def purge_processed(self, *, before: datetime) -> int:
        await _io()
        notifications = self._uow.state.notifications
        gone = [
            i
            for i, r in notifications.items()
            if r.state is NotificationState.PROCESSED
            and r.processed_at is not None
            and r.processed_at < before
        ]
        for notification_id in gone:
            del notifications[notification_id]
        return len(gone)

    async def reward_hold(self, merchant_id: int, customer_id: int) -> RewardHold:
        await _io()
        row = self._uow.state.rewards.get(customer_id)
        if row is None or row.merchant_id != merchant_id:
            return RewardHold()
        return copy.deepcopy(row.hold)

    async def save_reward_hold(
        self, merchant_id: int, customer_id: int, hold: RewardHold, *, at: datetime
    ) -> None:
        await _io()
        state = self._uow.state
        customer = state.customers.get(customer_id)
        if customer is None or customer.merchant_id != merchant_id:
            return  # another merchant's customer: nothing is stored, as in SQL
        state.rewards[customer_id] = RewardRow(merchant_id, copy.deepcopy(hold), at)


# -- storage: unit of work and store ------------------------------------------------------


class InMemoryViews:
    """The read-side queries, over the unit of work's state."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def daily_totals(self, merchant_id: int, periods: Sequence[DayPeriod]) -> list[DayTotals]:
        await _io()
        sums: dict[date, list[int]] = {}
        for row in self._uow.state.entries.values():
            if row.merchant_id != merchant_id:
                continue
            entry = row.entry
            period = next((p for p in periods if p.start <= entry.at < p.end), None)
            if period is None:
                continue
            totals = sums.setdefault(period.day, [0, 0, 0])
            cents = entry.points.hundredths
            if entry.kind is EntryKind.EXPIRE:
                totals[2] -= cents
            elif cents > 0:
                totals[0] += cents
            else:
                totals[1] -= cents
        return [
            DayTotals(p.day, *(Points(v) for v in sums[p.day])) for p in periods if p.day in sums
        ]

    async def upcoming_expiries(
        self, merchant_id: int, *, first_day: date, last_day: date
    ) -> list[ExpiryTotal]:
        await _io()
        held: dict[date, tuple[int, set[int]]] = {}
        for row in self._uow.state.lots.values():
            lot = row.lot
            if (
                row.merchant_id == merchant_id
                and lot.remaining.is_positive()
                and lot.expires_on is not None
                and first_day <= lot.expires_on <= last_day
            ):
                cents, holders = held.get(lot.expires_on, (0, set()))
                holders = holders | {row.customer_id}
                held[lot.expires_on] = (cents + lot.remaining.hundredths, holders)
        return [
            ExpiryTotal(day, Points(cents), len(holders))
            for day, (cents, holders) in sorted(held.items())
        ]

    async def loyalty_page(
        self, merchant_id: int, *, after_id: int, limit: int, today: date
    ) -> list[CustomerLoyalty]:
        await _io()
        ids = sorted(
            customer_id
            for customer_id, c in self._uow.state.customers.items()
            if c.merchant_id == merchant_id and customer_id > after_id
        )
        return [InMemoryLedgerRepository(self._uow)._loyalty_of(i, today) for i in ids[:limit]]

    async def search_customers(
        self,
        merchant_id: int,
        query: CustomerQuery,
        *,
        after_id: int | None,
        limit: int,
        today: date,
    ) -> list[CustomerLoyalty]:
        await _io()
        state = self._uow.state
        mine = sorted(
            (c for c in state.customers.values() if c.merchant_id == merchant_id),
            key=lambda c: c.id or 0,
        )
        loyalty = InMemoryLedgerRepository(self._uow)
        found = search_in_memory(mine, query, after_id=after_id, limit=limit)
        return [loyalty._loyalty_of(c.id, today) for c in found if c.id is not None]

    async def failed_deliveries(self, merchant_id: int, *, limit: int) -> list[FailedDelivery]:
        await _io()
        found = sorted(
            (r for r in self._outbox_of(merchant_id) if r.status == OutboxStatus.FAILED.value),
            key=lambda r: r.id,
            reverse=True,
        )[:limit]
        return [
            FailedDelivery(
                id=r.id,
                topic=r.topic,
                customer_id=r.customer_id,
                attempts=r.attempts,
                last_error=r.last_error or "",
                created_at=r.created_at,
                last_attempt_at=r.last_attempt_at,
            )
            for r in found
        ]

    async def delivery_health(self, merchant_id: int) -> DeliveryHealth:
        await _io()
        mine = list(self._outbox_of(merchant_id))
        pending = [r for r in mine if r.status == OutboxStatus.PENDING.value]
        delivered = [
            r.delivered_at
            for r in mine
            if r.status == OutboxStatus.DELIVERED.value and r.delivered_at is not None
        ]
        return DeliveryHealth(
            pending=len(pending),
            failed=sum(r.status == OutboxStatus.FAILED.value for r in mine),
            oldest_pending_at=min((r.created_at for r in pending), default=None),
            last_delivered_at=max(delivered, default=None),
        )

    async def contact_sync_health(self, merchant_id: int) -> ContactSyncHealth:
        await _io()
        mine = list(self._contacts_of(merchant_id))
        waiting = [r.pending_since for r in mine if r.waiting and r.pending_since is not None]
        integration = self._uow.state.ecomail.get(merchant_id)
        return ContactSyncHealth(
            pending=len(waiting),
            failed=sum(r.failed_at is not None for r in mine),
            oldest_pending_at=min(waiting, default=None),
            last_synced_at=None if integration is None else integration.last_success_at,
        )

    async def contact_sync_failures(
        self, merchant_id: int, *, limit: int
    ) -> list[ContactSyncFailure]:
        await _io()
        customers = self._uow.state.customers
        failed = sorted(
            (
                r
                for r in self._contacts_of(merchant_id)
                if r.failed_at is not None and r.customer_id in customers
            ),
            key=lambda r: (r.failed_at, r.customer_id),
            reverse=True,
        )[:limit]
        return [
            ContactSyncFailure(
                customer_id=r.customer_id,
                email=customers[r.customer_id].email,
                error=r.last_error or "",
                failed_at=r.failed_at,
            )
            for r in failed
            if r.failed_at is not None
        ]

    async def recent_notifications(
        self, merchant_id: int, *, limit: int
    ) -> list[NotificationRecord]:
        await _io()
        mine = sorted(
            (r for r in self._uow.state.notifications.values() if r.merchant_id == merchant_id),
            key=lambda r: r.id,
            reverse=True,
        )[:limit]
        return [
            NotificationRecord(
                id=r.id,
                received_at=r.received_at,
                notification=r.notification,
                state=r.state,
                outcome=r.outcome,
                reason=r.reason or "",
                points=r.points,
                customer_id=r.customer_id,
                processed_at=r.processed_at,
            )
            for r in mine
        ]

    def _outbox_of(self, merchant_id: int) -> Iterable[OutboxRecord]:
        return (r for r in self._uow.state.outbox.values() if r.merchant_id == merchant_id)

    def _contacts_of(self, merchant_id: int) -> Iterable[ContactRecord]:
        return (r for r in self._uow.state.contacts.values() if r.merchant_id == merchant_id)


class InMemoryUnitOfWork:
    """One transaction on a private copy of the store's state."""

    def __init__(self, store: InMemoryStore, *, read_only: bool = False) -> None:
        self._store = store
        self.read_only = read_only
        self._state: StoreState | None = None
        self.merchants: MerchantRepository = InMemoryMerchantRepository(self)
        self.staff: StaffRepository = InMemoryStaffRepository(self)
        self.api_tokens: ApiTokenRepository = InMemoryApiTokenRepository(self)
        self.customers: CustomerRepository = InMemoryCustomerRepository(self)
        self.ledgers: LedgerRepository = InMemoryLedgerRepository(self)
        self.outbox: OutboxRepository = InMemoryOutboxRepository(self)
        self.ecomail: EcomailRepository = InMemoryEcomailRepository(self)
        self.contacts: ContactSyncRepository = InMemoryContactSyncRepository(self)
        self.newsletter: NewsletterRepository = InMemoryNewsletterRepository(self)
        self.views: Views = InMemoryViews(self)
        self.made_outbox_work = False  # outbox items or contact marks: the worker has work

    @property
    def state(self) -> StoreState:
        if self._state is None:
            raise RuntimeError("use the unit of work inside `async with`")
        return self._state

    async def __aenter__(self) -> InMemoryUnitOfWork:
        if self._state is not None:
            raise RuntimeError("this unit of work is already open")
        if not self.read_only:
            await self._store.write_lock.acquire()
        self._state = copy.deepcopy(self._store.state)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = None  # whatever was not committed is gone
        if not self.read_only:
            self._store.write_lock.release()

    async def commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        await _io()
        if self._store.conflicts:  # the database aborts this transaction: nothing is stored
            self._store.conflicts -= 1
            raise TransientConflict("deadlock detected (a fake one)")
        self._store.state = copy.deepcopy(self.state)
        self._store.commits += 1
        if self.made_outbox_work:
            self.made_outbox_work = False
            self._store.outbox_commits += 1


class InMemoryStore:
    """The database: committed state, the writers' lock, and the unit-of-work factory."""

    def __init__(self) -> None:
        self.state = StoreState()
        self.write_lock = asyncio.Lock()
        self.commits = 0
        # commits that gave the worker work: outbox items, contact marks, retries (the SQL
        # unit of work nudges the worker then)
        self.outbox_commits = 0
        # how many of the next commits fail as the database does when it aborts a
        # transaction for a conflict with a concurrent one (``TransientConflict``)
        self.conflicts = 0

    def unit_of_work(self, *, read_only: bool = False) -> InMemoryUnitOfWork:
        """Matches ``UnitOfWorkFactory``: pass ``store.unit_of_work`` where one is needed."""
        return InMemoryUnitOfWork(self, read_only=read_only)


class StallingNightly:
    """A unit-of-work factory around a real one, for cancelling a nightly run in the middle:
    the ``stall_at``-th chunk of ``merchant_id`` waits for ever (until its task is cancelled)
    and ``stalled`` is set. With ``inside="expiry"`` it waits inside the chunk's write
    transaction, after expiring the chunk's points (not committed); with ``inside="read"``
    while looking up where the chunk ends (no write transaction is open, so other merchants'
    runs are not held up). Other merchants and other calls pass straight through."""

    def __init__(
        self, inner: UnitOfWorkFactory, merchant_id: int, *, stall_at: int = 2, inside: str
    ) -> None:
        self._inner = inner
        self.merchant_id = merchant_id
        self.stall_at = stall_at
        self.inside = inside
        self.chunks = 0
        self.stalled = asyncio.Event()

    def __call__(self, *, read_only: bool = False) -> Any:
        return _StallingUnitOfWork(self._inner(read_only=read_only), self)

    async def maybe_stall(self, merchant_id: int, inside: str) -> None:
        if merchant_id != self.merchant_id or inside != self.inside:
            return
        self.chunks += 1
        if self.chunks >= self.stall_at:
            self.stalled.set()
            await asyncio.Event().wait()


class _StallingUnitOfWork:
    def __init__(self, inner: Any, owner: StallingNightly) -> None:
        self._inner = inner
        self._owner = owner

    async def __aenter__(self) -> _StallingUnitOfWork:
        self._inner = await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    async def commit(self) -> None:
        await self._inner.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def ledgers(self) -> _StallingLedgers:
        return _StallingLedgers(self._inner.ledgers, self._owner)

    @property
    def customers(self) -> _StallingCustomers:
        return _StallingCustomers(self._inner.customers, self._owner)


class _StallingLedgers:
    def __init__(self, inner: Any, owner: StallingNightly) -> None:
        self._inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def expire_due(self, merchant_id: int, **kw: Any) -> int:
        expired: int = await self._inner.expire_due(merchant_id, **kw)
        await self._owner.maybe_stall(merchant_id, "expiry")
        return expired


class _StallingCustomers:
    def __init__(self, inner: Any, owner: StallingNightly) -> None:
        self._inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def chunk_end(self, merchant_id: int, **kw: Any) -> int | None:
        await self._owner.maybe_stall(merchant_id, "read")
        end: int | None = await self._inner.chunk_end(merchant_id, **kw)
        return end


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
