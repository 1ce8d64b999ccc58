"""The outbox of work for the outside world.

Work for the outside world (emails, Ecomail calls), written in the transaction that causes it
and delivered afterwards by the worker.

``status``: pending, delivered, skipped (nothing left to send) or failed (given up). A worker
claims a pending item by setting ``claim_token`` and ``claimed_until``; a claim that runs out
(worker killed) is taken over; the worker renews its claim while it works, so the lease can be
short. ``attempts`` counts claims (a claim taken over before its item was tried counts once);
``last_attempt_at`` is the latest. ``sending_since``: the worker is about to call out (SMTP,
Ecomail) or is calling; set before the call, cleared with the outcome, so an item whose worker
died during the call is known (it may have been delivered). ``delivered_at`` is when it was
settled as delivered or skipped. ``request_id`` is the id of the web request that recorded the
item (none for work of the worker's own, the nightly run, the commands): the worker's log lines
about it carry it. ``entry_id``, ``next_expiry_on``, ``next_expiry_cents``: see below.
"""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import (
    BIG_ID,
    UtcDateTime,
    claim_token_index,
    metadata,
    timestamp,
)
from ellity.ports.request_context import MAX_REQUEST_ID_LENGTH

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("customer_id", sa.BigInteger(), sa.ForeignKey("customers.id"), nullable=True),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    timestamp("created_at"),
    timestamp("available_at"),
    sa.Column("claimed_until", UtcDateTime(), nullable=True),
    sa.Column("claim_token", sa.String(64), nullable=True),
    sa.Column("sending_since", UtcDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
    sa.Column("delivered_at", UtcDateTime(), nullable=True),
    sa.Column("request_id", sa.String(MAX_REQUEST_ID_LENGTH), nullable=True),
    # An item that follows a ledger entry may refer to it instead of carrying its payload:
    # the entry and the next expiration right after it (none while ``next_expiry_on`` is
    # NULL); the payload is built from them when the item is claimed, and ``payload`` is
    # ``{}``. No foreign key: ledger entries are never deleted, and the nightly expiry writes
    # hundreds of thousands of these at once.
    sa.Column("entry_id", sa.BigInteger(), nullable=True),
    sa.Column("next_expiry_on", sa.Date(), nullable=True),
    sa.Column("next_expiry_cents", sa.BigInteger(), nullable=True),
    sa.Index("ix_outbox_status_available_at", "status", "available_at"),
    sa.Index("ix_outbox_merchant_status", "merchant_id", "status", "id"),
    sa.Index("ix_outbox_merchant_delivered_at", "merchant_id", "delivered_at"),
    # a customer's last events (the customer page)
    sa.Index("ix_outbox_customer_id_id", "customer_id", "id"),
    claim_token_index("outbox"),
)
