"""Everything the in-memory storage keeps: ``StoreState`` and its rows, kept as the SQL
adapter keeps them, and what every in-memory repository shares.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime

from ellity.domain.model.activity import ExpiryForecast, KeptDay
from ellity.domain.model.api_token import ApiToken
from ellity.domain.model.consent import ConsentChange
from ellity.domain.model.customer import Customer, email_key
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId, StaffId
from ellity.domain.model.ledger import Entry, Expiration, LedgerSummary, Lot
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Locale, Points
from ellity.domain.model.newsletter import Notification, NotificationState, Outcome, RewardHold
from ellity.domain.model.outbox import OutboxStatus
from ellity.domain.model.reason import Reason


@dataclass
class StaffUser:
    id: StaffId
    merchant_id: MerchantId
    email: str
    password_hash: str
    created_at: datetime
    ui_language: Locale | None = None


@dataclass
class LotRow:
    merchant_id: MerchantId
    customer_id: CustomerId
    lot: Lot


@dataclass
class EntryRow:
    merchant_id: MerchantId
    customer_id: CustomerId
    entry: Entry


@dataclass
class ExpiryNoticeRecord:
    merchant_id: MerchantId
    points: Points
    created_at: datetime


@dataclass
class OutboxRecord:
    """One outbox row; the payload is kept as JSON text, as the SQL adapter keeps it."""

    id: int
    merchant_id: MerchantId
    customer_id: CustomerId | None
    topic: str
    payload: str
    created_at: datetime
    available_at: datetime
    status: str = OutboxStatus.PENDING.value
    attempts: int = 0
    claim_token: str | None = None
    claimed_until: datetime | None = None
    sending_since: datetime | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    request_id: str | None = None
    # a reference instead of a payload (the SQL adapter's columns): the ledger entry the item
    # follows and the next expiration right after it
    entry_id: int | None = None
    next_expiration: Expiration | None = None

    def claimable_from(self) -> datetime:
        if self.claimed_until is not None and self.claimed_until > self.available_at:
            return self.claimed_until
        return self.available_at


@dataclass
class EcomailRecord:
    """One merchant's integration row, as the SQL adapter keeps it."""

    merchant_id: MerchantId
    api_key_encrypted: str
    key_hint: str
    updated_at: datetime
    list_id: str | None = None
    list_name: str = ""
    active: bool = False
    activated_at: datetime | None = None
    backfill_requested_at: datetime | None = None
    backfill_after_id: CustomerId = BEFORE_FIRST_CUSTOMER
    backfill_marked: int = 0
    backfill_finished_at: datetime | None = None
    last_success_at: datetime | None = None


@dataclass
class ContactRecord:
    """One customer's contact row, as the SQL adapter keeps it (see ``EcomailContactRow``)."""

    customer_id: CustomerId
    merchant_id: MerchantId
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
    add_attempted_at: datetime | None = None
    echo_taken_at: datetime | None = None
    echo_subscribed_at: datetime | None = None
    unsubscribe_due: bool = False
    # the contact's status in the list (a ``SubscriptionStatus`` number) as last seen, when,
    # and the reconciliation run that saw it last
    list_status: int | None = None
    list_status_at: datetime | None = None
    seen_run_id: int | None = None

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
    merchant_id: MerchantId
    customer_id: CustomerId
    email: str
    left_at: datetime

    @property
    def key(self) -> str | None:
        return email_key(self.email)


@dataclass
class WebhookRecord:
    merchant_id: MerchantId
    token_digest: str
    token_encrypted: str
    created_at: datetime


@dataclass
class NotificationRow:
    """One notification row, as the SQL adapter keeps it (``NewsletterNotificationRow``)."""

    id: int
    merchant_id: MerchantId
    received_at: datetime
    notification: Notification
    available_at: datetime
    email_key: str | None = None  # None in rows stored before it was kept
    state: NotificationState = NotificationState.PENDING
    outcome: Outcome | None = None
    reason: str | None = None
    reason_parts: Reason | None = None  # None in rows stored before it was kept
    points: Points | None = None
    customer_id: CustomerId | None = None
    processed_at: datetime | None = None
    attempts: int = 0
    claim_token: str | None = None
    claimed_until: datetime | None = None

    def claimable_from(self) -> datetime:
        if self.claimed_until is not None and self.claimed_until > self.available_at:
            return self.claimed_until
        return self.available_at


@dataclass
class SignupRecord:
    """A sign-up kept for an email no customer had (``NewsletterSignupRow``)."""

    id: int
    merchant_id: MerchantId
    email: str
    list_id: str
    received_at: datetime
    confirmed_at: datetime
    notification_id: int | None
    used_at: datetime | None = None

    @property
    def key(self) -> str | None:
        return email_key(self.email)


@dataclass
class RewardRow:
    merchant_id: MerchantId
    hold: RewardHold
    updated_at: datetime


@dataclass
class RunRow:
    """One reconciliation run, as the SQL adapter keeps it (the repairs counted by kind)."""

    id: int
    merchant_id: MerchantId
    list_id: str
    trigger: str
    requested_at: datetime
    available_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    claim_token: str | None = None
    claimed_until: datetime | None = None
    phase: str = "read"
    status_index: int = 0
    page: int = 1
    sweep_after_id: int = 0
    expected: int | None = None
    checked: int = 0
    api_calls: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: Reason | None = None


@dataclass
class RepairRow:
    id: int
    run_id: int
    merchant_id: MerchantId
    customer_id: CustomerId | None
    email: str
    kind: str
    reason: Reason
    at: datetime


@dataclass
class StoreState:
    """Everything stored, keyed by id. Tests may read it; they should not write it."""

    merchants: dict[MerchantId, Merchant] = field(default_factory=dict)
    merchant_created_at: dict[MerchantId, datetime] = field(default_factory=dict)
    staff: dict[StaffId, StaffUser] = field(default_factory=dict)
    customers: dict[CustomerId, Customer] = field(default_factory=dict)
    consent_changes: list[ConsentChange] = field(default_factory=list)
    lots: dict[int, LotRow] = field(default_factory=dict)
    entries: dict[int, EntryRow] = field(default_factory=dict)
    #: Per customer id: what the SQL adapter keeps in its summary columns.
    summaries: dict[CustomerId, LedgerSummary] = field(default_factory=dict)
    smtp_passwords: dict[MerchantId, str] = field(default_factory=dict)
    #: Per merchant id: when a test email last went out.
    test_emails_sent: dict[MerchantId, datetime] = field(default_factory=dict)
    #: Per merchant id: the local date of its last finished nightly run.
    nightly_dates: dict[MerchantId, date] = field(default_factory=dict)
    #: Per merchant id: the claim of its nightly run in progress (token, until).
    nightly_claims: dict[MerchantId, tuple[str, datetime]] = field(default_factory=dict)
    #: Per (customer id, last valid day): the points a pre-expiry notice was recorded for.
    expiry_notices: dict[tuple[CustomerId, date], ExpiryNoticeRecord] = field(default_factory=dict)
    api_tokens: dict[int, ApiToken] = field(default_factory=dict)
    api_token_digests: dict[int, str] = field(default_factory=dict)
    outbox: dict[int, OutboxRecord] = field(default_factory=dict)
    #: Per merchant id: its Ecomail integration.
    ecomail: dict[MerchantId, EcomailRecord] = field(default_factory=dict)
    #: Per customer id: its contact's way to the Ecomail list.
    contacts: dict[CustomerId, ContactRecord] = field(default_factory=dict)
    #: Per id: addresses customers left, to be cleared in Ecomail.
    old_addresses: dict[int, OldAddressRecord] = field(default_factory=dict)
    #: Per merchant id: its webhook token (digest, encrypted).
    webhooks: dict[MerchantId, WebhookRecord] = field(default_factory=dict)
    #: Per id: the notifications Ecomail's list webhook posted.
    notifications: dict[int, NotificationRow] = field(default_factory=dict)
    #: Per customer id: the newsletter reward they hold.
    rewards: dict[CustomerId, RewardRow] = field(default_factory=dict)
    #: Per id: sign-ups kept for emails no customer had.
    signups: dict[int, SignupRecord] = field(default_factory=dict)
    #: What the nightly run keeps for the dashboard, per (merchant id, day) and merchant id.
    kept_days: dict[tuple[MerchantId, date], KeptDay] = field(default_factory=dict)
    forecasts: dict[MerchantId, ExpiryForecast] = field(default_factory=dict)
    #: Per id: reconciliation runs of the Ecomail lists, and the repairs they made.
    runs: dict[int, RunRow] = field(default_factory=dict)
    repairs: dict[int, RepairRow] = field(default_factory=dict)
    last_ids: dict[str, int] = field(default_factory=dict)

    def next_id(self, table: str) -> int:
        self.last_ids[table] = self.last_ids.get(table, 0) + 1
        return self.last_ids[table]


async def round_trip() -> None:
    """Give other tasks a turn, as a database round trip would."""
    await asyncio.sleep(0)


def assign(row: object, **values: object) -> None:
    for name, value in values.items():
        if not hasattr(row, name):
            raise AttributeError(f"{type(row).__name__} has no {name}")
        setattr(row, name, value)
