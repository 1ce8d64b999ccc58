"""The merchant's Ecomail integration in memory."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.integration import Backfill, EcomailIntegration
from ellity.ports.storage import EcomailRepository
from tests.fakes.storage.state import EcomailRecord, assign, round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


class InMemoryEcomailRepository(EcomailRepository):
    """Updates of a merchant without an integration change nothing, as an SQL ``UPDATE``."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def get(self, merchant_id: MerchantId) -> EcomailIntegration | None:
        await round_trip()
        row = self._uow.state.ecomail.get(merchant_id)
        if row is None:
            return None
        backfill = None
        if row.backfill_requested_at is not None:
            backfill = Backfill(
                requested_at=row.backfill_requested_at,
                after_id=row.backfill_after_id,
                marked=row.backfill_marked,
                finished_marking_at=row.backfill_finished_at,
            )
        return EcomailIntegration(
            merchant_id=row.merchant_id,
            key_hint=row.key_hint,
            list_id=row.list_id,
            list_name=row.list_name,
            active=row.active,
            activated_at=row.activated_at,
            backfill=backfill,
            last_success_at=row.last_success_at,
        )

    async def api_key(self, merchant_id: MerchantId) -> str | None:
        await round_trip()
        row = self._uow.state.ecomail.get(merchant_id)
        return None if row is None else row.api_key_encrypted

    async def save_key(
        self, merchant_id: MerchantId, *, encrypted: str, hint: str, at: datetime
    ) -> None:
        await round_trip()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        row = state.ecomail.get(merchant_id)
        if row is None:
            row = state.ecomail[merchant_id] = EcomailRecord(merchant_id, encrypted, hint, at)
        # activated_at and last_success_at stay, as the SQL upsert leaves them
        assign(
            row,
            api_key_encrypted=encrypted,
            key_hint=hint,
            list_id=None,
            list_name="",
            active=False,
            **_backfill_cleared(),
            updated_at=at,
        )

    async def activate(
        self, merchant_id: MerchantId, *, list_id: str, list_name: str, at: datetime
    ) -> None:
        await self._update(
            merchant_id,
            list_id=list_id,
            list_name=list_name[:200],
            active=True,
            activated_at=at,
            **_backfill_from_start(at),
        )
        self._uow.made_outbox_work = True

    async def deactivate(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await self._update(merchant_id, active=False, updated_at=at)

    async def request_backfill(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await self._update(merchant_id, **_backfill_from_start(at))
        self._uow.made_outbox_work = True

    async def advance_backfill(
        self,
        merchant_id: MerchantId,
        *,
        after_id: CustomerId,
        marked: int,
        finished_at: datetime | None,
    ) -> None:
        await self._update(
            merchant_id,
            backfill_after_id=after_id,
            backfill_marked=marked,
            backfill_finished_at=finished_at,
        )

    async def record_success(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await self._update(merchant_id, last_success_at=at)

    async def active_list(self, merchant_id: MerchantId) -> str | None:
        await round_trip()
        row = self._uow.state.ecomail.get(merchant_id)
        return row.list_id if row is not None and row.active else None

    async def backfilling(self) -> list[MerchantId]:
        await round_trip()
        return sorted(
            row.merchant_id
            for row in self._uow.state.ecomail.values()
            if row.active
            and row.backfill_requested_at is not None
            and row.backfill_finished_at is None
        )

    async def _update(self, merchant_id: MerchantId, **values: object) -> None:
        await round_trip()
        row = self._uow.state.ecomail.get(merchant_id)
        if row is not None:
            assign(row, **values)


def _backfill_cleared() -> dict[str, object]:
    return {
        "backfill_requested_at": None,
        "backfill_after_id": 0,
        "backfill_marked": 0,
        "backfill_finished_at": None,
    }


def _backfill_from_start(at: datetime) -> dict[str, object]:
    return {**_backfill_cleared(), "backfill_requested_at": at, "updated_at": at}
