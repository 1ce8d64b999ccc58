"""A job queue that records what was asked of the worker."""

from __future__ import annotations

from datetime import date, datetime

from ellity.domain.model.ids import MerchantId
from ellity.ports.queue import JobQueue


class FakeJobQueue(JobQueue):
    """Records nudges: ``None`` for "now", else the time asked for; and the nightly runs
    queued, as ``(merchant id, local date)`` jobs: one per pair until ``take_nightlies``
    hands them out (to be run), as arq keeps one job per id while it waits or runs."""

    def __init__(self) -> None:
        self.nudges: list[datetime | None] = []
        self.nightlies: list[tuple[MerchantId, date]] = []
        self.reconciliations: list[MerchantId] = []

    async def nudge_delivery(self, *, at: datetime | None = None) -> None:
        self.nudges.append(at)

    async def queue_nightly(self, merchant_id: MerchantId, *, local_date: date) -> None:
        if (merchant_id, local_date) not in self.nightlies:
            self.nightlies.append((merchant_id, local_date))

    def take_nightlies(self) -> list[tuple[MerchantId, date]]:
        taken, self.nightlies = self.nightlies, []
        return taken

    async def queue_reconciliation(self, merchant_id: MerchantId) -> None:
        if merchant_id not in self.reconciliations:
            self.reconciliations.append(merchant_id)

    def take_reconciliations(self) -> list[MerchantId]:
        taken, self.reconciliations = self.reconciliations, []
        return taken
