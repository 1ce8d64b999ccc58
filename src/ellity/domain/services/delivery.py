"""Delivering the outbox: what the worker does with the items the use cases recorded.

A run claims a small batch in one short transaction, delivers each item outside any
transaction, and records each outcome in its own short transaction, so no database lock is
held while an SMTP server or Ecomail takes its time. Each delivery is bounded by
``delivery_timeout``; the worker renews its claim while it works (``work_loop``), and a worker
that dies leaves claims that run out within ``CLAIM_LEASE`` and are taken over.

Right before an item's call goes out (once Ellity's request budget lets it go), the worker
commits that the call begins (``OutboxRepository.mark_sending``); the outcome is recorded
right after the call. So an item is sent twice only when its worker died (or was cut off)
during that very call: the claim that takes it over sees it ``interrupted``, logs it and
counts it (``INTERRUPTED``). The email's ``Message-ID`` is the same both times, so mail
clients can recognise the repeat; Ecomail events carry no such key.

Each topic has one handler (``delivery_handlers.HANDLERS``); what it raises decides how the
item is settled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

from ellity.domain.model.outbox import OutboxItem, RetryPolicy, clip_error
from ellity.domain.model.system_email import MalformedPayload
from ellity.domain.services.delivery_handlers import (
    HANDLERS,
    Courier,
    GiveUp,
    NothingToSend,
    TryLater,
    WaitFor,
)
from ellity.domain.services.work_loop import (
    CLAIM_LEASE,
    RUNNING,
    Claimable,
    OneAtATime,
    Pace,
    Stopping,
    work_through,
)
from ellity.ports.clock import Clock
from ellity.ports.mailer import Mailer
from ellity.ports.marketing import MarketingPlatforms
from ellity.ports.operations import (
    DELIVERED,
    DELIVERIES,
    FAILED,
    INTERRUPTED,
    RETRIED,
    SKIPPED,
    WorkCounters,
)
from ellity.ports.queue import JobQueue
from ellity.ports.request_context import request_id_bound
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

logger = logging.getLogger(__name__)

BATCH_SIZE = 10
DELIVERY_TIMEOUT = 30.0  # seconds for one item: reading what to send and sending it
RETRY_POLICY = RetryPolicy()


async def deliver_pending(
    *,
    uow_factory: UnitOfWorkFactory,
    mailer: Mailer,
    secret_box: SecretBox,
    clock: Clock,
    worker_token: str,
    limit: int,
    platforms: MarketingPlatforms | None = None,
    batch_size: int = BATCH_SIZE,
    delivery_timeout: float = DELIVERY_TIMEOUT,
    policy: RetryPolicy = RETRY_POLICY,
    counters: WorkCounters | None = None,
    stopping: Stopping = RUNNING,
    lease: timedelta = CLAIM_LEASE,
) -> int:
    """Deliver up to ``limit`` due items, a batch at a time; returns how many were delivered.

    ``worker_token`` must be unique per worker process; each claim adds a counter to it.
    Items that fail are rescheduled by ``policy``, so a run ends when nothing is due.
    ``counters`` count each recorded outcome by topic (``DELIVERIES``); a wait is none.
    """
    courier = Courier(
        uow_factory=uow_factory, mailer=mailer, secret_box=secret_box, platforms=platforms
    )
    work = _Delivery(courier, clock, policy, counters)
    outbox = OneAtATime("", _outbox, work, delivery_timeout)
    pace = Pace(batch_size, lease, limit=limit)
    return await work_through(
        outbox,
        uow_factory=uow_factory,
        clock=clock,
        worker_token=worker_token,
        pace=pace,
        stopping=stopping,
    )


async def next_due(*, uow_factory: UnitOfWorkFactory) -> datetime | None:
    """When the next pending outbox item, Ecomail contact or newsletter notification becomes
    due (a retry, or a claim that runs out)."""
    async with uow_factory(read_only=True) as uow:
        dues = [
            await uow.outbox.next_due(),
            await uow.contacts.next_due(),
            await uow.newsletter.next_due(),
        ]
    return min((due for due in dues if due is not None), default=None)


async def schedule_next_delivery(
    *, uow_factory: UnitOfWorkFactory, queue: JobQueue, clock: Clock
) -> datetime | None:
    """Ask for a run when the earliest pending work becomes due (``next_due``), so it does not
    wait for the minute cron. At least a second from now, so a run never collapses into the
    one that asks for it. Returns the time asked for."""
    due = await next_due(uow_factory=uow_factory)
    if due is None:
        return None
    at = max(due, clock.now() + timedelta(seconds=1))
    await queue.nudge_delivery(at=at)
    return at


async def forget_settled(*, uow_factory: UnitOfWorkFactory, clock: Clock, keep: timedelta) -> int:
    """Delete delivered and skipped items older than ``keep``; failed ones stay."""
    async with uow_factory() as uow:
        count = await uow.outbox.purge_settled(before=clock.now() - keep)
        await uow.commit()
    return count


# -- one attempt and its outcome ----------------------------------------------------------


class _Kind(Enum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    RETRY = "retry"
    GIVE_UP = "give up"
    WAIT = "wait"


#: What each kind of outcome counts as (``DELIVERIES``); a wait counts as nothing.
_COUNTED = {
    _Kind.DELIVERED: DELIVERED,
    _Kind.SKIPPED: SKIPPED,
    _Kind.RETRY: RETRIED,
    _Kind.GIVE_UP: FAILED,
}


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: _Kind
    message: str = ""
    wait: float = 0.0


def _outbox(uow: UnitOfWork) -> Claimable[OutboxItem]:
    return uow.outbox


@dataclass(frozen=True, slots=True)
class _Delivery:
    """Delivering an item, and recording the outcome."""

    courier: Courier
    clock: Clock
    policy: RetryPolicy
    counters: WorkCounters | None = None

    async def attempt(self, item: OutboxItem, token: str) -> _Outcome:
        with request_id_bound(item.request_id):  # the lines of its delivery carry the id
            return await self._attempt(item, token)

    async def _attempt(self, item: OutboxItem, token: str) -> _Outcome:
        if item.interrupted:
            logger.warning(
                "outbox item %s (%s, merchant %s) may have been delivered already: the worker"
                " that was sending it stopped during the call; it is sent again",
                item.id,
                item.topic,
                item.merchant_id,
            )
            if self.counters is not None:
                self.counters.add(INTERRUPTED, kind=item.topic)
        if item.attempts > self.policy.max_attempts:  # the earlier claims all died unfinished
            return _Outcome(_Kind.GIVE_UP, f"Delivery was interrupted {item.attempts - 1} times.")
        handler = HANDLERS.get(item.topic)
        if handler is None:  # recorded by a newer version than this worker: wait for an upgrade
            return _Outcome(_Kind.RETRY, f"This worker cannot deliver '{item.topic}' items.")

        async def sending() -> None:
            async with self.courier.uow_factory() as uow:
                held = await uow.outbox.mark_sending(item.id, token=token, at=self.clock.now())
                await uow.commit()
            if not held:  # taken over (this worker was silent too long): not ours to send
                raise NothingToSend("Another worker took the item over.")

        try:
            await handler(replace(self.courier, before_send=sending), item)
        except NothingToSend as exc:
            return _Outcome(_Kind.SKIPPED, str(exc))
        except WaitFor as exc:
            return _Outcome(_Kind.WAIT, str(exc), wait=exc.seconds)
        except TryLater as exc:
            return _Outcome(_Kind.RETRY, str(exc))
        except (GiveUp, MalformedPayload) as exc:
            return _Outcome(_Kind.GIVE_UP, str(exc))
        return _Outcome(_Kind.DELIVERED)

    def timed_out(self, item: OutboxItem, seconds: float) -> _Outcome:
        return _Outcome(_Kind.RETRY, f"Delivery took longer than {seconds:g} seconds.")

    def broke(self, item: OutboxItem, error: Exception) -> _Outcome:
        with request_id_bound(item.request_id):
            logger.exception("outbox item %s (%s) failed unexpectedly", item.id, item.topic)
        return _Outcome(_Kind.RETRY, f"Unexpected error in Ellity ({type(error).__name__}).")

    async def settle(self, item: OutboxItem, token: str, outcome: _Outcome) -> bool:
        with request_id_bound(item.request_id):
            held = await _record(
                self.courier.uow_factory,
                item,
                token,
                outcome,
                clock=self.clock,
                policy=self.policy,
            )
        counted = _COUNTED.get(outcome.kind)
        if held and counted is not None and self.counters is not None:
            self.counters.add(DELIVERIES, kind=item.topic, outcome=counted)
        return held and outcome.kind is _Kind.DELIVERED


async def _record(
    uow_factory: UnitOfWorkFactory,
    item: OutboxItem,
    token: str,
    outcome: _Outcome,
    *,
    clock: Clock,
    policy: RetryPolicy,
) -> bool:
    """Record the outcome if our claim still holds the item; False when it was taken over."""
    message = clip_error(outcome.message)
    retry_at = None
    async with uow_factory() as uow:
        now = clock.now()
        if outcome.kind is _Kind.DELIVERED:
            held = await uow.outbox.mark_delivered(item.id, token=token, at=now)
        elif outcome.kind is _Kind.SKIPPED:
            held = await uow.outbox.mark_skipped(item.id, token=token, reason=message, at=now)
        elif outcome.kind is _Kind.WAIT:
            until = now + timedelta(seconds=outcome.wait)
            held = await uow.outbox.defer(item.id, token=token, until=until)
        else:
            if outcome.kind is _Kind.RETRY:
                retry_at = policy.next_attempt_at(item.attempts, item_id=item.id, now=now)
            held = await uow.outbox.mark_failed(
                item.id, token=token, error=message, retry_at=retry_at, at=now
            )
        await uow.commit()
    _log(item, outcome, retry_at, held=held)
    return held


def _log(item: OutboxItem, outcome: _Outcome, retry_at: datetime | None, *, held: bool) -> None:
    """Ids, topics and merchant-readable errors only: never a payload or an email's values."""
    what = f"outbox item {item.id} ({item.topic}, merchant {item.merchant_id})"
    if not held:
        logger.warning("%s: the claim was taken over before the outcome was recorded", what)
    elif outcome.kind is _Kind.DELIVERED:
        logger.info("%s delivered", what)
    elif outcome.kind is _Kind.SKIPPED:
        logger.info("%s skipped: %s", what, outcome.message)
    elif outcome.kind is _Kind.WAIT:
        logger.debug("%s waits: %s", what, outcome.message)
    elif retry_at is not None:
        logger.warning(
            "%s attempt %d failed, retry at %s: %s",
            what,
            item.attempts,
            retry_at.isoformat(timespec="seconds"),
            outcome.message,
        )
    else:
        logger.error("%s given up after %d attempts: %s", what, item.attempts, outcome.message)
