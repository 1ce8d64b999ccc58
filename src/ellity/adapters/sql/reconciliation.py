"""Reconciliation runs in SQL (``ReconciliationRepository``).

A page's facts are read by three statements over the page's email keys (customers with their
contact row and reward hold; their notifications; the old addresses), each an index probe
per key. Recording a page upserts the contacts seen (their status as last seen, the run) per
status, inserts the repairs and moves the run's cursor and counts in one UPDATE that holds only
while the claim does. The sweep walks the merchant's customers by id, a range at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.columns import UtcDateTime, dialect_insert, instant
from ellity.adapters.sql.tables.contact_sync import (
    ecomail_contacts,
    ecomail_integrations,
    ecomail_old_addresses,
)
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.merchants import merchants
from ellity.adapters.sql.tables.newsletter import newsletter_notifications, newsletter_rewards
from ellity.adapters.sql.tables.reconciliation import (
    reconciliation_repairs,
    reconciliation_runs,
)
from ellity.adapters.sql.valid_points import loyalty_columns, loyalty_of
from ellity.adapters.sql.work_queue import unclaimed
from ellity.domain.model.consent import EcomailAdd, MarketingConsent
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.newsletter import NotificationState, Outcome, SubscriptionChange
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

_r = reconciliation_runs.c
_p = reconciliation_repairs.c
_c = ecomail_contacts.c
_n = newsletter_notifications.c

#: The run's counter of each kind of repair.
COUNT_COLUMNS = {
    RepairKind.FIELDS: "fields_rewritten",
    RepairKind.ADDED: "added",
    RepairKind.UNSUBSCRIBED: "unsubscribed",
    RepairKind.CONFIRMED: "confirmed_paid",
    RepairKind.SIGNUP: "signup_paid",
    RepairKind.CLEARED: "cleared",
}
_UNFINISHED = _r.finished_at.is_(None)


def _run_of(row: Any) -> ReconciliationRun:
    error = None
    if row.error is not None:
        error = (
            Reason.stored(row.error)
            if row.error_parts is None
            else Reason.from_json(row.error_parts)
        )
    return ReconciliationRun(
        id=row.id,
        merchant_id=MerchantId(row.merchant_id),
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
        repairs=RepairCounts(
            **{kind.value: getattr(row, column) for kind, column in COUNT_COLUMNS.items()}
        ),
        error=error,
        claimed_until=row.claimed_until,
    )


def _repair_of(row: Any) -> RepairRecord:
    reason = (
        Reason.stored(row.reason)
        if row.reason_parts is None
        else Reason.from_json(row.reason_parts)
    )
    return RepairRecord(
        id=row.id,
        run_id=row.run_id,
        kind=RepairKind(row.kind),
        email=row.email,
        reason=reason,
        customer_id=None if row.customer_id is None else CustomerId(row.customer_id),
        at=row.at,
    )


def _may_add(setting: EcomailAdd) -> Any:
    """``domain.model.consent.may_add`` as a condition on ``customers``."""
    consent = customers.c.marketing_consent
    if setting is EcomailAdd.CONSENTED:
        return consent == MarketingConsent.GRANTED.value
    if setting is EcomailAdd.CUSTOMERS:
        return consent != MarketingConsent.REFUSED.value
    return sa.false()


class SqlReconciliationRepository(ReconciliationRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def request(
        self, merchant_id: MerchantId, list_id: str, *, trigger: Trigger, at: datetime
    ) -> tuple[int, bool]:
        existing = await self._unfinished_id(merchant_id)
        if existing is not None:
            return existing, False
        try:
            async with self.conn.begin_nested():
                created = await self.conn.execute(
                    reconciliation_runs.insert()
                    .values(
                        merchant_id=merchant_id,
                        list_id=list_id,
                        trigger=trigger.value,
                        requested_at=at,
                        available_at=at,
                        phase=Phase.READ.value,
                        status_index=0,
                        page=1,
                        sweep_after_id=0,
                        checked=0,
                        api_calls=0,
                        **dict.fromkeys(COUNT_COLUMNS.values(), 0),
                    )
                    .returning(_r.id)
                )
                return int(created.scalar_one()), True
        except IntegrityError:  # another request made it meanwhile (the unique index)
            again = await self._unfinished_id(merchant_id)
            if again is None:
                raise
            return again, False

    async def _unfinished_id(self, merchant_id: MerchantId) -> int | None:
        found = await self.conn.execute(
            sa.select(_r.id).where(_r.merchant_id == merchant_id, _UNFINISHED)
        )
        return found.scalar_one_or_none()

    async def get(self, merchant_id: MerchantId, run_id: int) -> ReconciliationRun | None:
        row = (
            await self.conn.execute(
                sa.select(reconciliation_runs).where(_r.merchant_id == merchant_id, _r.id == run_id)
            )
        ).one_or_none()
        return None if row is None else _run_of(row)

    async def unfinished(self, merchant_id: MerchantId) -> ReconciliationRun | None:
        row = (
            await self.conn.execute(
                sa.select(reconciliation_runs).where(_r.merchant_id == merchant_id, _UNFINISHED)
            )
        ).one_or_none()
        return None if row is None else _run_of(row)

    async def latest(self, merchant_id: MerchantId, *, limit: int) -> list[ReconciliationRun]:
        rows = await self.conn.execute(
            sa.select(reconciliation_runs)
            .where(_r.merchant_id == merchant_id)
            .order_by(_r.id.desc())
            .limit(limit)
        )
        return [_run_of(row) for row in rows]

    async def schedules(self) -> list[ScheduleFacts]:
        i = ecomail_integrations.c
        last = (
            sa.select(
                _r.merchant_id,
                sa.func.max(_r.requested_at).label("last_requested_at"),
                sa.func.count().filter(_UNFINISHED).label("unfinished"),
            )
            .group_by(_r.merchant_id)
            .subquery()
        )
        rows = await self.conn.execute(
            sa.select(
                i.merchant_id,
                i.list_id,
                merchants.c.ecomail_reconcile,
                i.activated_at,
                last.c.last_requested_at,
                last.c.unfinished,
            )
            .join(merchants, merchants.c.id == i.merchant_id)
            .outerjoin(last, last.c.merchant_id == i.merchant_id)
            .where(
                i.active.is_(True),
                i.list_id.is_not(None),
                i.activated_at.is_not(None),
                merchants.c.ecomail_reconcile != Schedule.OFF.value,
            )
            .order_by(i.merchant_id)
        )
        return [
            ScheduleFacts(
                merchant_id=MerchantId(row.merchant_id),
                list_id=row.list_id,
                schedule=Schedule(row.ecomail_reconcile),
                activated_at=row.activated_at,
                last_requested_at=row.last_requested_at,
                unfinished=bool(row.unfinished),
            )
            for row in rows
        ]

    async def claimable(self, *, now: datetime) -> list[MerchantId]:
        rows = await self.conn.execute(
            sa.select(_r.merchant_id)
            .where(_UNFINISHED, _r.available_at <= now, unclaimed(_r.claimed_until, now))
            .order_by(_r.id)
        )
        return [MerchantId(m) for m in rows.scalars()]

    async def claim(
        self, merchant_id: MerchantId, *, token: str, now: datetime, until: datetime
    ) -> ReconciliationRun | None:
        row = (
            await self.conn.execute(
                reconciliation_runs.update()
                .where(
                    _r.merchant_id == merchant_id,
                    _UNFINISHED,
                    _r.available_at <= now,
                    sa.or_(unclaimed(_r.claimed_until, now), _r.claim_token == token),
                )
                .values(claim_token=token, claimed_until=until)
                .returning(*reconciliation_runs.c)
            )
        ).one_or_none()
        return None if row is None else _run_of(row)

    def _held(self, run_id: int, token: str) -> list[Any]:
        return [_r.id == run_id, _r.claim_token == token, _UNFINISHED]

    async def renew(self, run_id: int, *, token: str, until: datetime) -> bool:
        done = await self.conn.execute(
            reconciliation_runs.update()
            .where(*self._held(run_id, token))
            .values(claimed_until=until)
        )
        return done.rowcount == 1

    async def release(self, run_id: int, *, token: str, available_at: datetime) -> bool:
        done = await self.conn.execute(
            reconciliation_runs.update()
            .where(*self._held(run_id, token))
            .values(claim_token=None, claimed_until=None, available_at=available_at)
        )
        return done.rowcount == 1

    async def start(self, run_id: int, *, token: str, expected: int, at: datetime) -> bool:
        done = await self.conn.execute(
            reconciliation_runs.update()
            .where(*self._held(run_id, token))
            .values(started_at=sa.func.coalesce(_r.started_at, instant(at)), expected=expected)
        )
        return done.rowcount == 1

    async def page_facts(
        self, merchant_id: MerchantId, email_keys: Sequence[str], *, today: date
    ) -> PageFacts:
        keys = sorted(set(email_keys))
        if not keys:
            return PageFacts({})
        r = newsletter_rewards.c
        rows = await self.conn.execute(
            sa.select(
                *loyalty_columns(today),
                customers.c.email_key,
                customers.c.consent_changed_at,
                _c.pending_since,
                _c.failed_at,
                _c.add_attempted_at,
                _c.added_at,
                r.outstanding_cents,
            )
            .outerjoin(ecomail_contacts, _c.customer_id == customers.c.id)
            .outerjoin(newsletter_rewards, r.customer_id == customers.c.id)
            .where(customers.c.merchant_id == merchant_id, customers.c.email_key.in_(keys))
        )
        found = list(rows)
        unconfirmed = sa.and_(
            _n.state == NotificationState.PROCESSED.value,
            _n.outcome == Outcome.UNCONFIRMED.value,
            _n.status == SubscriptionChange.SUBSCRIBED.value,
        )
        notes = await self.conn.execute(
            sa.select(
                _n.email_key,
                sa.func.max(sa.case((_n.state == NotificationState.PENDING.value, 1), else_=0)),
                sa.func.max(sa.case((unconfirmed, 1), else_=0)),
            )
            .where(_n.merchant_id == merchant_id, _n.email_key.in_(keys))
            .group_by(_n.email_key)
        )
        noted = {key: (bool(pending), bool(doi)) for key, pending, doi in notes}
        o = ecomail_old_addresses.c
        old = await self.conn.execute(
            sa.select(o.email_key)
            .where(o.merchant_id == merchant_id, o.email_key.in_(keys))
            .distinct()
        )
        known = {}
        for row in found:
            pending, doi = noted.get(row.email_key, (False, False))
            known[row.email_key] = KnownCustomer(
                loyalty=loyalty_of(tuple(row)[:13]),
                consent_changed_at=row.consent_changed_at,
                write_pending=row.pending_since is not None and row.failed_at is None,
                added_by_ellity=row.add_attempted_at is not None or row.added_at is not None,
                reward_held=(row.outstanding_cents or 0) > 0,
                notification_pending=pending,
                signup_unconfirmed=doi,
            )
        return PageFacts(known, frozenset(old.scalars()))

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
        moved = await self._advance(
            run_id,
            token,
            repairs,
            status_index=status_index,
            page=page,
            phase=phase.value,
            checked=_r.checked + checked,
            api_calls=_r.api_calls + api_calls,
        )
        if not moved:
            return False
        by_status: dict[int, list[CustomerId]] = {}
        for customer_id, status in seen:
            by_status.setdefault(status, []).append(customer_id)
        for status, ids in sorted(by_status.items()):
            await self._mark_seen(merchant_id, run_id, sorted(set(ids)), status, at)
        await self._insert_repairs(run_id, merchant_id, repairs, at)
        return True

    async def _advance(
        self, run_id: int, token: str, repairs: Sequence[Repair], **values: Any
    ) -> bool:
        counts: dict[str, Any] = {}
        for repair in repairs:
            column = COUNT_COLUMNS[repair.kind]
            counts[column] = counts.get(column, 0) + 1
        done = await self.conn.execute(
            reconciliation_runs.update()
            .where(*self._held(run_id, token))
            .values(**values, **{c: _r[c] + n for c, n in counts.items()})
        )
        return done.rowcount == 1

    async def _mark_seen(
        self,
        merchant_id: MerchantId,
        run_id: int,
        ids: list[CustomerId],
        status: int,
        at: datetime,
    ) -> None:
        """Two statements however many contacts (their ids bound as one expanding list, so
        each is compiled once): the rows of customers without one yet are made, then every
        contact gets what the run saw."""
        made = (
            sa.select(
                customers.c.id,
                customers.c.merchant_id,
                sa.literal(0),
                sa.literal(0),
                sa.true(),
                sa.false(),
            )
            .where(
                customers.c.merchant_id == merchant_id,
                customers.c.id.in_(sa.bindparam("ids", expanding=True)),
                ~sa.exists().where(_c.customer_id == customers.c.id),
            )
            .order_by(customers.c.id)
        )
        insert = dialect_insert(self.conn.dialect, ecomail_contacts)
        columns = ["customer_id", "merchant_id", "change_seq", "attempts", "in_list"]
        await self.conn.execute(
            insert.from_select([*columns, "unsubscribe_due"], made).on_conflict_do_nothing(
                index_elements=[_c.customer_id]
            ),
            {"ids": ids},
        )
        await self.conn.execute(
            ecomail_contacts.update()
            .where(
                _c.merchant_id == merchant_id,
                _c.customer_id.in_(sa.bindparam("ids", expanding=True)),
            )
            .values(
                in_list=True,
                list_status=sa.bindparam("status", type_=sa.SmallInteger()),
                list_status_at=sa.bindparam("at", type_=UtcDateTime()),
                seen_run_id=sa.bindparam("run_id", type_=sa.BigInteger()),
            ),
            {"ids": ids, "status": status, "at": at, "run_id": run_id},
        )

    async def _insert_repairs(
        self, run_id: int, merchant_id: MerchantId, repairs: Sequence[Repair], at: datetime
    ) -> None:
        if not repairs:
            return
        await self.conn.execute(
            reconciliation_repairs.insert(),
            [
                {
                    "run_id": run_id,
                    "merchant_id": merchant_id,
                    "customer_id": repair.customer_id,
                    "email": repair.email,
                    "kind": repair.kind.value,
                    "reason": repair.reason.english(),
                    "reason_parts": repair.reason.to_json(),
                    "at": at,
                }
                for repair in repairs
            ],
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
        held = await self.conn.execute(sa.select(_r.id).where(*self._held(run_id, token)))
        if held.scalar_one_or_none() is None:
            return None
        chunk = (
            sa.select(customers.c.id)
            .where(customers.c.merchant_id == merchant_id, customers.c.id > after_id)
            .order_by(customers.c.id)
            .limit(limit)
            .subquery()
        )
        last_id = (await self.conn.execute(sa.select(sa.func.max(chunk.c.id)))).scalar_one()
        if last_id is None:
            return SweepChunk(None, [])
        in_range = sa.and_(
            customers.c.merchant_id == merchant_id,
            customers.c.id > after_id,
            customers.c.id <= last_id,
        )
        unseen = sa.and_(
            customers.c.email.is_not(None),
            customers.c.created_at < since,
            sa.or_(_c.seen_run_id.is_(None), _c.seen_run_id != run_id),
            _c.pending_since.is_(None),
            sa.or_(_c.synced_at.is_(None), _c.synced_at < since),
        )
        rows = await self.conn.execute(
            sa.select(customers.c.id, customers.c.email, _may_add(setting).label("may_add"))
            .outerjoin(ecomail_contacts, _c.customer_id == customers.c.id)
            .where(in_range, unseen)
            .order_by(customers.c.id)
        )
        missing, gone = [], []
        for row in rows:
            gone.append(row.id)
            if row.may_add:
                missing.append((CustomerId(row.id), row.email))
        if gone:
            await self.conn.execute(
                ecomail_contacts.update()
                .where(_c.customer_id.in_(gone), _c.in_list.is_(True))
                .values(in_list=False)
            )
        return SweepChunk(CustomerId(last_id), missing)

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
        phase = Phase.DONE if done else Phase.SWEEP
        moved = await self._advance(
            run_id, token, repairs, sweep_after_id=after_id, phase=phase.value
        )
        if moved:
            await self._insert_repairs(run_id, merchant_id, repairs, at)
        return moved

    async def finish(
        self, run_id: int, *, token: str, at: datetime, error: Reason | None = None
    ) -> bool:
        done = await self.conn.execute(
            reconciliation_runs.update()
            .where(*self._held(run_id, token))
            .values(
                finished_at=at,
                phase=Phase.DONE.value,
                claim_token=None,
                claimed_until=None,
                error=None if error is None else error.english(),
                error_parts=None if error is None else error.to_json(),
            )
        )
        return done.rowcount == 1

    async def repairs(
        self, merchant_id: MerchantId, run_id: int, *, limit: int
    ) -> list[RepairRecord]:
        rows = await self.conn.execute(
            sa.select(reconciliation_repairs)
            .where(_p.run_id == run_id, _p.merchant_id == merchant_id)
            .order_by(_p.id.desc())
            .limit(limit)
        )
        return [_repair_of(row) for row in rows]

    async def purge_repairs(self, *, before: datetime) -> int:
        done = await self.conn.execute(reconciliation_repairs.delete().where(_p.at < before))
        return int(done.rowcount)

    async def customer_repairs(
        self, merchant_id: MerchantId, customer_id: CustomerId, *, limit: int
    ) -> list[RepairRecord]:
        rows = await self.conn.execute(
            sa.select(reconciliation_repairs)
            .where(_p.merchant_id == merchant_id, _p.customer_id == customer_id)
            .order_by(_p.id.desc())
            .limit(limit)
        )
        return [_repair_of(row) for row in rows]
