"""Merchants (with their settings and nightly claim), their staff and their API tokens."""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import (
    UtcDateTime,
    metadata,
    timestamp,
    timestamp_or_none,
)

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("slug", sa.String(63), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("shop_url", sa.String(500), nullable=False),
    sa.Column("referral_link_template", sa.String(500), nullable=False),
    sa.Column("referral_bonus_cents", sa.BigInteger(), nullable=False),
    sa.Column("validity_months", sa.Integer(), nullable=False),
    sa.Column("locale", sa.String(2), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column(
        "send_system_emails",
        sa.Boolean(),
        nullable=False,
        default=False,
        server_default=sa.false(),
    ),
    sa.Column("smtp_host", sa.String(253), nullable=False, default="", server_default=""),
    sa.Column("smtp_port", sa.Integer(), nullable=False, default=587, server_default="587"),
    sa.Column("smtp_username", sa.String(254), nullable=False, default="", server_default=""),
    sa.Column("smtp_password_encrypted", sa.String(1000), nullable=True),
    sa.Column("smtp_sender", sa.String(254), nullable=False, default="", server_default=""),
    sa.Column(
        "smtp_security",
        sa.String(16),
        nullable=False,
        default="starttls",
        server_default="starttls",
    ),
    sa.Column("newsletter_reward_cents", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column(
        "newsletter_take_back",
        sa.Boolean(),
        nullable=False,
        default=False,
        server_default=sa.false(),
    ),
    sa.Column(
        "pre_expiry_notify", sa.Boolean(), nullable=False, default=False, server_default=sa.false()
    ),
    sa.Column("pre_expiry_days", sa.Integer(), nullable=False, default=14, server_default="14"),
    # whom the contact sync adds to the Ecomail list (domain.model.consent.EcomailAdd)
    sa.Column(
        "ecomail_add",
        sa.String(16),
        nullable=False,
        default="consented",
        server_default="consented",
    ),
    # how often the Ecomail list is reconciled (domain.model.reconciliation.Schedule)
    sa.Column(
        "ecomail_reconcile",
        sa.String(8),
        nullable=False,
        default="weekly",
        server_default="weekly",
    ),
    # the merchant's local date of the last nightly run that finished; a run in progress
    # holds a claim (token, lease) that it drops when it ends, or that runs out if it died
    sa.Column("last_nightly_on", sa.Date(), nullable=True),
    sa.Column("nightly_claim_token", sa.String(64), nullable=True),
    timestamp_or_none("nightly_claimed_until"),
    # when a test email last went out through the SMTP account (the first-run checklist)
    timestamp_or_none("test_email_sent_at"),
    timestamp("created_at"),
)

staff_users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column(
        "merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False, index=True
    ),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("email_key", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    timestamp("created_at"),
    # the language of the user's pages (``cs``, ``en``); NULL: the merchant's.
    sa.Column("ui_language", sa.String(2), nullable=True),
)

#: E-shop API tokens: only a SHA-256 of the token is kept; ``hint`` is its last 4 characters.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column(
        "merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False, index=True
    ),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(4), nullable=False),
    timestamp("created_at"),
    sa.Column("last_used_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
)
