"""What the merchant sees of background delivery: what waits, what failed and why, retrying."""

from __future__ import annotations

from ellity.domain.model.ids import MerchantId
from ellity.domain.model.outbox import DeliveryHealth, FailedDelivery
from ellity.domain.services.common import load_merchant
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWork

MAX_FAILED_PAGE = 500


async def delivery_health(merchant_id: MerchantId, *, uow: UnitOfWork) -> DeliveryHealth:
    """Counts of pending and failed items, the oldest pending one, the last delivery."""
    async with uow:
        await load_merchant(uow, merchant_id)
        return await uow.views.delivery_health(merchant_id)


async def failed_deliveries(
    merchant_id: MerchantId, *, limit: int = 50, uow: UnitOfWork
) -> list[FailedDelivery]:
    """The merchant's given-up deliveries with their last error, newest first."""
    async with uow:
        await load_merchant(uow, merchant_id)
        return await uow.views.failed_deliveries(
            merchant_id, limit=max(1, min(limit, MAX_FAILED_PAGE))
        )


async def retry_failed(
    merchant_id: MerchantId, item_id: int | None = None, *, uow: UnitOfWork, clock: Clock
) -> int:
    """Deliver a failed item again (all of them with ``None``), with a fresh count of attempts.

    Returns how many were put back; another merchant's item is never touched (0).
    """
    async with uow:
        await load_merchant(uow, merchant_id)
        count = await uow.outbox.retry_failed(merchant_id, item_id, at=clock.now())
        await uow.commit()
    return count
