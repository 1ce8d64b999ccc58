"""Customers.

Customer rows carry their ledger summary (balance, next expiration, last change), kept in the
same transaction as every ledger change, so a contact snapshot is one indexed read.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ellity.adapters.sql.tables.columns import BIG_ID, search_key, timestamp, timestamp_or_none


class CustomerRow(SQLModel, table=True):
    __tablename__ = "customers"
    __table_args__ = (
        sa.Index("ux_customers_merchant_email_key", "merchant_id", "email_key", unique=True),
        sa.Index(
            "ux_customers_merchant_shop_customer_id", "merchant_id", "shop_customer_id", unique=True
        ),
        sa.Index(
            "ux_customers_merchant_referral_code", "merchant_id", "referral_code", unique=True
        ),
        sa.Index("ix_customers_merchant_id_id", "merchant_id", "id"),
        # The searches read these in (key, id) order: with the id in the index, PostgreSQL
        # reads a page of a key many customers share without sorting them all first.
        sa.Index("ix_customers_merchant_first_name_key", "merchant_id", "first_name_key", "id"),
        sa.Index("ix_customers_merchant_last_name_key", "merchant_id", "last_name_key", "id"),
        sa.Index("ix_customers_merchant_email_domain_key", "merchant_id", "email_domain_key", "id"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    email: str | None = Field(default=None, max_length=254)
    # the search keys (``customer.email_key``, ``email_domain_key``, ``name_key``)
    email_key: str | None = Field(default=None, sa_type=search_key(254))
    email_domain_key: str | None = Field(default=None, sa_type=search_key(254))
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    first_name_key: str = Field(
        default="", sa_type=search_key(100), sa_column_kwargs={"server_default": ""}
    )
    last_name_key: str = Field(
        default="", sa_type=search_key(100), sa_column_kwargs={"server_default": ""}
    )
    shop_customer_id: str | None = Field(default=None, max_length=100)
    registered: bool = False
    pin: str | None = Field(default=None, max_length=6)
    referral_code: str = Field(max_length=8)
    referred_by_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=True),
    )
    created_at: datetime = timestamp()
    updated_at: datetime = timestamp()
    balance_cents: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
    next_expiry_on: date | None = None
    next_expiry_cents: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
    last_change_on: date | None = None
    last_change_cents: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, nullable=True)
    )
    # domain.model.consent: granted, refused or unknown; who set it last (api, staff,
    # ecomail) and when
    marketing_consent: str = Field(
        default="unknown", max_length=16, sa_column_kwargs={"server_default": "unknown"}
    )
    consent_source: str | None = Field(default=None, max_length=16)
    consent_changed_at: datetime | None = timestamp_or_none()


class ConsentChangeRow(SQLModel, table=True):
    """A customer's consent history (``domain.model.consent.ConsentChange``), one row per
    change, never updated: when consent was given or refused, and who said so."""

    __tablename__ = "consent_changes"
    __table_args__ = (sa.Index("ix_consent_changes_customer_id_id", "customer_id", "id"),)

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int = Field(
        sa_column=sa.Column(
            BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
        )
    )
    consent: str = Field(max_length=16)
    previous: str = Field(max_length=16)
    source: str = Field(max_length=16)
    at: datetime = timestamp()


customers = CustomerRow.__table__  # type: ignore[attr-defined]
consent_changes = ConsentChangeRow.__table__  # type: ignore[attr-defined]
