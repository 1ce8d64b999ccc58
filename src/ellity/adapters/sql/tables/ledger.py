"""The points ledger: lots, entries, and the pre-expiry notices sent."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ellity.adapters.sql.tables.columns import BIG_ID, timestamp

_OPEN = sa.text("remaining_cents > 0")


class PointLotRow(SQLModel, table=True):
    """Points earned together; ``remaining_cents`` falls as they are spent or expire."""

    __tablename__ = "point_lots"
    __table_args__ = (
        sa.Index(
            "ix_point_lots_open_by_customer",
            "customer_id",
            "expires_on",
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        ),
        # Also covers the dashboard's upcoming expiries: they read only the index.
        sa.Index(
            "ix_point_lots_open_by_merchant_expiry_holder",
            "merchant_id",
            "expires_on",
            "customer_id",
            "remaining_cents",
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        ),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=False)
    )
    earned_at: datetime = timestamp()
    expires_on: date | None = None
    amount_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    remaining_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


_WITH_REF = sa.text("order_ref IS NOT NULL")
_EXPIRY = sa.text("kind = 'expire'")


class LedgerEntryRow(SQLModel, table=True):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        sa.Index(
            "ux_ledger_entries_merchant_kind_order_ref",
            "merchant_id",
            "kind",
            "order_ref",
            unique=True,
            sqlite_where=_WITH_REF,
            postgresql_where=_WITH_REF,
        ),
        sa.Index("ix_ledger_entries_customer_id_id", "customer_id", "id"),
        # The nightly expiry finds each customer's entry of its run (and its points) here
        # alone, one probe per customer, instead of reading every entry of the customer.
        sa.Index(
            "ix_ledger_entries_expiry_customer_at_points",
            "customer_id",
            "at",
            "points_cents",
            sqlite_where=_EXPIRY,
            postgresql_where=_EXPIRY,
        ),
        # Covers the dashboard's daily totals: they read only the index.
        sa.Index(
            "ix_ledger_entries_merchant_at_kind_points", "merchant_id", "at", "kind", "points_cents"
        ),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=False)
    )
    kind: str = Field(max_length=32)
    points_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    balance_after_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    at: datetime = timestamp()
    note: str | None = Field(default=None, max_length=500)
    order_ref: str | None = Field(default=None, max_length=100)


class ExpiryNoticeRow(SQLModel, table=True):
    """Points about to expire that a customer has been told about: once per customer and
    last valid day, ever (the unique index decides between concurrent nightly runs)."""

    __tablename__ = "expiry_notices"

    # the primary key (customer_id, expires_on) is the unique index that decides
    customer_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
        )
    )
    expires_on: date = Field(primary_key=True)
    merchant_id: int = Field(foreign_key="merchants.id")
    points_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_at: datetime = timestamp()


point_lots = PointLotRow.__table__  # type: ignore[attr-defined]
ledger_entries = LedgerEntryRow.__table__  # type: ignore[attr-defined]
expiry_notices = ExpiryNoticeRow.__table__  # type: ignore[attr-defined]
