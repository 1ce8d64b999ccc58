"""Ecomail's list webhook: the merchants' tokens, the notifications received, and the
newsletter reward each customer holds."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ellity.adapters.sql.tables.columns import (
    BIG_ID,
    claim_token_index,
    timestamp,
    timestamp_or_none,
)


class EcomailWebhookRow(SQLModel, table=True):
    """A merchant's secret webhook URL for Ecomail's list webhook: the token's SHA-256 (what
    a request is looked up by) and the token encrypted (``SecretBox``), to show it again."""

    __tablename__ = "ecomail_webhooks"

    merchant_id: int = Field(foreign_key="merchants.id", primary_key=True)
    token_digest: str = Field(max_length=64, unique=True)
    token_encrypted: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = timestamp()


_PENDING_NOTIFICATION = sa.text("state = 'pending'")


class NewsletterNotificationRow(SQLModel, table=True):
    """A notification Ecomail's list webhook posted, stored as received (one INSERT while the
    request waits) and processed by the worker, which confirms it with Ecomail first.

    ``state``: pending, then processed with its ``outcome`` (paid, deducted, ignored,
    unconfirmed), ``reason`` and ``points``. While pending, ``reason`` holds what it waits
    for. ``reason`` is English text (logs, the CLI); ``reason_parts`` the same reason as JSON
    clauses (``domain.model.reason.Reason.to_json``) that the pages translate, NULL in rows
    stored before it was kept. ``available_at`` is when it may next be claimed, and a claim
    (``claim_token``, ``claimed_until``) makes a worker its only processor until the lease
    runs out.
    """

    __tablename__ = "newsletter_notifications"
    __table_args__ = (
        sa.Index("ix_newsletter_notifications_merchant_id_id", "merchant_id", "id"),
        sa.Index(
            "ix_newsletter_notifications_merchant_email_key_id", "merchant_id", "email_key", "id"
        ),
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

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    received_at: datetime = timestamp()
    email: str = Field(max_length=254)
    # the email case-folded (domain.model.customer.email_key); NULL in rows stored before it
    email_key: str | None = Field(default=None, max_length=254)
    status: str = Field(max_length=16)  # SUBSCRIBED or UNSUBSCRIBED, as Ecomail sent it
    list_id: str = Field(max_length=32)
    campaign_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    state: str = Field(default="pending", max_length=16)
    outcome: str | None = Field(default=None, max_length=16)
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    reason_parts: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    points_cents: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    customer_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("customers.id", ondelete="SET NULL"), nullable=True
        ),
    )
    processed_at: datetime | None = timestamp_or_none()
    available_at: datetime = timestamp()
    attempts: int = 0
    claim_token: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = timestamp_or_none()


class NewsletterRewardRow(SQLModel, table=True):
    """The newsletter reward a customer holds (``domain.model.newsletter.RewardHold``):
    ``outstanding_cents`` still to be taken back on unsubscribe, held while above zero."""

    __tablename__ = "newsletter_rewards"

    customer_id: int = Field(
        sa_column=sa.Column(
            BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
        )
    )
    merchant_id: int = Field(foreign_key="merchants.id")
    outstanding_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    paid_at: datetime | None = timestamp_or_none()
    released_at: datetime | None = timestamp_or_none()
    updated_at: datetime = timestamp()


class NewsletterSignupRow(SQLModel, table=True):
    """A sign-up Ecomail confirmed for an email no customer had: kept so that a customer who
    is created with that email within ``SIGNUP_KEEP`` is paid the reward then (once).
    ``notification_id`` is the notification that reported it; ``used_at`` when a customer
    took it."""

    __tablename__ = "newsletter_signups"
    __table_args__ = (
        sa.Index(
            "ux_newsletter_signups_merchant_email_key", "merchant_id", "email_key", unique=True
        ),
        sa.Index("ix_newsletter_signups_confirmed_at", "confirmed_at"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    email: str = Field(max_length=254)
    email_key: str = Field(max_length=254)
    list_id: str = Field(max_length=32)
    received_at: datetime = timestamp()
    confirmed_at: datetime = timestamp()
    notification_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    used_at: datetime | None = timestamp_or_none()


ecomail_webhooks = EcomailWebhookRow.__table__  # type: ignore[attr-defined]
newsletter_notifications = NewsletterNotificationRow.__table__  # type: ignore[attr-defined]
newsletter_rewards = NewsletterRewardRow.__table__  # type: ignore[attr-defined]
newsletter_signups = NewsletterSignupRow.__table__  # type: ignore[attr-defined]
