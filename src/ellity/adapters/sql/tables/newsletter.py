"""Ecomail's list webhook: the merchants' tokens, the notifications received, and the
newsletter reward each customer holds."""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import (
    BIG_ID,
    claim_token_index,
    metadata,
    timestamp,
    timestamp_or_none,
)

#: A merchant's secret webhook URL for Ecomail's list webhook: the token's SHA-256 (what a
#: request is looked up by) and the token encrypted (``SecretBox``), to show it again.
ecomail_webhooks = sa.Table(
    "ecomail_webhooks",
    metadata,
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), primary_key=True),
    sa.Column("token_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("token_encrypted", sa.Text(), nullable=False),
    timestamp("created_at"),
)

_PENDING_NOTIFICATION = sa.text("state = 'pending'")

#: A notification Ecomail's list webhook posted, stored as received (one INSERT while the
#: request waits) and processed by the worker, which confirms it with Ecomail first.
#:
#: ``state``: pending, then processed with its ``outcome`` (paid, deducted, ignored,
#: unconfirmed), ``reason`` and ``points``. While pending, ``reason`` holds what it waits for.
#: ``reason`` is English text (logs, the CLI); ``reason_parts`` the same reason as JSON
#: clauses (``domain.model.reason.Reason.to_json``) that the pages translate, NULL in rows
#: stored before it was kept. ``available_at`` is when it may next be claimed, and a claim
#: (``claim_token``, ``claimed_until``) makes a worker its only processor until the lease
#: runs out.
newsletter_notifications = sa.Table(
    "newsletter_notifications",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    timestamp("received_at"),
    sa.Column("email", sa.String(254), nullable=False),
    # the email case-folded (domain.model.customer.email_key); NULL in rows stored before it
    sa.Column("email_key", sa.String(254), nullable=True),
    # SUBSCRIBED or UNSUBSCRIBED, as Ecomail sent it
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("list_id", sa.String(32), nullable=False),
    sa.Column("campaign_id", sa.BigInteger(), nullable=True),
    # who reported it: Ecomail's ``webhook``, or a ``reconciliation`` run that found the
    # change in the list without a notification
    sa.Column("origin", sa.String(16), nullable=False, default="webhook", server_default="webhook"),
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("reason_parts", sa.Text(), nullable=True),
    sa.Column("points_cents", sa.BigInteger(), nullable=True),
    sa.Column(
        "customer_id",
        sa.BigInteger(),
        sa.ForeignKey("customers.id", ondelete="SET NULL"),
        nullable=True,
    ),
    timestamp_or_none("processed_at"),
    timestamp("available_at"),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("claim_token", sa.String(64), nullable=True),
    timestamp_or_none("claimed_until"),
    sa.Index("ix_newsletter_notifications_merchant_id_id", "merchant_id", "id"),
    sa.Index("ix_newsletter_notifications_merchant_email_key_id", "merchant_id", "email_key", "id"),
    sa.Index(
        "ix_newsletter_notifications_pending",
        "available_at",
        "id",
        sqlite_where=_PENDING_NOTIFICATION,
        postgresql_where=_PENDING_NOTIFICATION,
    ),
    sa.Index("ix_newsletter_notifications_processed_at", "processed_at"),
    claim_token_index("newsletter_notifications"),
)

#: The newsletter reward a customer holds (``domain.model.newsletter.RewardHold``):
#: ``outstanding_cents`` still to be taken back on unsubscribe, held while above zero.
newsletter_rewards = sa.Table(
    "newsletter_rewards",
    metadata,
    sa.Column(
        "customer_id", BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("outstanding_cents", sa.BigInteger(), nullable=False),
    timestamp_or_none("paid_at"),
    timestamp_or_none("released_at"),
    timestamp("updated_at"),
)

#: A sign-up Ecomail confirmed for an email no customer had: kept so that a customer who is
#: created with that email within ``SIGNUP_KEEP`` is paid the reward then (once).
#: ``notification_id`` is the notification that reported it; ``used_at`` when a customer took
#: it.
newsletter_signups = sa.Table(
    "newsletter_signups",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("email_key", sa.String(254), nullable=False),
    sa.Column("list_id", sa.String(32), nullable=False),
    timestamp("received_at"),
    timestamp("confirmed_at"),
    sa.Column("notification_id", sa.BigInteger(), nullable=True),
    timestamp_or_none("used_at"),
    sa.Index("ux_newsletter_signups_merchant_email_key", "merchant_id", "email_key", unique=True),
    sa.Index("ix_newsletter_signups_confirmed_at", "confirmed_at"),
)
