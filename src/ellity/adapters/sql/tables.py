"""The database schema. SQLModel and SQLAlchemy live only in this package.

Customer rows carry their ledger summary (balance, next expiration, last change), kept in the
same transaction as every ledger change, so a contact snapshot is one indexed read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes stored as UTC; read back aware (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def dialect_insert(dialect: sa.Dialect, table: sa.Table) -> Any:
    """An INSERT that knows ON CONFLICT, for the database behind ``dialect``."""
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415 - only these two

    return (postgresql if dialect.name == "postgresql" else sqlite).insert(table)


def instant(value: datetime | None) -> sa.BindParameter[datetime | None]:
    """An aware datetime (or NULL) as a bound value stored like the ``UtcDateTime`` columns."""
    return sa.literal(value, UtcDateTime())


def _ts(**kw: Any) -> Any:
    return Field(sa_column=sa.Column(UtcDateTime(), nullable=False, **kw))


def _ts_or_none() -> Any:
    return Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=True))


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
    # the merchant's local date of the last nightly run that finished; a run in progress
    # holds a claim (token, lease) that it drops when it ends, or that runs out if it died
    last_nightly_on: date | None = None
    nightly_claim_token: str | None = Field(default=None, max_length=64)
    nightly_claimed_until: datetime | None = _ts_or_none()
    created_at: datetime = _ts()


class StaffUserRow(SQLModel, table=True):
    __tablename__ = "staff_users"

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchants.id", index=True)
    email: str = Field(max_length=254)
    email_key: str = Field(max_length=254, unique=True)
    password_hash: str = Field(max_length=255)
    created_at: datetime = _ts()


_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


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
        sa.Index("ix_customers_merchant_first_name_key", "merchant_id", "first_name_key"),
        sa.Index("ix_customers_merchant_last_name_key", "merchant_id", "last_name_key"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(_BIGID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    email: str | None = Field(default=None, max_length=254)
    email_key: str | None = Field(default=None, max_length=254)
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    first_name_key: str = Field(default="", max_length=100, sa_column_kwargs={"server_default": ""})
    last_name_key: str = Field(default="", max_length=100, sa_column_kwargs={"server_default": ""})
    shop_customer_id: str | None = Field(default=None, max_length=100)
    registered: bool = False
    pin: str | None = Field(default=None, max_length=6)
    referral_code: str = Field(max_length=8)
    referred_by_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=True),
    )
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
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

    id: int | None = Field(default=None, sa_column=sa.Column(_BIGID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=False)
    )
    earned_at: datetime = _ts()
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

    id: int | None = Field(default=None, sa_column=sa.Column(_BIGID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=False)
    )
    kind: str = Field(max_length=32)
    points_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    balance_after_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    at: datetime = _ts()
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
    created_at: datetime = _ts()


class ApiTokenRow(SQLModel, table=True):
    """E-shop API tokens: only a SHA-256 of the token is kept; ``hint`` is its last 4 characters."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchants.id", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    hint: str = Field(max_length=4)
    created_at: datetime = _ts()
    last_used_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )


class OutboxRow(SQLModel, table=True):
    """Work for the outside world (emails, Ecomail calls), written in the transaction that
    causes it and delivered afterwards by the worker.

    ``status``: pending, delivered, skipped (nothing left to send) or failed (given up). A
    worker claims a pending item by setting ``claim_token`` and ``claimed_until``; a claim that
    runs out (worker killed) is taken over. ``attempts`` counts claims; ``last_attempt_at`` is
    the latest. ``delivered_at`` is when it was settled as delivered or skipped.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_status_available_at", "status", "available_at"),
        sa.Index("ix_outbox_merchant_status", "merchant_id", "status", "id"),
        sa.Index("ix_outbox_merchant_delivered_at", "merchant_id", "delivered_at"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(_BIGID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=True),
    )
    topic: str = Field(max_length=64)
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    created_at: datetime = _ts()
    available_at: datetime = _ts()
    claimed_until: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    claim_token: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    last_attempt_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )


class WebSessionRow(SQLModel, table=True):
    """Server-side sessions of the merchant pages; ``id_digest`` is the SHA-256 of the id."""

    __tablename__ = "web_sessions"

    id_digest: str = Field(max_length=64, primary_key=True)
    data: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    expires_at: datetime = _ts(index=True)


class LoginAttemptRow(SQLModel, table=True):
    """Log-in attempts per key (``email:...``, ``client:...``) in a fixed window."""

    __tablename__ = "login_attempts"

    key: str = Field(max_length=260, primary_key=True)
    attempts: int
    window_ends_at: datetime = _ts(index=True)


class EcomailIntegrationRow(SQLModel, table=True):
    """A merchant's Ecomail integration. The API key is encrypted (``SecretBox``); only its
    last four characters are kept in clear, to show which key is stored."""

    __tablename__ = "ecomail_integrations"

    merchant_id: int = Field(foreign_key="merchants.id", primary_key=True)
    api_key_encrypted: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    key_hint: str = Field(max_length=4)
    list_id: str | None = Field(default=None, max_length=32)
    list_name: str = Field(default="", max_length=200)
    active: bool = False
    activated_at: datetime | None = _ts_or_none()
    backfill_requested_at: datetime | None = _ts_or_none()
    backfill_after_id: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    backfill_marked: int = 0
    backfill_finished_at: datetime | None = _ts_or_none()
    last_success_at: datetime | None = _ts_or_none()
    updated_at: datetime = _ts()


class EcomailContactRow(SQLModel, table=True):
    """A customer's contact in the merchant's Ecomail list, as far as the sync goes.

    ``pending_since`` is set while the contact needs writing (``NULL``: written); every change
    bumps ``change_seq``, a claim copies it to ``claimed_seq``, and settling leaves the contact
    pending when the two differ (it changed while being written). ``in_list``: Ellity has
    written the contact to the list; ``added_at``: an add call of Ellity's that added contacts
    included it (its subscription may be Ellity's own doing).
    """

    __tablename__ = "ecomail_contacts"
    __table_args__ = (
        sa.Index(
            "ix_ecomail_contacts_pending",
            "merchant_id",
            "pending_since",
            "customer_id",
            sqlite_where=sa.text("pending_since IS NOT NULL"),
            postgresql_where=sa.text("pending_since IS NOT NULL"),
        ),
        sa.Index(
            "ix_ecomail_contacts_failed",
            "merchant_id",
            "failed_at",
            sqlite_where=sa.text("failed_at IS NOT NULL"),
            postgresql_where=sa.text("failed_at IS NOT NULL"),
        ),
    )

    customer_id: int = Field(
        sa_column=sa.Column(
            _BIGID, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
        )
    )
    merchant_id: int = Field(foreign_key="merchants.id")
    pending_since: datetime | None = _ts_or_none()
    change_seq: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    claimed_seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    claim_token: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = _ts_or_none()
    next_attempt_at: datetime | None = _ts_or_none()
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    failed_at: datetime | None = _ts_or_none()
    in_list: bool = False
    added_at: datetime | None = _ts_or_none()
    synced_at: datetime | None = _ts_or_none()


class EcomailOldAddressRow(SQLModel, table=True):
    """An address a customer moved away from while Ellity may have written their fields to it,
    to be cleared by the contact sync (in the claim of that customer's contact)."""

    __tablename__ = "ecomail_old_addresses"
    __table_args__ = (
        sa.Index(
            "ux_ecomail_old_addresses_customer_email_key", "customer_id", "email_key", unique=True
        ),
        sa.Index("ix_ecomail_old_addresses_merchant_email_key", "merchant_id", "email_key"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(_BIGID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int = Field(
        sa_column=sa.Column(
            _BIGID, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
        )
    )
    email: str = Field(max_length=254)
    email_key: str = Field(max_length=254)
    left_at: datetime = _ts()


class EcomailWebhookRow(SQLModel, table=True):
    """A merchant's secret webhook URL for Ecomail's list webhook: the token's SHA-256 (what
    a request is looked up by) and the token encrypted (``SecretBox``), to show it again."""

    __tablename__ = "ecomail_webhooks"

    merchant_id: int = Field(foreign_key="merchants.id", primary_key=True)
    token_digest: str = Field(max_length=64, unique=True)
    token_encrypted: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = _ts()


_PENDING_NOTIFICATION = sa.text("state = 'pending'")


class NewsletterNotificationRow(SQLModel, table=True):
    """A notification Ecomail's list webhook posted, stored as received (one INSERT while the
    request waits) and processed by the worker, which confirms it with Ecomail first.

    ``state``: pending, then processed with its ``outcome`` (paid, deducted, ignored,
    unconfirmed), ``reason`` and ``points``. While pending, ``reason`` holds what it waits
    for; ``available_at`` is when it may next be claimed, and a claim (``claim_token``,
    ``claimed_until``) makes a worker its only processor until the lease runs out.
    """

    __tablename__ = "newsletter_notifications"
    __table_args__ = (
        sa.Index("ix_newsletter_notifications_merchant_id_id", "merchant_id", "id"),
        sa.Index(
            "ix_newsletter_notifications_pending",
            "available_at",
            "id",
            sqlite_where=_PENDING_NOTIFICATION,
            postgresql_where=_PENDING_NOTIFICATION,
        ),
        sa.Index("ix_newsletter_notifications_processed_at", "processed_at"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(_BIGID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    received_at: datetime = _ts()
    email: str = Field(max_length=254)
    status: str = Field(max_length=16)  # SUBSCRIBED or UNSUBSCRIBED, as Ecomail sent it
    list_id: str = Field(max_length=32)
    campaign_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    state: str = Field(default="pending", max_length=16)
    outcome: str | None = Field(default=None, max_length=16)
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    points_cents: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    customer_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("customers.id", ondelete="SET NULL"), nullable=True
        ),
    )
    processed_at: datetime | None = _ts_or_none()
    available_at: datetime = _ts()
    attempts: int = 0
    claim_token: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = _ts_or_none()


class NewsletterRewardRow(SQLModel, table=True):
    """The newsletter reward a customer holds (``domain.model.newsletter.RewardHold``):
    ``outstanding_cents`` still to be taken back on unsubscribe, held while above zero."""

    __tablename__ = "newsletter_rewards"

    customer_id: int = Field(
        sa_column=sa.Column(
            _BIGID, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
        )
    )
    merchant_id: int = Field(foreign_key="merchants.id")
    outstanding_cents: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    paid_at: datetime | None = _ts_or_none()
    released_at: datetime | None = _ts_or_none()
    updated_at: datetime = _ts()


merchants = MerchantRow.__table__  # type: ignore[attr-defined]
staff_users = StaffUserRow.__table__  # type: ignore[attr-defined]
customers = CustomerRow.__table__  # type: ignore[attr-defined]
point_lots = PointLotRow.__table__  # type: ignore[attr-defined]
ledger_entries = LedgerEntryRow.__table__  # type: ignore[attr-defined]
expiry_notices = ExpiryNoticeRow.__table__  # type: ignore[attr-defined]
api_tokens = ApiTokenRow.__table__  # type: ignore[attr-defined]
outbox = OutboxRow.__table__  # type: ignore[attr-defined]
web_sessions = WebSessionRow.__table__  # type: ignore[attr-defined]
login_attempts = LoginAttemptRow.__table__  # type: ignore[attr-defined]
ecomail_integrations = EcomailIntegrationRow.__table__  # type: ignore[attr-defined]
ecomail_contacts = EcomailContactRow.__table__  # type: ignore[attr-defined]
ecomail_old_addresses = EcomailOldAddressRow.__table__  # type: ignore[attr-defined]
ecomail_webhooks = EcomailWebhookRow.__table__  # type: ignore[attr-defined]
newsletter_notifications = NewsletterNotificationRow.__table__  # type: ignore[attr-defined]
newsletter_rewards = NewsletterRewardRow.__table__  # type: ignore[attr-defined]
metadata = SQLModel.metadata
