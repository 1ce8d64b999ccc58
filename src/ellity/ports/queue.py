"""Asking the background worker to do something soon."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class JobQueue(Protocol):
    async def nudge_delivery(self, *, at: datetime | None = None) -> None:
        """Ask a worker to deliver the outbox now, or at ``at``.

        Best effort and cheap: many nudges close together become one job, and a nudge that
        cannot be queued (the queue is down) is logged, not raised. Nothing depends on it for
        correctness: the worker also delivers every minute.
        """
        ...
