"""What the nightly run keeps for the dashboard (``activity.KeptDay``, ``ExpiryForecast``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from ellity.domain.model.activity import ExpiryForecast, KeptDay
from ellity.domain.model.ids import MerchantId


class DashboardRepository(Protocol):
    async def kept_days(
        self, merchant_id: MerchantId, *, first_day: date, last_day: date
    ) -> list[KeptDay]:
        """The kept days from ``first_day`` to ``last_day``, oldest first."""
        ...

    async def keep_days(self, merchant_id: MerchantId, days: Sequence[KeptDay]) -> None:
        """Keep these days, in place of what was kept for the same dates."""
        ...

    async def kept_forecast(self, merchant_id: MerchantId) -> ExpiryForecast | None: ...

    async def keep_forecast(self, merchant_id: MerchantId, forecast: ExpiryForecast) -> None:
        """Keep this forecast in place of the one kept before."""
        ...
