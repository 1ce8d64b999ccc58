"""The nightly run of a merchant: expire the due points, then notify of points about to expire.

Both steps walk the merchant's customers in chunks (``chunk_size`` customers in id order),
each chunk in its own short transaction, so no transaction holds the database (on SQLite the
single writer's lock) for long and live changes go on in between. Each chunk records, in its
own transaction and set-based, what the outside world must hear of it (``notifications``).

Both steps are safe to repeat and to run twice at once: a second expiry finds nothing due,
and a pre-expiry notice is recorded once per customer and last valid day, ever (storage
decides between concurrent runs). A missed night is caught up by the next run: the expiry
takes whatever is past due, and the notice window starts today.

``queue_due_nightlies`` is what the worker's cron calls every few minutes: it queues the
nightly of each merchant whose local time is past ``NIGHTLY_AT`` and whose run for the local
date has not finished (nor is held by a run in progress) as a job of its own.
``run_claimed_nightly`` is that job: it claims the night for a lease (atomically, so two
workers never both run it), runs it, and records the date as done; on any other exit (a
failure, a cancellation) it gives the claim back, and the claim of a process that died runs
out by itself, so the next tick runs the night again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from ellity.domain.model.expiry import local_date
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.nightly import nightly_date, notice_window
from ellity.domain.services import dashboard, notifications
from ellity.domain.services.common import load_merchant, retried_on_conflict
from ellity.domain.services.notifications import Recorded
from ellity.ports.clock import Clock
from ellity.ports.queue import JobQueue
from ellity.ports.storage import ExpiredChunk, UnitOfWorkFactory

logger = logging.getLogger(__name__)

NIGHTLY_CHUNK = 20_000  # customers per transaction

NOTIFY_OFF = "pre-expiry notices are off (pre_expiry_notify=false)"
NOBODY_TO_TELL = "the Ecomail integration is not active and system emails are off: nothing to send"


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    customers: int = 0  # customers whose due points expired
    recorded: Recorded = field(default_factory=Recorded)


@dataclass(frozen=True, slots=True)
class NoticeResult:
    notices: int = 0  # (customer, last valid day) pairs noted for the first time
    recorded: Recorded = field(default_factory=Recorded)
    skipped: str | None = None  # why nothing was looked at


@dataclass(frozen=True, slots=True)
class DueNightly:
    merchant_id: MerchantId
    local_date: date


@dataclass(frozen=True, slots=True)
class NightlyResult:
    merchant_id: MerchantId
    local_date: date
    expiry: ExpiryResult
    notices: NoticeResult


async def _chunks(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, size: int
) -> AsyncIterator[tuple[CustomerId, CustomerId]]:
    """``(after_id, up_to_id]`` ranges of ``size`` customers, in id order."""
    after = BEFORE_FIRST_CUSTOMER
    while True:
        async with uow_factory(read_only=True) as uow:
            end = await uow.customers.chunk_end(merchant_id, after_id=after, size=size)
        if end is None:
            return
        yield after, end
        after = end


async def expire_points(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    chunk_size: int = NIGHTLY_CHUNK,
) -> ExpiryResult:
    """Expire the points whose last valid day is before today (merchant's time zone): an
    expiry entry per customer, and with each chunk the contacts marked and a ``credit`` event
    per customer (integration active), the "points changed" email (switch on)."""
    now = clock.now()
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
    today = local_date(now, merchant.settings.timezone)
    customers, recorded = 0, Recorded()
    async for after, end in _chunks(uow_factory, merchant_id, chunk_size):
        chunk = ExpiredChunk(merchant_id, at=now, after_id=after, up_to_id=end)
        expired, chunk_recorded = await _expire_chunk(chunk, today=today, uow_factory=uow_factory)
        customers += expired
        recorded += chunk_recorded
    return ExpiryResult(customers=customers, recorded=recorded)


@retried_on_conflict
async def _expire_chunk(
    chunk: ExpiredChunk, *, today: date, uow_factory: UnitOfWorkFactory
) -> tuple[int, Recorded]:
    """One chunk's transaction: its customers are locked in id order (``expire_due``)."""
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, chunk.merchant_id)
        expired = await uow.ledgers.expire_due(
            chunk.merchant_id,
            at=chunk.at,
            today=today,
            after_id=chunk.after_id,
            up_to_id=chunk.up_to_id,
        )
        recorded = Recorded()
        if expired:
            recorded = await notifications.points_expired(uow, merchant, chunk)
        await uow.commit()
    return expired, recorded


async def notify_upcoming_expiry(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    chunk_size: int = NIGHTLY_CHUNK,
) -> NoticeResult:
    """With "Notify Ecomail" on: for each customer with an email and each last valid day in
    the next ``pre_expiry_days`` days (today included) on which they hold points, once ever,
    an ``expiry`` event (integration active) and the "points expiring" email (switch on).

    With neither channel open nothing is noted, so the notices are not used up unsent."""
    now = clock.now()
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
    settings = merchant.settings
    if not settings.pre_expiry_notify:
        return NoticeResult(skipped=NOTIFY_OFF)
    first_day, last_day = notice_window(now, settings.timezone, settings.pre_expiry_days)
    notices, recorded = 0, Recorded()
    async for after, end in _chunks(uow_factory, merchant_id, chunk_size):
        noted, chunk_recorded, skipped = await _notice_chunk(
            merchant_id,
            (after, end),
            first_day=first_day,
            last_day=last_day,
            at=now,
            uow_factory=uow_factory,
        )
        if skipped is not None:
            return NoticeResult(notices, recorded, skipped=skipped)
        notices += noted
        recorded += chunk_recorded
    return NoticeResult(notices=notices, recorded=recorded)


@retried_on_conflict
async def _notice_chunk(
    merchant_id: MerchantId,
    ids: tuple[CustomerId, CustomerId],
    *,
    first_day: date,
    last_day: date,
    at: datetime,
    uow_factory: UnitOfWorkFactory,
) -> tuple[int, Recorded, str | None]:
    """The notices of the customers ``ids[0] < id <= ids[1]`` in one transaction: how many,
    what they recorded, or why nothing was looked at (the settings as they are now, chunk by
    chunk)."""
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, merchant_id)  # as it is now, chunk by chunk
        active = await uow.ecomail.active_list(merchant_id) is not None
        if not merchant.settings.pre_expiry_notify:
            return 0, Recorded(), NOTIFY_OFF
        if not (active or merchant.settings.send_system_emails):
            return 0, Recorded(), NOBODY_TO_TELL
        noted = await uow.ledgers.record_expiry_notices(
            merchant_id,
            first_day=first_day,
            last_day=last_day,
            after_id=ids[0],
            up_to_id=ids[1],
            at=at,
        )
        recorded = await notifications.points_expiring(
            uow, merchant, noted, ecomail_active=active, at=at
        )
        await uow.commit()
    return len(noted), recorded, None


async def run_nightly(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    chunk_size: int = NIGHTLY_CHUNK,
) -> NightlyResult:
    """The merchant's nightly run, now: the expiry, then the pre-expiry notices, then what
    the dashboard reads (``dashboard.keep_dashboard``)."""
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
    expiry = await expire_points(
        merchant_id, uow_factory=uow_factory, clock=clock, chunk_size=chunk_size
    )
    notices = await notify_upcoming_expiry(
        merchant_id, uow_factory=uow_factory, clock=clock, chunk_size=chunk_size
    )
    await dashboard.keep_dashboard(merchant_id, uow_factory=uow_factory, clock=clock)
    return NightlyResult(
        merchant_id=merchant_id,
        local_date=local_date(clock.now(), merchant.settings.timezone),
        expiry=expiry,
        notices=notices,
    )


async def queue_due_nightlies(
    *, uow_factory: UnitOfWorkFactory, clock: Clock, queue: JobQueue
) -> list[DueNightly]:
    """Queue the nightly of every merchant that is due (see ``nightly.nightly_date``) as a job
    of its own (``run_claimed_nightly``): one merchant's run neither waits for nor uses up the
    time of another's. Asking twice is harmless: the queue keeps one job per merchant and
    date, and the job's claim decides between runs."""
    async with uow_factory(read_only=True) as uow:
        schedules = await uow.merchants.nightly_schedules()
    now = clock.now()
    due = []
    for schedule in schedules:
        today = nightly_date(
            now, schedule.timezone, schedule.last_nightly_on, schedule.claimed_until
        )
        if today is not None:
            await queue.queue_nightly(schedule.merchant_id, local_date=today)
            due.append(DueNightly(schedule.merchant_id, today))
    return due


async def run_claimed_nightly(
    merchant_id: MerchantId,
    *,
    today: date,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    token: str,
    lease: timedelta,
    chunk_size: int = NIGHTLY_CHUNK,
) -> NightlyResult | None:
    """The merchant's nightly run for ``today`` under a claim held with ``token`` for
    ``lease`` (longer than a run may take); None when it cannot be claimed (done for today,
    or another run holds it). Of concurrent callers one runs it.

    A finished run records ``today`` as done. Any other exit gives the claim back, a
    cancellation too (the job's time limit, a worker shutting down), so the next tick runs
    the night again; both steps are safe to repeat. A process that dies gives nothing back:
    its claim runs out after ``lease``."""
    now = clock.now()
    async with uow_factory() as uow:
        claimed = await uow.merchants.claim_nightly(
            merchant_id, today=today, token=token, at=now, until=now + lease
        )
        await uow.commit()
    if not claimed:
        return None
    try:
        result = await run_nightly(
            merchant_id, uow_factory=uow_factory, clock=clock, chunk_size=chunk_size
        )
    except BaseException:  # failed or cancelled: give the claim back, and let it propagate
        async with uow_factory() as uow:
            await uow.merchants.release_nightly(merchant_id, token=token)
            await uow.commit()
        raise
    async with uow_factory() as uow:
        if not await uow.merchants.finish_nightly(merchant_id, today=today, token=token):
            logger.warning(
                "the nightly run of merchant %s outlasted its claim; the run that took it"
                " over records the date",
                merchant_id,
            )
        await uow.commit()
    return result
