"""The Ecomail integration, the contacts waiting to be written to its list, and the addresses
customers moved away from."""

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
    activated_at: datetime | None = timestamp_or_none()
    backfill_requested_at: datetime | None = timestamp_or_none()
    backfill_after_id: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    backfill_marked: int = 0
    backfill_finished_at: datetime | None = timestamp_or_none()
    last_success_at: datetime | None = timestamp_or_none()
    updated_at: datetime = timestamp()


class EcomailContactRow(SQLModel, table=True):
    """A customer's contact in the merchant's Ecomail list, as far as the sync goes.

    ``pending_since`` is set while the contact needs writing (``NULL``: written); every change
    bumps ``change_seq``, a claim copies it to ``claimed_seq``, and settling leaves the contact
    pending when the two differ (it changed while being written). ``in_list``: the contact is
    known to be in the list (Ellity added it, or updated it in a call that reached every
    contact sent, or Ecomail confirmed it a member); ``added_at``: an add call of Ellity's that
    added contacts included it.

    ``add_attempted_at``: when Ellity attempted to add the contact, recorded before the call
    (kept when its answer is lost); ``echo_taken_at``: when a ``SUBSCRIBED`` notification was
    taken as Ecomail's echo of that attempt, and ``echo_subscribed_at`` Ecomail's
    ``subscribed_at`` of that subscription. ``unsubscribe_due``: the customer refused
    marketing and Ellity still has to unsubscribe the contact.
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
        claim_token_index("ecomail_contacts"),
    )

    customer_id: int = Field(
        sa_column=sa.Column(
            BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
        )
    )
    merchant_id: int = Field(foreign_key="merchants.id")
    pending_since: datetime | None = timestamp_or_none()
    change_seq: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    claimed_seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    claim_token: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = timestamp_or_none()
    next_attempt_at: datetime | None = timestamp_or_none()
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    failed_at: datetime | None = timestamp_or_none()
    in_list: bool = False
    added_at: datetime | None = timestamp_or_none()
    synced_at: datetime | None = timestamp_or_none()
    add_attempted_at: datetime | None = timestamp_or_none()
    echo_taken_at: datetime | None = timestamp_or_none()
    echo_subscribed_at: datetime | None = timestamp_or_none()
    unsubscribe_due: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


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

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int = Field(
        sa_column=sa.Column(
            BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
        )
    )
    email: str = Field(max_length=254)
    email_key: str = Field(max_length=254)
    left_at: datetime = timestamp()


ecomail_integrations = EcomailIntegrationRow.__table__  # type: ignore[attr-defined]
ecomail_contacts = EcomailContactRow.__table__  # type: ignore[attr-defined]
ecomail_old_addresses = EcomailOldAddressRow.__table__  # type: ignore[attr-defined]
