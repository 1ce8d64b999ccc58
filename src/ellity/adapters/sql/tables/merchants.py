"""Merchants (with their settings and nightly claim), their staff and their API tokens."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ellity.adapters.sql.tables.columns import UtcDateTime, timestamp, timestamp_or_none


class MerchantRow(SQLModel, table=True):
    __tablename__ = "merchants"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=63, unique=True)
    name: str = Field(max_length=100)
    shop_url: str = Field(max_length=500)
    referral_link_template: str = Field(max_length=500)
    referral_bonus_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    validity_months: int
    locale: str = Field(max_length=2)
    timezone: str = Field(max_length=64)
    send_system_emails: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    smtp_host: str = Field(default="", max_length=253, sa_column_kwargs={"server_default": ""})
    smtp_port: int = Field(default=587, sa_column_kwargs={"server_default": "587"})
    smtp_username: str = Field(default="", max_length=254, sa_column_kwargs={"server_default": ""})
    smtp_password_encrypted: str | None = Field(default=None, max_length=1000)
    smtp_sender: str = Field(default="", max_length=254, sa_column_kwargs={"server_default": ""})
    smtp_security: str = Field(
        default="starttls", max_length=16, sa_column_kwargs={"server_default": "starttls"}
    )
    newsletter_reward_cents: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
    newsletter_take_back: bool = Field(
        default=False, sa_column_kwargs={"server_default": sa.false()}
    )
    pre_expiry_notify: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    pre_expiry_days: int = Field(default=14, sa_column_kwargs={"server_default": "14"})
    # whom the contact sync adds to the Ecomail list (domain.model.consent.EcomailAdd)
    ecomail_add: str = Field(
        default="consented", max_length=16, sa_column_kwargs={"server_default": "consented"}
    )
    # the merchant's local date of the last nightly run that finished; a run in progress
    # holds a claim (token, lease) that it drops when it ends, or that runs out if it died
    last_nightly_on: date | None = None
    nightly_claim_token: str | None = Field(default=None, max_length=64)
    nightly_claimed_until: datetime | None = timestamp_or_none()
    # when a test email last went out through the SMTP account (the first-run checklist)
    test_email_sent_at: datetime | None = timestamp_or_none()
    created_at: datetime = timestamp()


class StaffUserRow(SQLModel, table=True):
    __tablename__ = "staff_users"

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchants.id", index=True)
    email: str = Field(max_length=254)
    email_key: str = Field(max_length=254, unique=True)
    password_hash: str = Field(max_length=255)
    created_at: datetime = timestamp()
    #: The language of the user's pages (``cs``, ``en``); NULL: the merchant's.
    ui_language: str | None = Field(default=None, max_length=2, nullable=True)


class ApiTokenRow(SQLModel, table=True):
    """E-shop API tokens: only a SHA-256 of the token is kept; ``hint`` is its last 4 characters."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchants.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    hint: str = Field(max_length=4)
    created_at: datetime = timestamp()
    last_used_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )


merchants = MerchantRow.__table__  # type: ignore[attr-defined]
staff_users = StaffUserRow.__table__  # type: ignore[attr-defined]
api_tokens = ApiTokenRow.__table__  # type: ignore[attr-defined]
