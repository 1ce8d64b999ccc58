"""Reconciliation runs of the Ecomail list, what a page of members is compared with, and the
repairs recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.reason import Reason
from ellity.domain.model.reconciliation import RepairKind, Schedule


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MERCHANT = "merchant"  # "Reconcile now" on the integration page
    COMMAND = "command"  # ``ellity ecomail reconcile``


class Phase(StrEnum):
    READ = "read"  # reading the list's pages
    SWEEP = "sweep"  # finding the customers the list lacks
    DONE = "done"


@dataclass(frozen=True, slots=True)
class RepairCounts:
    fields: int = 0
    added: int = 0
    unsubscribed: int = 0
    confirmed: int = 0
    signup: int = 0
    cleared: int = 0

    def of(self, kind: RepairKind) -> int:
        return int(getattr(self, kind.value))

    @property
    def total(self) -> int:
        return sum(self.of(kind) for kind in RepairKind)


@dataclass(frozen=True, slots=True)
class ReconciliationRun:
    id: int
    merchant_id: MerchantId
    list_id: str
    trigger: Trigger
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    phase: Phase
    status_index: int  # the status filter being read (the service's order)
    page: int  # the next page of it to read
    sweep_after_id: CustomerId  # the sweep's position
    expected: int | None  # members in the list when the run began
    checked: int  # members compared so far
    api_calls: int
    repairs: RepairCounts
    error: Reason | None = None  # why it stopped for good
    claimed_until: datetime | None = None  # a worker holds it until then

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True, slots=True)
class Repair:
    kind: RepairKind
    email: str
    reason: Reason
    customer_id: CustomerId | None = None


@dataclass(frozen=True, slots=True)
class RepairRecord:
    """A repair as the pages show it."""

    id: int
    run_id: int
    kind: RepairKind
    email: str
    reason: Reason
    customer_id: CustomerId | None
    at: datetime


@dataclass(frozen=True, slots=True)
class KnownCustomer:
    """What Ellity holds about the customer with a member's email (its consent is in
    ``loyalty``)."""

    loyalty: CustomerLoyalty
    consent_changed_at: datetime | None
    write_pending: bool  # the contact is pending in the contact sync (and not failed)
    added_by_ellity: bool  # an add of Ellity's included the contact, or was attempted
    reward_held: bool
    notification_pending: bool  # a notification for the email waits to be processed
    signup_unconfirmed: bool  # a SUBSCRIBED notification for it was recorded unconfirmed


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What the members of a page are compared with, by ``email_key``."""

    customers: Mapping[str, KnownCustomer]
    #: addresses customers moved away from that the contact sync has still to clear
    old_addresses: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ScheduleFacts:
    """What decides whether a merchant's schedule asks for a run now."""

    merchant_id: MerchantId
    list_id: str
    schedule: Schedule
    activated_at: datetime
    last_requested_at: datetime | None
    unfinished: bool


@dataclass(frozen=True, slots=True)
class SweepChunk:
    """Customers of one range of ids that the run did not see in the list."""

    last_id: CustomerId | None  # the range's last customer id; None: no customers are left
    missing: Sequence[tuple[CustomerId, str]]  # may be added but are not in the list (email)


class ReconciliationRepository(Protocol):
    """A run is worked on by one claim at a time: every write about it needs the token of the
    claim that holds it and answers ``False`` (changing nothing) otherwise."""

    async def request(
        self, merchant_id: MerchantId, list_id: str, *, trigger: Trigger, at: datetime
    ) -> tuple[int, bool]:
        """A run of the merchant's list: the unfinished one, or a new one (``True``)."""
        ...

    async def get(self, merchant_id: MerchantId, run_id: int) -> ReconciliationRun | None: ...

    async def unfinished(self, merchant_id: MerchantId) -> ReconciliationRun | None: ...

    async def latest(self, merchant_id: MerchantId, *, limit: int) -> list[ReconciliationRun]:
        """The merchant's last runs, newest first."""
        ...

    async def schedules(self) -> list[ScheduleFacts]:
        """Every merchant with an active integration whose schedule is not ``off``."""
        ...

    async def claimable(self, *, now: datetime) -> list[MerchantId]:
        """Merchants with an unfinished run that no live claim holds and may go on now."""
        ...

    async def claim(
        self, merchant_id: MerchantId, *, token: str, now: datetime, until: datetime
    ) -> ReconciliationRun | None:
        """The merchant's unfinished run, claimed with ``token`` until ``until``, unless a
        live claim of another token holds it or it may not go on before a later time."""
        ...

    async def renew(self, run_id: int, *, token: str, until: datetime) -> bool: ...

    async def release(self, run_id: int, *, token: str, available_at: datetime) -> bool:
        """Give the run back, to go on from ``available_at``."""
        ...

    async def start(self, run_id: int, *, token: str, expected: int, at: datetime) -> bool: ...

    async def page_facts(
        self, merchant_id: MerchantId, email_keys: Sequence[str], *, today: date
    ) -> PageFacts:
        """The customers with these email keys (their summary valid on the merchant's
        ``today``) and what decides their repairs, in a few statements however many keys (at
        most a page's)."""
        ...

    async def record_page(
        self,
        run_id: int,
        *,
        token: str,
        merchant_id: MerchantId,
        seen: Sequence[tuple[CustomerId, int]],
        repairs: Sequence[Repair],
        status_index: int,
        page: int,
        phase: Phase,
        checked: int,
        api_calls: int,
        at: datetime,
    ) -> bool:
        """Record a page: the customers seen in the list with their status (the contact's
        status as last seen, the run that saw it; a contact seen is in the list), its
        repairs (and their counts), the members ``checked`` and ``api_calls`` made since the
        last record, and where the run goes on."""
        ...

    async def sweep(
        self,
        run_id: int,
        *,
        token: str,
        merchant_id: MerchantId,
        setting: EcomailAdd,
        after_id: CustomerId,
        limit: int,
        since: datetime,
    ) -> SweepChunk | None:
        """The next ``limit`` customers after ``after_id``: those not seen by the run are no
        longer known to be in the list, and those of them the setting and their consent let
        Ellity add are returned as missing. A contact with a write waiting, written since
        ``since`` (the run's start) or of a customer created since is left alone: the run
        could not see it. ``None`` when the run is not held by ``token``."""
        ...

    async def record_sweep(
        self,
        run_id: int,
        *,
        token: str,
        merchant_id: MerchantId,
        repairs: Sequence[Repair],
        after_id: CustomerId,
        done: bool,
        at: datetime,
    ) -> bool: ...

    async def finish(
        self, run_id: int, *, token: str, at: datetime, error: Reason | None = None
    ) -> bool: ...

    async def repairs(
        self, merchant_id: MerchantId, run_id: int, *, limit: int
    ) -> list[RepairRecord]:
        """The run's repairs, newest first."""
        ...

    async def purge_repairs(self, *, before: datetime) -> int:
        """Delete repairs recorded before ``before`` (the runs and their counts stay)."""
        ...

    async def customer_repairs(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int
    ) -> list[RepairRecord]: ...
