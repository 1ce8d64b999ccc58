"""Asking the background worker to do something soon."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from ellity.domain.model.ids import MerchantId


class JobQueue(Protocol):
    async def nudge_delivery(self, *, at: datetime | None = None) -> None:
        """Ask a worker to deliver the outbox now, or at ``at``.

        Best effort and cheap: many nudges close together become one job, and a nudge that
        cannot be queued (the queue is down) is logged, not raised. Nothing depends on it for
        correctness: the worker also delivers every minute.
        """
        ...

    async def queue_nightly(self, merchant_id: MerchantId, *, local_date: date) -> None:
        """Ask a worker to run the merchant's nightly for ``local_date`` as a job of its own
        (with its own time limit, so one merchant's long run cannot use up another's).

        Asking again while that job waits or runs queues nothing more. Best effort: a job
        that cannot be queued is logged, not raised; the next tick asks again.
        """
        ...

    async def queue_reconciliation(self, merchant_id: MerchantId) -> None:
        """Ask a worker to go on with the merchant's unfinished reconciliation run, as a job
        of its own. Asking again while that job waits or runs queues nothing more. Best
        effort: a job that cannot be queued is logged, not raised; the worker's minute tick
        looks for runs that no worker holds."""
        ...
