"""The backfill of a merchant's Ecomail contacts: every customer with an email is marked
pending for the contact sync, a chunk per transaction. Each chunk moves the backfill's cursor
in the same transaction, so marking resumes where it stopped after a crash."""

from __future__ import annotations

from ellity.domain.model.ids import MerchantId
from ellity.domain.services.common import retried_on_conflict
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWorkFactory

MARK_CHUNK = 20_000


async def mark_backfills(*, uow_factory: UnitOfWorkFactory, clock: Clock) -> int:
    """Mark the customers of every backfill in progress, a chunk per transaction; returns how
    many were marked. Each chunk moves the cursor in the same transaction."""
    async with uow_factory(read_only=True) as uow:
        merchant_ids = await uow.ecomail.backfilling()
    total = 0
    for merchant_id in merchant_ids:
        while True:
            count, more = await _mark_backfill_chunk(
                merchant_id, uow_factory=uow_factory, clock=clock
            )
            total += count
            if not more:
                break
    return total


@retried_on_conflict
async def _mark_backfill_chunk(
    merchant_id: MerchantId, *, uow_factory: UnitOfWorkFactory, clock: Clock
) -> tuple[int, bool]:
    """One chunk of the merchant's backfill and its cursor: how many it marked, and whether
    more remain."""
    async with uow_factory() as uow:
        integration = await uow.ecomail.get(merchant_id)
        backfill = None if integration is None else integration.backfill
        if integration is None or not integration.active or backfill is None:
            return 0, False
        if not backfill.marking:
            return 0, False
        now = clock.now()
        count, last = await uow.contacts.mark_all(
            merchant_id, after_id=backfill.after_id, limit=MARK_CHUNK, at=now
        )
        await uow.ecomail.advance_backfill(
            merchant_id,
            after_id=backfill.after_id if last is None else last,
            marked=backfill.marked + count,
            finished_at=now if last is None else None,
        )
        await uow.commit()
    return count, last is not None
