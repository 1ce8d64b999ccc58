"""Reconciling a merchant's Ecomail list with the ledger (rules: ``domain.model.reconciliation``).

A run is requested (the schedule, "Reconcile now", ``ellity ecomail reconcile``; one unfinished
run per merchant) and worked on under a claim that one worker holds at a time, renewed as it
goes, so two workers never run it together and a worker that dies leaves it to be taken over
when the lease runs out. The run's place is committed with each page, so a run taken over goes
on from the page after the last one recorded.

1. It counts the list's members (the first page of each status, one member each).
2. It reads the list a page at a time (``MEMBERS_PER_PAGE``), for every status in
   ``READ_ORDER``, through a platform limited to a share of the key's request budget
   (``share``), so the live sync and the events keep the rest. For each page, in one read:
   the customers with the members' emails and what decides their repairs (``page_facts``);
   ``judge`` says what each member needs. The members no customer holds that carry Ellity's
   values are cleared at once (a bulk update of empty ``ellity_*`` fields, which changes no
   status). Then, in one transaction: the members seen are recorded with their status, drifted
   contacts are marked for the contact sync, unsubscriptions and sign-ups Ecomail never
   notified become notifications of the run (``Origin.RECONCILIATION``) that the newsletter
   processing confirms with Ecomail and applies by its rules (once: consent and the reward
   hold make a second one change nothing), the repairs are recorded with their reasons, and the
   run moves on. A customer who took a cleared email meanwhile is marked to be written again.
3. It sweeps the merchant's customers by id: those the run did not see, with an email, that
   the merchant's ``ecomail_add`` and their consent let Ellity add, are marked to be added.
4. It is finished, with the counts of each kind of repair, the members checked and the API
   calls it made.

Waiting for the budget share is no failure (the run sleeps, keeping its claim); Ecomail being
unavailable gives the run back to go on later; a refused key or a deleted list ends it with
why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.contact import ProgrammeLook, contact_snapshot
from ellity.domain.model.customer import email_key
from ellity.domain.model.errors import Conflict
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.newsletter import Notification, Origin, SubscriptionChange
from ellity.domain.model.reason import Reason
from ellity.domain.model.reconciliation import (
    ADDED_REASON,
    CustomerFacts,
    Member,
    RepairKind,
    Schedule,
    SeenStatus,
    Terms,
    judge,
    parse_schedule,
    scheduled_run_due,
)
from ellity.domain.services.common import load_merchant, today_of
from ellity.domain.services.contact_sync import cleared_contact
from ellity.domain.services.ecomail_connection import (
    KEY_REJECTED_REASON,
    KEY_UNREADABLE_REASON,
    Connection,
    connection,
)
from ellity.domain.services.work_loop import RUNNING, Stopping, claim_token
from ellity.ports.clock import Clock
from ellity.ports.marketing import (
    BULK_LIMIT,
    MEMBERS_PER_PAGE,
    BudgetExhausted,
    InvalidApiKey,
    ListNotFound,
    MarketingPlatforms,
    MarketingRejected,
    MarketingUnavailable,
    MemberFilter,
    MemberPage,
    Membership,
)
from ellity.ports.queue import JobQueue
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory
from ellity.ports.storage.reconciliation import (
    KnownCustomer,
    PageFacts,
    Phase,
    ReconciliationRun,
    Repair,
    RepairRecord,
    Trigger,
)

logger = logging.getLogger(__name__)

#: The statuses read, in this order (the run's ``status_index``).
READ_ORDER: tuple[MemberFilter, ...] = (
    MemberFilter.SUBSCRIBED,
    MemberFilter.UNSUBSCRIBED,
    MemberFilter.NOT_CONFIRMED,
    MemberFilter.BOUNCED,
    MemberFilter.COMPLAINED,
)
RUN_LEASE = timedelta(minutes=2)  # renewed with every page
SWEEP_CHUNK = 10_000  # customers per sweep statement
UNAVAILABLE_WAIT = timedelta(minutes=1)  # Ecomail down: the run goes on after this
DEFAULT_SHARE = 0.3  # of the key's request budget

LIST_CHANGED = Reason(
    "The integration now uses another list (or is no longer active): the run was stopped."
)
LIST_GONE_REASON = Reason("The Ecomail list no longer exists: the run was stopped.")


class ReconciliationNotPossible(Conflict):
    """The merchant's Ecomail integration is not active."""

    def __init__(self) -> None:
        super().__init__("Connect Ecomail and choose a list before reconciling it.")


Progress = Callable[[ReconciliationRun], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Requested:
    run_id: int
    created: bool  # False: a run was unfinished already (it goes on)


async def request_run(
    merchant_id: MerchantId,
    *,
    trigger: Trigger,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    queue: JobQueue,
) -> Requested:
    """Ask for a run of the merchant's list now (one unfinished run at a time: asking again
    while one is unfinished returns it)."""
    async with uow_factory() as uow:
        list_id = await uow.ecomail.active_list(merchant_id)
        if list_id is None:
            raise ReconciliationNotPossible()
        run_id, created = await uow.reconciliation.request(
            merchant_id, list_id, trigger=trigger, at=clock.now()
        )
        await uow.commit()
    await queue.queue_reconciliation(merchant_id)
    if created:
        logger.info("reconciliation %s of merchant %s requested (%s)", run_id, merchant_id, trigger)
    return Requested(run_id, created)


@dataclass(frozen=True, slots=True)
class ReconciliationPanel:
    """The integration page's reconciliation section."""

    schedule: Schedule
    current: ReconciliationRun | None  # the unfinished run
    runs: list[ReconciliationRun]  # the last runs, newest first
    repairs: list[RepairRecord]  # the latest run's repairs, newest first


PANEL_RUNS = 5
PANEL_REPAIRS = 50


async def reconciliation_panel(
    merchant_id: MerchantId, *, uow_factory: UnitOfWorkFactory
) -> ReconciliationPanel:
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        runs = await uow.reconciliation.latest(merchant_id, limit=PANEL_RUNS)
        repairs = (
            await uow.reconciliation.repairs(merchant_id, runs[0].id, limit=PANEL_REPAIRS)
            if runs
            else []
        )
    current = next((r for r in runs if not r.finished), None)
    return ReconciliationPanel(merchant.settings.ecomail_reconcile, current, runs, repairs)


async def choose_schedule(
    merchant_id: MerchantId, value: str, *, uow_factory: UnitOfWorkFactory
) -> Schedule:
    """Save how often the merchant's list is reconciled (``ecomail_reconcile``)."""
    schedule = parse_schedule(value)
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, merchant_id)
        settings = dataclasses.replace(merchant.settings, ecomail_reconcile=schedule)
        await uow.merchants.update_settings(merchant_id, settings)
        await uow.commit()
    return schedule


async def forget_repairs(*, uow_factory: UnitOfWorkFactory, clock: Clock, keep: timedelta) -> int:
    """Delete the repairs recorded longer than ``keep`` ago (each run keeps its counts)."""
    async with uow_factory() as uow:
        count = await uow.reconciliation.purge_repairs(before=clock.now() - keep)
        await uow.commit()
    return count


async def queue_due_runs(
    *, uow_factory: UnitOfWorkFactory, clock: Clock, queue: JobQueue
) -> list[MerchantId]:
    """The worker's tick: request the runs the merchants' schedules ask for, and queue a job
    for every unfinished run no worker holds (a new one, or one whose worker died)."""
    now = clock.now()
    async with uow_factory(read_only=True) as uow:
        schedules = await uow.reconciliation.schedules()
    for facts in schedules:
        due = scheduled_run_due(
            facts.schedule,
            last_requested_at=facts.last_requested_at,
            activated_at=facts.activated_at,
            now=now,
        )
        if due and not facts.unfinished:
            async with uow_factory() as uow:
                await uow.reconciliation.request(
                    facts.merchant_id, facts.list_id, trigger=Trigger.SCHEDULE, at=now
                )
                await uow.commit()
    async with uow_factory(read_only=True) as uow:
        waiting = await uow.reconciliation.claimable(now=now)
    for merchant_id in waiting:
        await queue.queue_reconciliation(merchant_id)
    return waiting


async def run_reconciliation(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    clock: Clock,
    worker_token: str,
    share: float = DEFAULT_SHARE,
    per_page: int = MEMBERS_PER_PAGE,
    stopping: Stopping = RUNNING,
    progress: Progress | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ReconciliationRun | None:
    """Work on the merchant's unfinished run until it is finished, given back (Ecomail
    unavailable, the worker stopping) or its claim is lost; returns the run as it was left.
    ``None`` when there was nothing to claim (no run, or another worker holds it)."""
    token = claim_token(worker_token, "r")
    now = clock.now()
    async with uow_factory() as uow:
        run = await uow.reconciliation.claim(
            merchant_id, token=token, now=now, until=now + RUN_LEASE
        )
        await uow.commit()
    if run is None:
        return None
    worker = _Run(run, token, uow_factory, platforms, secret_box, clock, share, per_page, sleep)
    return await worker.go(stopping, progress)


@dataclass(slots=True)
class _Run:
    run: ReconciliationRun
    token: str
    uow_factory: UnitOfWorkFactory
    platforms: MarketingPlatforms
    secret_box: SecretBox
    clock: Clock
    share: float
    per_page: int
    sleep: Callable[[float], Awaitable[None]]
    link: Connection | None = None
    calls: int = 0  # API calls since the last record

    @property
    def merchant_id(self) -> MerchantId:
        return self.run.merchant_id

    async def go(self, stopping: Stopping, progress: Progress | None) -> ReconciliationRun | None:
        try:
            self.link = await connection(
                self.merchant_id,
                uow_factory=self.uow_factory,
                platforms=self.platforms,
                secret_box=self.secret_box,
                share=self.share,
            )
        except SecretUnreadable:
            return await self._finish(KEY_UNREADABLE_REASON)
        if self.link is None or self.link.list_id != self.run.list_id:
            return await self._finish(LIST_CHANGED)
        while True:
            if stopping.is_set():
                return await self._give_back(self.clock.now())
            try:
                going = await self._step()
            except BudgetExhausted as exc:  # nothing was sent: wait for the share, keep going
                await self.sleep(max(exc.retry_after, 0.05))
                continue
            except InvalidApiKey:
                return await self._finish(KEY_REJECTED_REASON)
            except ListNotFound:
                return await self._finish(LIST_GONE_REASON)
            except MarketingUnavailable as exc:
                logger.warning(
                    "reconciliation %s of merchant %s waits: %s", self.run.id, self.merchant_id, exc
                )
                wait = max(UNAVAILABLE_WAIT, timedelta(seconds=exc.retry_after or 0))
                return await self._give_back(self.clock.now() + wait)
            except MarketingRejected as exc:
                return await self._finish(
                    Reason(
                        "Ecomail refused a request (%(why)s): the run was stopped.", why=str(exc)
                    )
                )
            if not going:
                return None  # the claim was lost: the worker holding it goes on
            if progress is not None:
                await progress(self.run)
            if self.run.finished:
                return self.run

    async def _step(self) -> bool:
        """One step of the run; False when the claim was lost."""
        if not await self._renew():
            return False
        if self.run.phase is Phase.READ:
            if self.run.expected is None:
                return await self._count()
            return await self._read_page()
        if self.run.phase is Phase.SWEEP:
            return await self._sweep()
        finished = await self._finish(None)
        return finished is not None

    async def _renew(self) -> bool:
        async with self.uow_factory() as uow:
            held = await uow.reconciliation.renew(
                self.run.id, token=self.token, until=self.clock.now() + RUN_LEASE
            )
            await uow.commit()
        return held

    @property
    def _link(self) -> Connection:
        if self.link is None:
            raise RuntimeError("the run has no connection yet")
        return self.link

    async def _members(self, status: MemberFilter, page: int, per_page: int) -> MemberPage:
        self.calls += 1
        return await self._link.platform.members(
            self._link.list_id, status=status, page=page, per_page=per_page
        )

    async def _count(self) -> bool:
        expected = 0
        for status in READ_ORDER:
            expected += (await self._members(status, 1, 1)).total
        async with self.uow_factory() as uow:
            started = await uow.reconciliation.start(
                self.run.id, token=self.token, expected=expected, at=self.clock.now()
            )
            await uow.commit()
        return started and await self._reload()

    async def _reload(self) -> bool:
        async with self.uow_factory(read_only=True) as uow:
            run = await uow.reconciliation.get(self.merchant_id, self.run.id)
        if run is None:
            return False
        self.run = run
        return True

    async def _read_page(self) -> bool:
        run = self.run
        status = READ_ORDER[run.status_index]
        read = await self._members(status, run.page, self.per_page)
        members = read.members
        if run.page >= read.last_page or not members:
            next_index, next_page = run.status_index + 1, 1
        else:
            next_index, next_page = run.status_index, run.page + 1
        phase = Phase.SWEEP if next_index >= len(READ_ORDER) else Phase.READ
        keys = [email_key(m.email) or "" for m in members]
        async with self.uow_factory(read_only=True) as uow:
            merchant = await load_merchant(uow, self.merchant_id)
            integration = await uow.ecomail.get(self.merchant_id)
            facts = await uow.reconciliation.page_facts(
                self.merchant_id, keys, today=today_of(merchant, self.clock)
            )
        terms = Terms(
            reward_paid=merchant.settings.newsletter_reward.is_positive(),
            listening_since=None if integration is None else integration.activated_at,
        )
        page = _judged(
            members, keys, facts, terms=terms, look=_look(merchant), status=SeenStatus(status.value)
        )
        await self._clear(page.cleared)
        async with self.uow_factory() as uow:
            if not await self._record(uow, page, next_index, next_page, phase):
                return False
            await uow.commit()
        return await self._reload()

    async def _record(
        self, uow: UnitOfWork, page: _Page, index: int, page_no: int, phase: Phase
    ) -> bool:
        now = self.clock.now()
        run = self.run
        retaken: list[CustomerId] = []
        if page.cleared:
            # a customer who took a cleared email meanwhile gets its fields written again
            again = await uow.reconciliation.page_facts(
                self.merchant_id, [email_key(e) or "" for e in page.cleared], today=now.date()
            )
            retaken = [c.loyalty.customer_id for c in again.customers.values()]
        recorded = await uow.reconciliation.record_page(
            run.id,
            token=self.token,
            merchant_id=self.merchant_id,
            seen=page.seen,
            repairs=page.repairs,
            status_index=index,
            page=page_no,
            phase=phase,
            checked=page.checked,
            api_calls=self.calls,
            at=now,
        )
        if not recorded:
            return False
        self.calls = 0
        rewrite = [r.customer_id for r in page.repairs if r.kind is RepairKind.FIELDS]
        rewrite += retaken
        if rewrite:
            await uow.contacts.mark_changed(
                self.merchant_id, [i for i in rewrite if i is not None], at=now
            )
        for repair in page.repairs:
            change = _NOTIFIED.get(repair.kind)
            if change is not None:
                found = Notification(
                    repair.email, change, run.list_id, origin=Origin.RECONCILIATION
                )
                await uow.newsletter.enqueue(self.merchant_id, found, received_at=now, at=now)
        return True

    async def _clear(self, emails: Sequence[str]) -> None:
        for start in range(0, len(emails), BULK_LIMIT):
            chunk = [cleared_contact(e) for e in emails[start : start + BULK_LIMIT]]
            self.calls += 1
            await self._link.platform.update_contacts(self._link.list_id, chunk)

    async def _sweep(self) -> bool:
        run = self.run
        async with self.uow_factory() as uow:
            merchant = await load_merchant(uow, self.merchant_id)
            chunk = await uow.reconciliation.sweep(
                run.id,
                token=self.token,
                merchant_id=self.merchant_id,
                setting=merchant.settings.ecomail_add,
                after_id=run.sweep_after_id,
                limit=SWEEP_CHUNK,
                since=run.started_at or run.requested_at,
            )
            if chunk is None:
                return False
            now = self.clock.now()
            repairs = [
                Repair(RepairKind.ADDED, email, ADDED_REASON, i) for i, email in chunk.missing
            ]
            if repairs:
                await uow.contacts.mark_changed(
                    self.merchant_id, [i for i, _ in chunk.missing], at=now, moved=True
                )
            recorded = await uow.reconciliation.record_sweep(
                run.id,
                token=self.token,
                merchant_id=self.merchant_id,
                repairs=repairs,
                after_id=chunk.last_id or run.sweep_after_id,
                done=chunk.last_id is None,
                at=now,
            )
            if not recorded:
                return False
            await uow.commit()
        return await self._reload()

    async def _finish(self, error: Reason | None) -> ReconciliationRun | None:
        async with self.uow_factory() as uow:
            if self.calls:
                await uow.reconciliation.record_page(
                    self.run.id,
                    token=self.token,
                    merchant_id=self.merchant_id,
                    seen=[],
                    repairs=[],
                    status_index=self.run.status_index,
                    page=self.run.page,
                    phase=self.run.phase,
                    checked=0,
                    api_calls=self.calls,
                    at=self.clock.now(),
                )
                self.calls = 0
            done = await uow.reconciliation.finish(
                self.run.id, token=self.token, at=self.clock.now(), error=error
            )
            await uow.commit()
        if not done:
            return None
        await self._reload()
        run = self.run
        logger.info(
            "reconciliation %s of merchant %s finished: %d members checked, %d repairs, %d API"
            " calls%s",
            run.id,
            run.merchant_id,
            run.checked,
            run.repairs.total,
            run.api_calls,
            "" if error is None else f" ({error.english()})",
        )
        return run

    async def _give_back(self, available_at: datetime) -> ReconciliationRun | None:
        async with self.uow_factory() as uow:
            await uow.reconciliation.release(
                self.run.id, token=self.token, available_at=available_at
            )
            await uow.commit()
        return self.run


_NOTIFIED = {
    RepairKind.UNSUBSCRIBED: SubscriptionChange.UNSUBSCRIBED,
    RepairKind.CONFIRMED: SubscriptionChange.SUBSCRIBED,
    RepairKind.SIGNUP: SubscriptionChange.SUBSCRIBED,
}


@dataclass(frozen=True, slots=True)
class _Page:
    seen: list[tuple[CustomerId, int]]
    repairs: list[Repair]
    cleared: list[str]  # emails to clear in the list
    checked: int


def _look(merchant: Merchant) -> ProgrammeLook:
    settings = merchant.settings
    return ProgrammeLook(settings.locale, settings.shop_url, settings.referral_link_template)


def _judged(
    members: Sequence[Membership],
    keys: Sequence[str],
    facts: PageFacts,
    *,
    terms: Terms,
    look: ProgrammeLook,
    status: SeenStatus,
) -> _Page:
    seen: list[tuple[CustomerId, int]] = []
    repairs: list[Repair] = []
    cleared: list[str] = []
    for membership, key in zip(members, keys, strict=True):
        known = facts.customers.get(key)
        member = Member(
            email=membership.email,
            status=status,
            fields=membership.custom_fields,
            subscribed_at=membership.subscribed_at,
            unsubscribed_at=membership.unsubscribed_at,
        )
        customer = None if known is None else _facts(known, look)
        for finding in judge(member, customer, terms, old_address=key in facts.old_addresses):
            customer_id = None if customer is None else customer.customer_id
            repairs.append(Repair(finding.kind, membership.email, finding.reason, customer_id))
            if finding.kind is RepairKind.CLEARED:
                cleared.append(membership.email)
        if customer is not None:
            seen.append((customer.customer_id, int(membership.status)))
    return _Page(seen, repairs, cleared, len(members))


def _facts(known: KnownCustomer, look: ProgrammeLook) -> CustomerFacts:
    loyalty = known.loyalty
    return CustomerFacts(
        customer_id=loyalty.customer_id,
        fields=contact_snapshot(loyalty, look).fields,
        consent=loyalty.marketing_consent,
        consent_changed_at=known.consent_changed_at,
        write_pending=known.write_pending,
        added_by_ellity=known.added_by_ellity,
        reward_held=known.reward_held,
        notification_pending=known.notification_pending,
        signup_unconfirmed=known.signup_unconfirmed,
    )
