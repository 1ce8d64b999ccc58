"""The background worker (arq): thin jobs around the delivery use cases.

- ``ellity worker`` runs ``WorkerSettings`` against ``REDIS_URL``; run as many as you like.
- ``ellity serve`` without ``REDIS_URL`` runs the same worker inside the web process, against
  an embedded Redis (``running_in_process``).
- ``ellity worker --burst`` delivers everything that is due, then exits; it needs no Redis.

The nightly expiry and pre-expiry notices: a cron every 15 minutes queues, for each merchant
whose run is due (after 02:00 in its own time zone, not yet done for its local date), a job of
its own with its own time limit. The job claims the night for a lease longer than that limit,
so it runs once a day however many workers there are; a job that fails or is cancelled (its
time limit, a worker shutting down) gives the claim back, the claim of a killed worker runs
out, and a night missed while no worker ran is run at the next tick.

Work arrives three ways: a nudge after each commit that records outbox items (the unit of
work calls ``JobQueue.nudge_delivery``), a follow-up each run asks for when the next retry is
due, and a cron every minute (and at start-up) as the safety net. Every run is safe on any
number of workers at once: the outbox claims are exclusive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from datetime import UTC, date, timedelta
from typing import Any, ClassVar, cast

from arq import cron, func
from arq.typing import WorkerSettingsType
from arq.worker import Worker, create_worker
from redis.exceptions import RedisError

from ellity.adapters.arq_queue import DELIVER_JOB, NIGHTLY_JOB, RECONCILE_JOB, redis_settings
from ellity.bootstrap import build_deps
from ellity.deps import Deps, DepsProvider
from ellity.domain.model.ids import MerchantId
from ellity.domain.services import (
    contact_sync,
    delivery,
    newsletter_processing,
    nightly,
    reconciliation,
)
from ellity.domain.services.work_loop import RUNNING, Stopping
from ellity.logs import configure_logging
from ellity.ports.operations import (
    HEARTBEAT_EVERY,
    NIGHTLY_LAST_FINISHED,
    NIGHTLY_RUNS,
    NIGHTLY_SECONDS,
    OperationsUnavailable,
    WorkerHeartbeats,
)
from ellity.settings import DEFAULT_QUEUE_NAME, Settings, load_settings

logger = logging.getLogger(__name__)

DELIVERY_LIMIT = 200  # items per job; a longer backlog continues in the follow-up job
KEEP_SETTLED = timedelta(days=30)
NIGHTLY_MINUTES = {0, 15, 30, 45}
NIGHTLY_TIMEOUT = timedelta(minutes=30)  # one merchant's run; 1 000 000 customers take < 60 s
# a night's claim outlasts its job, and arq's hold on a killed job's id (its timeout + 10 s)
NIGHTLY_LEASE = 2 * NIGHTLY_TIMEOUT
KEEP_NOTIFICATIONS = timedelta(days=90)  # the integration page's activity log reads them
#: One job's share of a reconciliation run: a run of 1 000 000 members takes minutes; a longer
#: one is given back when the job ends and goes on in the next (the minute tick queues it).
RECONCILE_TIMEOUT = timedelta(hours=1)


@asynccontextmanager
async def beating(
    heartbeats: WorkerHeartbeats, worker: str, *, every: timedelta = HEARTBEAT_EVERY
) -> AsyncIterator[None]:
    """The worker's heartbeat while the block runs: one at once, then every ``every``;
    forgotten when the block ends (a graceful stop), so ``/ready`` sees the worker gone.
    A beat that Redis does not take is logged and tried again at the next one."""

    async def beat() -> None:
        while True:
            try:
                await heartbeats.beat(worker)
            except OperationsUnavailable as exc:
                logger.warning("the worker's heartbeat was not recorded: %s", exc)
            await asyncio.sleep(every.total_seconds())

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await heartbeats.forget(worker)


def new_worker_token() -> str:
    """Unique per process: claims made by this worker carry it."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(4)}"


async def deliver_once(
    deps: Deps, worker_token: str, *, limit: int, stopping: Stopping = RUNNING
) -> int:
    """Write pending Ecomail contacts first, then process the newsletter webhook's
    notifications (an echo of Ellity's own add is recognised once the add is recorded), then
    deliver the outbox (emails, Ecomail events: an event follows its contact's fields);
    returns how many were written, processed and delivered. Once ``stopping`` is set, each
    finishes what it has in hand and gives the rest back."""
    written = await contact_sync.sync_contacts(
        uow_factory=deps.uow,
        platforms=deps.marketing,
        secret_box=deps.secret_box,
        clock=deps.clock,
        worker_token=worker_token,
        counters=deps.counters,
        stopping=stopping,
    )
    written += await newsletter_processing.process_notifications(
        uow_factory=deps.uow,
        platforms=deps.marketing,
        secret_box=deps.secret_box,
        clock=deps.clock,
        worker_token=worker_token,
        limit=limit,
        counters=deps.counters,
        stopping=stopping,
    )
    delivered = await delivery.deliver_pending(
        uow_factory=deps.uow,
        mailer=deps.mailer,
        secret_box=deps.secret_box,
        clock=deps.clock,
        worker_token=worker_token,
        limit=limit,
        delivery_timeout=deps.settings.delivery_timeout,
        platforms=deps.marketing,
        counters=deps.counters,
        stopping=stopping,
    )
    return written + delivered


async def deliver_outbox(ctx: dict[str, Any]) -> int:
    """A delivery run. When the worker is stopping, what it gave back is due at once, so the
    follow-up it asks for wakes another worker (this one picks no more jobs)."""
    deps: Deps = ctx["deps"]
    stopping: Stopping = ctx.get("stopping", RUNNING)
    done = await deliver_once(deps, ctx["worker_token"], limit=DELIVERY_LIMIT, stopping=stopping)
    await delivery.schedule_next_delivery(uow_factory=deps.uow, queue=deps.queue, clock=deps.clock)
    return done


async def forget_settled_deliveries(ctx: dict[str, Any]) -> int:
    """Delivered outbox items after 30 days, processed newsletter notifications and the
    reconciliation's repairs after 90."""
    deps: Deps = ctx["deps"]
    forgotten = await delivery.forget_settled(
        uow_factory=deps.uow, clock=deps.clock, keep=KEEP_SETTLED
    )
    forgotten += await newsletter_processing.forget_processed(
        uow_factory=deps.uow, clock=deps.clock, keep=KEEP_NOTIFICATIONS
    )
    return forgotten + await reconciliation.forget_repairs(
        uow_factory=deps.uow, clock=deps.clock, keep=KEEP_NOTIFICATIONS
    )


async def run_nightlies(ctx: dict[str, Any]) -> int:
    """The cron: queue the nightly of every merchant whose local night is due, a job each."""
    deps: Deps = ctx["deps"]
    due = await nightly.queue_due_nightlies(
        uow_factory=deps.uow, clock=deps.clock, queue=deps.queue
    )
    return len(due)


async def run_nightly(ctx: dict[str, Any], merchant_id: int, local_date: date) -> bool:
    """One merchant's nightly run for its local date, under the night's claim; False when
    there was nothing to claim (done already, or another worker runs it)."""
    deps: Deps = ctx["deps"]
    started = time.monotonic()
    try:
        result = await nightly.run_claimed_nightly(
            MerchantId(merchant_id),
            today=local_date,
            uow_factory=deps.uow,
            clock=deps.clock,
            token=ctx["worker_token"],
            lease=NIGHTLY_LEASE,
        )
    except BaseException:  # a failure, or cut off by its time limit or a shutdown
        deps.counters.add(NIGHTLY_RUNS, outcome="failed")
        raise
    if result is None:
        return False
    deps.counters.add(NIGHTLY_RUNS, outcome="finished")
    deps.counters.add(NIGHTLY_SECONDS, time.monotonic() - started)
    deps.counters.set(NIGHTLY_LAST_FINISHED, deps.clock.now().timestamp())
    logger.info(
        "nightly run of merchant %s for %s: %d customers' points expired, %d new"
        " pre-expiry notices",
        result.merchant_id,
        result.local_date.isoformat(),
        result.expiry.customers,
        result.notices.notices,
    )
    return True


async def reconcile_due(ctx: dict[str, Any]) -> int:
    """The cron: request the reconciliations the merchants' schedules ask for, and queue a job
    for every run no worker holds."""
    deps: Deps = ctx["deps"]
    queued = await reconciliation.queue_due_runs(
        uow_factory=deps.uow, clock=deps.clock, queue=deps.queue
    )
    return len(queued)


async def run_reconciliation(ctx: dict[str, Any], merchant_id: int) -> bool:
    """Work on the merchant's reconciliation run under its claim; False when another worker
    holds it (or there is none). When the job is cut off, the claim runs out and the run is
    taken over from its last recorded page."""
    deps: Deps = ctx["deps"]
    run = await reconciliation.run_reconciliation(
        MerchantId(merchant_id),
        uow_factory=deps.uow,
        platforms=deps.marketing,
        secret_box=deps.secret_box,
        clock=deps.clock,
        worker_token=ctx["worker_token"],
        share=deps.settings.reconcile_share,
        stopping=ctx.get("stopping", RUNNING),
    )
    return run is not None


async def startup(ctx: dict[str, Any]) -> None:
    """Build the adapters once per worker process, from the settings ``ellity worker`` read."""
    stack = AsyncExitStack()
    settings: Settings = ctx.get("settings") or load_settings()
    ctx["deps"] = deps = await stack.enter_async_context(build_deps(settings))
    ctx["exit_stack"] = stack
    ctx["worker_token"] = token = new_worker_token()
    await stack.enter_async_context(beating(deps.heartbeats, token))


async def shutdown(ctx: dict[str, Any]) -> None:
    stack: AsyncExitStack | None = ctx.get("exit_stack")
    if stack is not None:
        await stack.aclose()


class WorkerSettings:
    """arq reads these from the class itself (inherited attributes are ignored)."""

    functions: ClassVar = [
        func(deliver_outbox, name=DELIVER_JOB, keep_result=0, max_tries=1),
        # a job per merchant and night, each with its own time limit; no result is kept, so
        # the next tick can queue a night again whose job failed or was cut off
        func(run_nightly, name=NIGHTLY_JOB, timeout=NIGHTLY_TIMEOUT, keep_result=0, max_tries=1),
        func(
            run_reconciliation,
            name=RECONCILE_JOB,
            timeout=RECONCILE_TIMEOUT,
            keep_result=0,
            max_tries=1,
        ),
    ]
    cron_jobs: ClassVar = [
        cron(deliver_outbox, name="cron:deliver_outbox", second=0, run_at_startup=True),
        cron(forget_settled_deliveries, hour=3, minute=17, second=0),
        # every merchant's night starts at 02:00 in its own time zone: look every 15 minutes,
        # and queue each due merchant's run as a job of its own
        cron(run_nightlies, name="cron:nightly", minute=NIGHTLY_MINUTES, second=0),
        # scheduled reconciliations, and runs whose worker died (their claim ran out)
        cron(reconcile_due, name="cron:reconcile", second=30, run_at_startup=True),
    ]
    on_startup = startup
    on_shutdown = shutdown
    queue_name = DEFAULT_QUEUE_NAME
    keep_result = 0
    max_jobs = 4  # concurrent runs per process; scale out with more processes
    job_timeout = 900
    max_tries = 1
    timezone = UTC
    health_check_interval = 60


_SETTINGS = cast(WorkerSettingsType, WorkerSettings)  # arq's Protocol lists only some attributes


def stop_grace(settings: Settings) -> float:
    """How long a stopping worker lets its jobs finish the item in hand (one delivery's time
    and some room) before it cancels them."""
    return settings.delivery_timeout + 10.0


async def _jobs_finished(worker: Worker, *, within: float) -> None:
    """Wait until the jobs the worker runs are done, at most ``within`` seconds."""
    running = [task for task in worker.tasks.values() if not task.done()]
    if running:
        await asyncio.wait(running, timeout=within)


@asynccontextmanager
async def running_in_process(deps: Deps) -> AsyncIterator[None]:
    """The worker as a task of the current process (``ellity serve`` without ``REDIS_URL``).
    When the process stops, the worker picks no more jobs, its runs finish the item in hand
    and give the rest back (due at once for the next start), then it closes."""
    if not deps.settings.redis_url:
        raise ValueError("the in-process worker needs the (embedded) Redis URL")
    token = new_worker_token()
    stopping = asyncio.Event()
    worker = create_worker(
        _SETTINGS,
        redis_settings=redis_settings(deps.settings.redis_url),
        queue_name=deps.settings.queue_name,
        handle_signals=False,
        on_startup=None,
        on_shutdown=None,
        ctx={"deps": deps, "worker_token": token, "stopping": stopping},
    )
    task = asyncio.create_task(worker.async_run())
    try:
        async with beating(deps.heartbeats, token):
            yield
    finally:
        stopping.set()
        worker.allow_pick_jobs = False
        await _jobs_finished(worker, within=stop_grace(deps.settings))
        with suppress(asyncio.CancelledError):
            await worker.close()
        with suppress(asyncio.CancelledError):
            await task


def with_in_process_worker(settings: Settings) -> DepsProvider:
    """The ``Deps`` of a web process that also runs the worker, for its whole lifespan."""

    @asynccontextmanager
    async def provide() -> AsyncIterator[Deps]:
        async with build_deps(settings) as deps, running_in_process(deps):
            yield deps

    return provide


BURST_FOLLOW_UP = timedelta(seconds=5)  # work due this soon (an event after its contact) waits
BURST_IDLE_ROUNDS = 5  # ... but not for ever: then what is left waits for a worker


async def _burst(settings: Settings) -> int:
    token = new_worker_token()
    total = idle = 0
    async with build_deps(settings) as deps:
        while True:
            done = await deliver_once(deps, token, limit=sys.maxsize)
            total += done
            idle = 0 if done else idle + 1
            if done:
                continue
            if idle > BURST_IDLE_ROUNDS:
                return total
            due = await delivery.next_due(uow_factory=deps.uow)
            now = deps.clock.now()
            if due is None or due > now + BURST_FOLLOW_UP:
                return total
            await asyncio.sleep(max(0.0, (due - now).total_seconds()) + 0.05)


def _stop(worker: Worker, stopping: asyncio.Event, signum: signal.Signals) -> None:
    """SIGTERM or SIGINT: pick no more jobs; the runs finish the item in hand, give the rest
    back and ask for a run (another worker's) at once; the worker exits when they are done,
    or cancels them after ``stop_grace``. A second signal cancels them now."""
    if stopping.is_set():
        worker.handle_sig(signum)
        return
    stopping.set()
    worker.handle_sig_wait_for_completion(signum)


def run(settings: Settings, *, burst: bool) -> int:
    """``ellity worker [--burst]``; returns the exit code."""
    configure_logging(settings.log_format, level=settings.log_level)
    if burst:
        delivered = asyncio.run(_burst(settings))
        logger.info("burst done: %d delivered, nothing more is due now", delivered)
        return 0
    if not settings.redis_url:
        print(
            "ellity: REDIS_URL is not set. `ellity serve` runs the worker inside the web"
            " process; set REDIS_URL to run workers separately, or use --burst.",
            file=sys.stderr,
        )
        return 2
    asyncio.set_event_loop(asyncio.new_event_loop())
    stopping = asyncio.Event()
    worker = create_worker(
        _SETTINGS,
        redis_settings=redis_settings(settings.redis_url),
        queue_name=settings.queue_name,
        ctx={"settings": settings, "stopping": stopping},
        job_completion_wait=int(stop_grace(settings)),
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        worker.loop.add_signal_handler(signum, _stop, worker, stopping, signum)
    try:
        worker.run()
    except (RedisError, OSError) as exc:  # arq has retried for a few seconds already
        print(f"ellity: the worker cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    return 0
