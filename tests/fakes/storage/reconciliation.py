"""Reconciliation runs in memory, kept as the SQL adapter keeps them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from ellity.domain.model.consent import EcomailAdd, may_add
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.newsletter import (
    NotificationState,
    Outcome,
    SubscriptionChange,
)
from ellity.domain.model.reason import Reason
from ellity.domain.model.reconciliation import RepairKind, Schedule
from ellity.ports.storage.reconciliation import (
    KnownCustomer,
    PageFacts,
    Phase,
    ReconciliationRepository,
    ReconciliationRun,
    Repair,
    RepairCounts,
    RepairRecord,
    ScheduleFacts,
    SweepChunk,
    Trigger,
)
from tests.fakes.storage.ledger import loyalty_of
from tests.fakes.storage.state import ContactRecord, RepairRow, RunRow, round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


def _run(row: RunRow) -> ReconciliationRun:
    return ReconciliationRun(
        id=row.id,
        merchant_id=row.merchant_id,
        list_id=row.list_id,
        trigger=Trigger(row.trigger),
        requested_at=row.requested_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        phase=Phase(row.phase),
        status_index=row.status_index,
        page=row.page,
        sweep_after_id=CustomerId(row.sweep_after_id),
        expected=row.expected,
        checked=row.checked,
        api_calls=row.api_calls,
        repairs=RepairCounts(**{k.value: row.counts.get(k.value, 0) for k in RepairKind}),
        error=row.error,
        claimed_until=row.claimed_until,
    )


def _repair(row: RepairRow) -> RepairRecord:
    return RepairRecord(
        id=row.id,
        run_id=row.run_id,
        kind=RepairKind(row.kind),
        email=row.email,
        reason=row.reason,
        customer_id=row.customer_id,
        at=row.at,
    )


class InMemoryReconciliationRepository(ReconciliationRepository):
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    def _unfinished(self, merchant_id: MerchantId) -> RunRow | None:
        return next(
            (
                r
                for r in self._uow.state.runs.values()
                if r.merchant_id == merchant_id and r.finished_at is None
            ),
            None,
        )

    def _held(self, run_id: int, token: str) -> RunRow | None:
        row = self._uow.state.runs.get(run_id)
        if row is None or row.claim_token != token or row.finished_at is not None:
            return None
        return row

    async def request(
        self, merchant_id: MerchantId, list_id: str, *, trigger: Trigger, at: datetime
    ) -> tuple[int, bool]:
        await round_trip()
        existing = self._unfinished(merchant_id)
        if existing is not None:
            return existing.id, False
        if merchant_id not in self._uow.state.merchants:
            raise LookupError(f"no merchant {merchant_id}")  # a foreign key in SQL
        row = RunRow(
            id=self._uow.state.next_id("runs"),
            merchant_id=merchant_id,
            list_id=list_id,
            trigger=trigger.value,
            requested_at=at,
            available_at=at,
        )
        self._uow.state.runs[row.id] = row
        return row.id, True

    async def get(self, merchant_id: MerchantId, run_id: int) -> ReconciliationRun | None:
        await round_trip()
        row = self._uow.state.runs.get(run_id)
        return None if row is None or row.merchant_id != merchant_id else _run(row)

    async def unfinished(self, merchant_id: MerchantId) -> ReconciliationRun | None:
        await round_trip()
        row = self._unfinished(merchant_id)
        return None if row is None else _run(row)

    async def latest(self, merchant_id: MerchantId, *, limit: int) -> list[ReconciliationRun]:
        await round_trip()
        rows = [r for r in self._uow.state.runs.values() if r.merchant_id == merchant_id]
        return [_run(r) for r in sorted(rows, key=lambda r: -r.id)[:limit]]

    async def schedules(self) -> list[ScheduleFacts]:
        await round_trip()
        state = self._uow.state
        facts = []
        for merchant_id, link in sorted(state.ecomail.items()):
            merchant = state.merchants[merchant_id]
            schedule = merchant.settings.ecomail_reconcile
            if (
                not link.active
                or link.list_id is None
                or link.activated_at is None
                or schedule is Schedule.OFF
            ):
                continue
            runs = [r for r in state.runs.values() if r.merchant_id == merchant_id]
            facts.append(
                ScheduleFacts(
                    merchant_id=merchant_id,
                    list_id=link.list_id,
                    schedule=schedule,
                    activated_at=link.activated_at,
                    last_requested_at=max((r.requested_at for r in runs), default=None),
                    unfinished=any(r.finished_at is None for r in runs),
                )
            )
        return facts

    async def claimable(self, *, now: datetime) -> list[MerchantId]:
        await round_trip()
        return [
            r.merchant_id
            for r in sorted(self._uow.state.runs.values(), key=lambda r: r.id)
            if r.finished_at is None
            and r.available_at <= now
            and (r.claimed_until is None or r.claimed_until <= now)
        ]

    async def claim(
        self, merchant_id: MerchantId, *, token: str, now: datetime, until: datetime
    ) -> ReconciliationRun | None:
        await round_trip()
        row = self._unfinished(merchant_id)
        if row is None or row.available_at > now:
            return None
        free = row.claimed_until is None or row.claimed_until <= now
        if not free and row.claim_token != token:
            return None
        row.claim_token, row.claimed_until = token, until
        return _run(row)

    async def renew(self, run_id: int, *, token: str, until: datetime) -> bool:
        await round_trip()
        row = self._held(run_id, token)
        if row is None:
            return False
        row.claimed_until = until
        return True

    async def release(self, run_id: int, *, token: str, available_at: datetime) -> bool:
        await round_trip()
        row = self._held(run_id, token)
        if row is None:
            return False
        row.claim_token = row.claimed_until = None
        row.available_at = available_at
        return True

    async def start(self, run_id: int, *, token: str, expected: int, at: datetime) -> bool:
        await round_trip()
        row = self._held(run_id, token)
        if row is None:
            return False
        row.started_at = row.started_at or at
        row.expected = expected
        return True

    async def page_facts(
        self, merchant_id: MerchantId, email_keys: Sequence[str], *, today: date
    ) -> PageFacts:
        await round_trip()
        state = self._uow.state
        keys = set(email_keys)
        known = {}
        for customer in state.customers.values():
            key = customer.email_key
            if customer.merchant_id != merchant_id or key is None or key not in keys:
                continue
            customer_id = CustomerId(customer.id or 0)
            contact = state.contacts.get(customer_id)
            reward = state.rewards.get(customer_id)
            notes = [
                n
                for n in state.notifications.values()
                if n.merchant_id == merchant_id and n.email_key == key
            ]
            known[key] = KnownCustomer(
                loyalty=loyalty_of(state, customer_id, today),
                consent_changed_at=customer.consent_changed_at,
                write_pending=contact is not None and contact.waiting,
                added_by_ellity=contact is not None
                and (contact.add_attempted_at is not None or contact.added_at is not None),
                reward_held=reward is not None and reward.hold.held,
                notification_pending=any(n.state is NotificationState.PENDING for n in notes),
                signup_unconfirmed=any(
                    n.state is NotificationState.PROCESSED
                    and n.outcome is Outcome.UNCONFIRMED
                    and n.notification.change is SubscriptionChange.SUBSCRIBED
                    for n in notes
                ),
            )
        old = frozenset(
            a.key
            for a in state.old_addresses.values()
            if a.merchant_id == merchant_id and a.key in keys
        )
        return PageFacts(known, frozenset(k for k in old if k is not None))

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
        await round_trip()
        row = self._held(run_id, token)
        if row is None:
            return False
        row.status_index, row.page, row.phase = status_index, page, phase.value
        row.checked += checked
        row.api_calls += api_calls
        state = self._uow.state
        for customer_id, status in seen:
            contact = state.contacts.get(customer_id)
            if contact is None:
                contact = state.contacts[customer_id] = ContactRecord(customer_id, merchant_id)
            contact.in_list = True
            contact.list_status, contact.list_status_at, contact.seen_run_id = status, at, run_id
        self._add_repairs(row, repairs, at)
        return True

    def _add_repairs(self, row: RunRow, repairs: Sequence[Repair], at: datetime) -> None:
        state = self._uow.state
        for repair in repairs:
            row.counts[repair.kind.value] = row.counts.get(repair.kind.value, 0) + 1
            repair_id = state.next_id("repairs")
            state.repairs[repair_id] = RepairRow(
                id=repair_id,
                run_id=row.id,
                merchant_id=row.merchant_id,
                customer_id=repair.customer_id,
                email=repair.email,
                kind=repair.kind.value,
                reason=repair.reason,
                at=at,
            )

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
        await round_trip()
        if self._held(run_id, token) is None:
            return None
        state = self._uow.state
        chunk = sorted(
            c.id
            for c in state.customers.values()
            if c.merchant_id == merchant_id and c.id is not None and c.id > after_id
        )[:limit]
        if not chunk:
            return SweepChunk(None, [])
        missing = []
        for customer_id in chunk:
            customer = state.customers[customer_id]
            contact = state.contacts.get(customer_id)
            if customer.email is None or customer.created_at >= since:
                continue
            if contact is not None and (
                contact.seen_run_id == run_id
                or contact.pending_since is not None
                or (contact.synced_at is not None and contact.synced_at >= since)
            ):
                continue
            if contact is not None:
                contact.in_list = False
            if may_add(setting, customer.marketing_consent):
                missing.append((CustomerId(customer_id), customer.email))
        return SweepChunk(CustomerId(chunk[-1]), missing)

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
    ) -> bool:
        await round_trip()
        row = self._held(run_id, token)
        if row is None:
            return False
        row.sweep_after_id = after_id
        row.phase = (Phase.DONE if done else Phase.SWEEP).value
        self._add_repairs(row, repairs, at)
        return True

    async def finish(
        self, run_id: int, *, token: str, at: datetime, error: Reason | None = None
    ) -> bool:
        await round_trip()
        row = self._held(run_id, token)
        if row is None:
            return False
        row.finished_at, row.phase, row.error = at, Phase.DONE.value, error
        row.claim_token = row.claimed_until = None
        return True

    async def repairs(
        self, merchant_id: MerchantId, run_id: int, *, limit: int
    ) -> list[RepairRecord]:
        await round_trip()
        rows = [
            r
            for r in self._uow.state.repairs.values()
            if r.run_id == run_id and r.merchant_id == merchant_id
        ]
        return [_repair(r) for r in sorted(rows, key=lambda r: -r.id)[:limit]]

    async def purge_repairs(self, *, before: datetime) -> int:
        await round_trip()
        old = [i for i, r in self._uow.state.repairs.items() if r.at < before]
        for repair_id in old:
            del self._uow.state.repairs[repair_id]
        return len(old)

    async def customer_repairs(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int
    ) -> list[RepairRecord]:
        await round_trip()
        rows = [
            r
            for r in self._uow.state.repairs.values()
            if r.customer_id == customer_id and r.merchant_id == merchant_id
        ]
        return [_repair(r) for r in sorted(rows, key=lambda r: -r.id)[:limit]]
