"""How the worker goes through a queue of claimable work (outbox items, newsletter
notifications, Ecomail contacts).

A run claims a batch in one short transaction under a token no other claim has, for a short
lease (``CLAIM_LEASE``), then handles the batch outside any transaction; the queue records
each outcome only while its claim still holds the work, so two workers never settle the same
thing. While it handles the batch the worker renews the lease (a few times per lease), so a
slow batch keeps its claim however long it takes, and the claims of a worker that died run
out within one lease of its last renewal and are taken over.

The run ends when nothing is due, when it has handled ``Pace.limit`` items or made
``Pace.claims`` claims, when the queue says to stop, or when the worker is stopping
(``Stopping``): it then claims nothing more, finishes the item in hand, and gives back the
rest of its claim at once (``ClaimKeeping.drop_claim``), as it does when the run is cancelled
or breaks, so another worker takes them over without waiting for the lease to run out.

Work handled an item at a time (``OneAtATime``) bounds each item by a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory
from ellity.ports.storage.claims import ClaimKeeping

logger = logging.getLogger(__name__)

MAX_CLAIM_TOKEN = 64
#: How long a claim holds its work without being renewed: a worker silent this long is dead.
CLAIM_LEASE = timedelta(seconds=30)
RENEWALS_PER_LEASE = 3  # a live worker renews its claim this often per lease

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
R = TypeVar("R")

_claims = itertools.count(1)


def claim_token(worker_token: str, tag: str) -> str:
    """A token for one claim: the worker's (unique per worker process, cut to fit), the
    queue's ``tag`` and a counter, at most ``MAX_CLAIM_TOKEN`` characters."""
    return f"{worker_token[: MAX_CLAIM_TOKEN - 12]}:{tag}{next(_claims)}"


class Stopping(Protocol):
    """Whether the worker is stopping (an ``asyncio.Event`` is one)."""

    def is_set(self) -> bool: ...


class _Running:
    def is_set(self) -> bool:
        return False


RUNNING: Stopping = _Running()  # a worker that is not stopping


@dataclass(frozen=True, slots=True)
class Pace:
    """How much one run takes on."""

    batch_size: int  # items per claim
    lease: timedelta  # how long a claim holds its items
    limit: int | None = None  # items per run; None: no limit
    claims: int | None = None  # claims per run; None: no limit

    def room(self, handled: int, claims: int) -> int:
        """How many items the next claim may take (0: the run is over)."""
        if self.claims is not None and claims >= self.claims:
            return 0
        if self.limit is None:
            return self.batch_size
        return max(0, min(self.batch_size, self.limit - handled))


@dataclass(frozen=True, slots=True)
class Handled:
    """What handling one claim came to."""

    done: int  # what counts toward the run's result
    stop: bool = False  # claim nothing more in this run


class WorkQueue(Protocol[T]):
    """One kind of claimable work."""

    @property
    def tag(self) -> str:
        """Marks the queue's claim tokens."""
        ...

    def claims(self, uow: UnitOfWork) -> ClaimKeeping:
        """Where this queue's claims are renewed and given back."""
        ...

    async def claim(
        self, uow: UnitOfWork, token: str, *, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[T]:
        """Claim up to ``limit`` due items for ``token`` until ``now + lease``."""
        ...

    async def handle(self, token: str, claimed: Sequence[T], stopping: Stopping) -> Handled:
        """Handle and settle what ``token`` claimed; once ``stopping`` is set, finish the item
        in hand and leave the others (they are given back)."""
        ...


class ItemWork(Protocol[T_contra, R]):
    """Work handled an item at a time: an attempt gives an outcome ``R``, which is settled."""

    async def attempt(self, item: T_contra, token: str) -> R:
        """The item's outcome; may raise (a timeout, a bug)."""
        ...

    def timed_out(self, item: T_contra, seconds: float) -> R:
        """The outcome of an attempt that took longer than ``seconds``."""
        ...

    def broke(self, item: T_contra, error: Exception) -> R:
        """The outcome of an attempt that raised ``error``; called while it is handled, so it
        can be logged with its traceback."""
        ...

    async def settle(self, item: T_contra, token: str, outcome: R) -> bool:
        """Record the outcome while ``token`` holds the item; whether it counts."""
        ...


async def work_through(
    queue: WorkQueue[T],
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    worker_token: str,
    pace: Pace,
    stopping: Stopping = RUNNING,
) -> int:
    """Claim and handle batches until the run is over; returns what the claims counted."""
    done = handled = claims = 0
    while not stopping.is_set() and (room := pace.room(handled, claims)):
        token = claim_token(worker_token, queue.tag)
        async with uow_factory() as uow:
            claimed = await queue.claim(uow, token, now=clock.now(), lease=pace.lease, limit=room)
            await uow.commit()
        claims += 1
        if not claimed:
            break
        async with _kept(queue, token, uow_factory=uow_factory, clock=clock, lease=pace.lease):
            result = await queue.handle(token, claimed, stopping)
            if stopping.is_set():
                await _give_back(queue, token, uow_factory=uow_factory)
        done += result.done
        handled += len(claimed)
        if result.stop:
            break
    return done


@asynccontextmanager
async def _kept(
    queue: WorkQueue[T],
    token: str,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    lease: timedelta,
) -> AsyncIterator[None]:
    """The claim ``token`` renewed while the block runs; what it still holds is given back
    when the block is cancelled or raises."""
    renewing = asyncio.create_task(
        _renew(queue, token, uow_factory=uow_factory, clock=clock, lease=lease)
    )
    try:
        yield
    except BaseException:
        await asyncio.shield(_give_back(queue, token, uow_factory=uow_factory))
        raise
    finally:
        renewing.cancel()
        with suppress(asyncio.CancelledError):
            await renewing


async def _renew(
    queue: WorkQueue[T],
    token: str,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    lease: timedelta,
) -> None:
    """Every ``lease / RENEWALS_PER_LEASE``, until cancelled. A renewal that fails (the
    database is away) is logged; the next may succeed before the lease runs out."""
    while True:
        await asyncio.sleep(lease.total_seconds() / RENEWALS_PER_LEASE)
        try:
            async with uow_factory() as uow:
                await queue.claims(uow).renew_claim(token=token, until=clock.now() + lease)
                await uow.commit()
        except Exception as exc:  # noqa: BLE001 - the claim may still be renewed in time
            logger.warning("could not renew the claim %s: %s", token, exc)


async def _give_back(queue: WorkQueue[T], token: str, *, uow_factory: UnitOfWorkFactory) -> None:
    try:
        async with uow_factory() as uow:
            given = await queue.claims(uow).drop_claim(token=token)
            await uow.commit()
    except Exception as exc:  # noqa: BLE001 - the claim runs out by itself within its lease
        logger.warning("could not give back the claim %s: %s", token, exc)
        return
    if given:
        logger.info("gave back %d unfinished items of the claim %s", given, token)


class Claimable(ClaimKeeping, Protocol[T_co]):
    """Where a queue's items are claimed from (a repository of the unit of work)."""

    async def claim(
        self, *, token: str, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[T_co]: ...


@dataclass(frozen=True, slots=True)
class OneAtATime(Generic[T, R]):
    """A ``WorkQueue`` whose claimed items are attempted and settled one at a time, each
    attempt bounded by ``seconds``; an item that breaks does not stop the others."""

    tag: str
    source: Callable[[UnitOfWork], Claimable[T]]
    work: ItemWork[T, R]
    seconds: float

    async def claim(
        self, uow: UnitOfWork, token: str, *, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[T]:
        return await self.source(uow).claim(token=token, now=now, lease=lease, limit=limit)

    def claims(self, uow: UnitOfWork) -> ClaimKeeping:
        return self.source(uow)

    async def handle(self, token: str, claimed: Sequence[T], stopping: Stopping) -> Handled:
        done = 0
        for item in claimed:
            if stopping.is_set():
                return Handled(done, stop=True)
            try:
                async with asyncio.timeout(self.seconds):
                    outcome = await self.work.attempt(item, token)
            except TimeoutError:
                outcome = self.work.timed_out(item, self.seconds)
            except Exception as error:  # noqa: BLE001 - broke() logs it; the others go on
                outcome = self.work.broke(item, error)
            if await self.work.settle(item, token, outcome):
                done += 1
        return Handled(done)
