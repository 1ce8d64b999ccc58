"""The outbox of work for the outside world."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ellity.adapters.sql.tables.columns import (
    BIG_ID,
    UtcDateTime,
    claim_token_index,
    timestamp,
)
from ellity.ports.request_context import MAX_REQUEST_ID_LENGTH


class OutboxRow(SQLModel, table=True):
    """Work for the outside world (emails, Ecomail calls), written in the transaction that
    causes it and delivered afterwards by the worker.

    ``status``: pending, delivered, skipped (nothing left to send) or failed (given up). A
    worker claims a pending item by setting ``claim_token`` and ``claimed_until``; a claim that
    runs out (worker killed) is taken over; the worker renews its claim while it works, so the
    lease can be short. ``attempts`` counts claims (a claim taken over before its item was
    tried counts once); ``last_attempt_at`` is the latest. ``sending_since``: the worker is
    about to call out (SMTP, Ecomail) or is calling; set before the call, cleared with the
    outcome, so an item whose worker died during the call is known (it may have been
    delivered). ``delivered_at`` is when it was settled as delivered or skipped.
    ``request_id`` is the id of the web request that recorded the item (none for work of the
    worker's own, the nightly run, the commands): the worker's log lines about it carry it.
    ``entry_id``, ``next_expiry_on``, ``next_expiry_cents``: see below.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_status_available_at", "status", "available_at"),
        sa.Index("ix_outbox_merchant_status", "merchant_id", "status", "id"),
        sa.Index("ix_outbox_merchant_delivered_at", "merchant_id", "delivered_at"),
        claim_token_index("outbox"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BIG_ID, primary_key=True))
    merchant_id: int = Field(foreign_key="merchants.id")
    customer_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("customers.id"), nullable=True),
    )
    topic: str = Field(max_length=64)
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    created_at: datetime = timestamp()
    available_at: datetime = timestamp()
    claimed_until: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    claim_token: str | None = Field(default=None, max_length=64)
    sending_since: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    last_attempt_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UtcDateTime(), nullable=True)
    )
    request_id: str | None = Field(default=None, max_length=MAX_REQUEST_ID_LENGTH)
    # An item that follows a ledger entry may refer to it instead of carrying its payload:
    # the entry and the next expiration right after it (none while ``next_expiry_on`` is
    # NULL); the payload is built from them when the item is claimed, and ``payload`` is
    # ``{}``. No foreign key: ledger entries are never deleted, and the nightly expiry writes
    # hundreds of thousands of these at once.
    entry_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    next_expiry_on: date | None = None
    next_expiry_cents: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, nullable=True)
    )


outbox = OutboxRow.__table__  # type: ignore[attr-defined]
