"""The Ecomail integration, the contacts waiting to be written to its list, and the addresses
customers moved away from."""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import (
    BIG_ID,
    claim_token_index,
    metadata,
    timestamp,
    timestamp_or_none,
)

#: A merchant's Ecomail integration. The API key is encrypted (``SecretBox``); only its last
#: four characters are kept in clear, to show which key is stored.
ecomail_integrations = sa.Table(
    "ecomail_integrations",
    metadata,
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), primary_key=True),
    sa.Column("api_key_encrypted", sa.Text(), nullable=False),
    sa.Column("key_hint", sa.String(4), nullable=False),
    sa.Column("list_id", sa.String(32), nullable=True),
    sa.Column("list_name", sa.String(200), nullable=False, default=""),
    sa.Column("active", sa.Boolean(), nullable=False, default=False),
    timestamp_or_none("activated_at"),
    timestamp_or_none("backfill_requested_at"),
    sa.Column("backfill_after_id", sa.BigInteger(), nullable=False),
    sa.Column("backfill_marked", sa.Integer(), nullable=False, default=0),
    timestamp_or_none("backfill_finished_at"),
    timestamp_or_none("last_success_at"),
    timestamp("updated_at"),
)

#: A customer's contact in the merchant's Ecomail list, as far as the sync goes.
#:
#: ``pending_since`` is set while the contact needs writing (``NULL``: written); every change
#: bumps ``change_seq``, a claim copies it to ``claimed_seq``, and settling leaves the contact
#: pending when the two differ (it changed while being written). ``in_list``: the contact is
#: known to be in the list (Ellity added it, or updated it in a call that reached every
#: contact sent, or Ecomail confirmed it a member); ``added_at``: an add call of Ellity's that
#: added contacts included it.
#:
#: ``add_attempted_at``: when Ellity attempted to add the contact, recorded before the call
#: (kept when its answer is lost); ``echo_taken_at``: when a ``SUBSCRIBED`` notification was
#: taken as Ecomail's echo of that attempt, and ``echo_subscribed_at`` Ecomail's
#: ``subscribed_at`` of that subscription. ``unsubscribe_due``: the customer refused
#: marketing and Ellity still has to unsubscribe the contact.
#:
#: ``list_status``: the contact's status in the list as Ellity last saw it (a reconciliation
#: run, a confirmation), ``seen_run_id`` the reconciliation run that saw it last.
ecomail_contacts = sa.Table(
    "ecomail_contacts",
    metadata,
    sa.Column(
        "customer_id", BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    timestamp_or_none("pending_since"),
    sa.Column("change_seq", sa.BigInteger(), nullable=False),
    sa.Column("claimed_seq", sa.BigInteger(), nullable=True),
    sa.Column("claim_token", sa.String(64), nullable=True),
    timestamp_or_none("claimed_until"),
    timestamp_or_none("next_attempt_at"),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("last_error", sa.Text(), nullable=True),
    timestamp_or_none("failed_at"),
    sa.Column("in_list", sa.Boolean(), nullable=False, default=False),
    timestamp_or_none("added_at"),
    timestamp_or_none("synced_at"),
    timestamp_or_none("add_attempted_at"),
    timestamp_or_none("echo_taken_at"),
    timestamp_or_none("echo_subscribed_at"),
    sa.Column(
        "unsubscribe_due", sa.Boolean(), nullable=False, default=False, server_default=sa.false()
    ),
    # the contact's status in the list (``SubscriptionStatus``) as Ellity last saw it, when,
    # and the reconciliation run that saw it last
    sa.Column("list_status", sa.SmallInteger(), nullable=True),
    timestamp_or_none("list_status_at"),
    sa.Column("seen_run_id", sa.BigInteger(), nullable=True),
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

#: An address a customer moved away from while Ellity may have written their fields to it, to
#: be cleared by the contact sync (in the claim of that customer's contact).
ecomail_old_addresses = sa.Table(
    "ecomail_old_addresses",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column(
        "customer_id", BIG_ID, sa.ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("email_key", sa.String(254), nullable=False),
    timestamp("left_at"),
    sa.Index(
        "ux_ecomail_old_addresses_customer_email_key", "customer_id", "email_key", unique=True
    ),
    sa.Index("ix_ecomail_old_addresses_merchant_email_key", "merchant_id", "email_key"),
)
