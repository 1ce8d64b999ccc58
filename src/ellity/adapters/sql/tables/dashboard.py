"""What the nightly run keeps for the dashboard, so that its page reads a few rows instead of
every ledger entry of 90 days and every open lot of the next 90."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ellity.adapters.sql.tables.columns import timestamp


class KeptDayRow(SQLModel, table=True):
    """A local day's totals (``activity.KeptDay``): the entries before ``up_to``."""

    __tablename__ = "kept_day_totals"

    merchant_id: int = Field(foreign_key="merchants.id", primary_key=True)
    day: date = Field(primary_key=True)
    time_zone: str = Field(max_length=64)
    up_to: datetime = timestamp()
    issued_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    spent_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    expired_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class KeptForecastRow(SQLModel, table=True):
    """The expiry forecast (``activity.ExpiryForecast``); ``days`` is JSON:
    ``[["2024-03-10", cents, customers], ...]``."""

    __tablename__ = "kept_expiry_forecasts"

    merchant_id: int = Field(foreign_key="merchants.id", primary_key=True)
    first_day: date
    counted_at: datetime = timestamp()
    days: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


kept_day_totals = KeptDayRow.__table__  # type: ignore[attr-defined]
kept_expiry_forecasts = KeptForecastRow.__table__  # type: ignore[attr-defined]
