"""How the worker goes through a queue of claimable work (outbox items, newsletter
notifications, Ecomail contacts).

A run claims a batch in one short transaction under a token no other claim has, for a lease,
then handles the batch outside any transaction; the queue records each outcome only while its
claim still holds the work, so two workers never settle the same thing. A worker that dies
leaves claims that run out and are taken over. The run ends when nothing is due, when it has
handled ``Pace.limit`` items or made ``Pace.claims`` claims, or when the queue says to stop.

Work handled an item at a time (``OneAtATime``) bounds each item by a timeout, and the lease
covers the whole batch with one item's time to spare (``lease_for``), so a live worker never
outlives its claim.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

MAX_CLAIM_TOKEN = 64

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
R = TypeVar("R")

_claims = itertools.count(1)


def claim_token(worker_token: str, tag: str) -> str:
    """A token for one claim: the worker's (unique per worker process, cut to fit), the
    queue's ``tag`` and a counter, at most ``MAX_CLAIM_TOKEN`` characters."""
    return f"{worker_token[: MAX_CLAIM_TOKEN - 12]}:{tag}{next(_claims)}"


def lease_for(seconds_each: float, batch_size: int) -> timedelta:
    """A claim's lease when each item is bounded by ``seconds_each``: the whole batch and one
    item's time more, for the claim and the last outcome."""
    return timedelta(seconds=seconds_each * (batch_size + 1))


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

    async def claim(
        self, uow: UnitOfWork, token: str, *, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[T]:
        """Claim up to ``limit`` due items for ``token`` until ``now + lease``."""
        ...

    async def handle(self, token: str, claimed: Sequence[T]) -> Handled:
        """Handle and settle what ``token`` claimed."""
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
) -> int:
    """Claim and handle batches until the run is over; returns what the claims counted."""
    done = handled = claims = 0
    while room := pace.room(handled, claims):
        token = claim_token(worker_token, queue.tag)
        async with uow_factory() as uow:
            claimed = await queue.claim(uow, token, now=clock.now(), lease=pace.lease, limit=room)
            await uow.commit()
        claims += 1
        if not claimed:
            break
        result = await queue.handle(token, claimed)
        done += result.done
        handled += len(claimed)
        if result.stop:
            break
    return done


class Claimable(Protocol[T_co]):
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

    async def handle(self, token: str, claimed: Sequence[T]) -> Handled:
        done = 0
        for item in claimed:
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
