"""The points ledger: lots, entries, and the pre-expiry notices sent."""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import BIG_ID, metadata, timestamp

_OPEN = sa.text("remaining_cents > 0")

#: Points earned together; ``remaining_cents`` falls as they are spent or expire.
point_lots = sa.Table(
    "point_lots",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("customer_id", sa.BigInteger(), sa.ForeignKey("customers.id"), nullable=False),
    timestamp("earned_at"),
    sa.Column("expires_on", sa.Date(), nullable=True),
    sa.Column("amount_cents", sa.BigInteger(), nullable=False),
    sa.Column("remaining_cents", sa.BigInteger(), nullable=False),
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

_WITH_REF = sa.text("order_ref IS NOT NULL")
_EXPIRY = sa.text("kind = 'expire'")

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("customer_id", sa.BigInteger(), sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("points_cents", sa.BigInteger(), nullable=False),
    sa.Column("balance_after_cents", sa.BigInteger(), nullable=False),
    timestamp("at"),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("order_ref", sa.String(100), nullable=True),
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

#: Points about to expire that a customer has been told about: once per customer and last
#: valid day, ever. The primary key (customer_id, expires_on) is the unique index that
#: decides between concurrent nightly runs.
expiry_notices = sa.Table(
    "expiry_notices",
    metadata,
    sa.Column(
        "customer_id",
        sa.BigInteger(),
        sa.ForeignKey("customers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("expires_on", sa.Date(), primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("points_cents", sa.BigInteger(), nullable=False),
    timestamp("created_at"),
)
