"""What the nightly run keeps for the dashboard, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from ellity.domain.model.activity import ExpiryForecast, KeptDay
from ellity.domain.model.ids import MerchantId
from ellity.ports.storage import DashboardRepository
from tests.fakes.storage.state import round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


class InMemoryDashboardRepository(DashboardRepository):
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def kept_days(
        self, merchant_id: MerchantId, *, first_day: date, last_day: date
    ) -> list[KeptDay]:
        await round_trip()
        kept = self._uow.state.kept_days
        return [
            kept[key]
            for key in sorted(kept)
            if key[0] == merchant_id and first_day <= key[1] <= last_day
        ]

    async def keep_days(self, merchant_id: MerchantId, days: Sequence[KeptDay]) -> None:
        await round_trip()
        for kept in days:
            self._uow.state.kept_days[merchant_id, kept.totals.day] = kept

    async def kept_forecast(self, merchant_id: MerchantId) -> ExpiryForecast | None:
        await round_trip()
        return self._uow.state.forecasts.get(merchant_id)

    async def keep_forecast(self, merchant_id: MerchantId, forecast: ExpiryForecast) -> None:
        await round_trip()
        self._uow.state.forecasts[merchant_id] = forecast
