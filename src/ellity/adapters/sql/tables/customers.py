"""Customers.

Customer rows carry their ledger summary (balance, next expiration, last change), kept in the
same transaction as every ledger change, so a contact snapshot is one indexed read.
"""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import (
    BIG_ID,
    metadata,
    search_key,
    timestamp,
    timestamp_or_none,
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=True),
    # the search keys (``customer.email_key``, ``email_domain_key``, ``name_key``)
    sa.Column("email_key", search_key(254), nullable=True),
    sa.Column("email_domain_key", search_key(254), nullable=True),
    sa.Column("first_name", sa.String(100), nullable=False, default=""),
    sa.Column("last_name", sa.String(100), nullable=False, default=""),
    sa.Column("first_name_key", search_key(100), nullable=False, default="", server_default=""),
    sa.Column("last_name_key", search_key(100), nullable=False, default="", server_default=""),
    sa.Column("shop_customer_id", sa.String(100), nullable=True),
    sa.Column("registered", sa.Boolean(), nullable=False, default=False),
    sa.Column("pin", sa.String(6), nullable=True),
    sa.Column("referral_code", sa.String(8), nullable=False),
    sa.Column("referred_by_id", sa.BigInteger(), sa.ForeignKey("customers.id"), nullable=True),
    timestamp("created_at"),
    timestamp("updated_at"),
    sa.Column("balance_cents", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("next_expiry_on", sa.Date(), nullable=True),
    sa.Column("next_expiry_cents", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("last_change_on", sa.Date(), nullable=True),
    sa.Column("last_change_cents", sa.BigInteger(), nullable=True),
    # domain.model.consent: granted, refused or unknown; who set it last (api, staff,
    # ecomail) and when
    sa.Column(
        "marketing_consent",
        sa.String(16),
        nullable=False,
        default="unknown",
        server_default="unknown",
    ),
    sa.Column("consent_source", sa.String(16), nullable=True),
    timestamp_or_none("consent_changed_at"),
    sa.Index("ux_customers_merchant_email_key", "merchant_id", "email_key", unique=True),
    sa.Index(
        "ux_customers_merchant_shop_customer_id", "merchant_id", "shop_customer_id", unique=True
    ),
    sa.Index("ux_customers_merchant_referral_code", "merchant_id", "referral_code", unique=True),
    sa.Index("ix_customers_merchant_id_id", "merchant_id", "id"),
    # The searches read these in (key, id) order: with the id in the index, PostgreSQL
    # reads a page of a key many customers share without sorting them all first.
    sa.Index("ix_customers_merchant_first_name_key", "merchant_id", "first_name_key", "id"),
    sa.Index("ix_customers_merchant_last_name_key", "merchant_id", "last_name_key", "id"),
    sa.Index("ix_customers_merchant_email_domain_key", "merchant_id", "email_domain_key", "id"),
)

#: A customer's consent history (``domain.model.consent.ConsentChange``), one row per change,
#: never updated: when consent was given or refused, and who said so.
consent_changes = sa.Table(
    "consent_changes",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column(
        "customer_id", BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("consent", sa.String(16), nullable=False),
    sa.Column("previous", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    timestamp("at"),
    sa.Index("ix_consent_changes_customer_id_id", "customer_id", "id"),
)
