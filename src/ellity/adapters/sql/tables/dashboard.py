"""What the nightly run keeps for the dashboard, so that its page reads a few rows instead of
every ledger entry of 90 days and every open lot of the next 90."""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import metadata, timestamp

#: A local day's totals (``activity.KeptDay``): the entries before ``up_to``.
kept_day_totals = sa.Table(
    "kept_day_totals",
    metadata,
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), primary_key=True),
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("time_zone", sa.String(64), nullable=False),
    timestamp("up_to"),
    sa.Column("issued_cents", sa.BigInteger(), nullable=False),
    sa.Column("spent_cents", sa.BigInteger(), nullable=False),
    sa.Column("expired_cents", sa.BigInteger(), nullable=False),
)

#: The expiry forecast (``activity.ExpiryForecast``); ``days`` is JSON:
#: ``[["2024-03-10", cents, customers], ...]``.
kept_expiry_forecasts = sa.Table(
    "kept_expiry_forecasts",
    metadata,
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), primary_key=True),
    sa.Column("first_day", sa.Date(), nullable=False),
    timestamp("counted_at"),
    sa.Column("days", sa.Text(), nullable=False),
)
