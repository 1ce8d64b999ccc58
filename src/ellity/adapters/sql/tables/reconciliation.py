"""Reconciliation of a merchant's Ecomail list with the ledger: the runs and their repairs."""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import (
    BIG_ID,
    claim_token_index,
    metadata,
    timestamp,
    timestamp_or_none,
)

_UNFINISHED = sa.text("finished_at IS NULL")

#: One reconciliation of a merchant's list (``domain.model.reconciliation``).
#:
#: A run is requested (``trigger``: schedule, merchant, command), then claimed by one worker at
#: a time (``claim_token`` until ``claimed_until``; a dead worker's claim runs out and another
#: takes the run over) and goes through its phases: ``read`` the list's members, a status
#: filter (``status_index`` into ``READ_ORDER``) and a ``page`` at a time, each page committed
#: with its repairs and the cursor of the next page, then ``sweep`` the customers the list
#: lacks (customer ids after ``sweep_after_id``), then it is finished (``finished_at``; with
#: ``error`` when it stopped for good). ``available_at``: when it may next be claimed (a run
#: waiting for the request budget). At most one unfinished run per merchant.
reconciliation_runs = sa.Table(
    "reconciliation_runs",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("list_id", sa.String(32), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    timestamp("requested_at"),
    timestamp("available_at"),
    timestamp_or_none("started_at"),
    timestamp_or_none("finished_at"),
    sa.Column("claim_token", sa.String(64), nullable=True),
    timestamp_or_none("claimed_until"),
    sa.Column("phase", sa.String(16), nullable=False, default="read"),
    sa.Column("status_index", sa.Integer(), nullable=False, default=0),
    sa.Column("page", sa.Integer(), nullable=False, default=1),
    sa.Column("sweep_after_id", sa.BigInteger(), nullable=False, default=0),
    # members the list held when the run began (the first page of each status says), and
    # members compared so far: the progress bar
    sa.Column("expected", sa.Integer(), nullable=True),
    sa.Column("checked", sa.Integer(), nullable=False, default=0),
    sa.Column("api_calls", sa.Integer(), nullable=False, default=0),
    # repairs by kind (``domain.model.reconciliation.RepairKind``)
    sa.Column("fields_rewritten", sa.Integer(), nullable=False, default=0),
    sa.Column("added", sa.Integer(), nullable=False, default=0),
    sa.Column("unsubscribed", sa.Integer(), nullable=False, default=0),
    sa.Column("confirmed_paid", sa.Integer(), nullable=False, default=0),
    sa.Column("signup_paid", sa.Integer(), nullable=False, default=0),
    sa.Column("cleared", sa.Integer(), nullable=False, default=0),
    # why the run stopped (English; ``error_parts``: the same as clauses the pages translate)
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("error_parts", sa.Text(), nullable=True),
    sa.Index("ix_reconciliation_runs_merchant_id_id", "merchant_id", "id"),
    sa.Index(
        "ux_reconciliation_runs_unfinished",
        "merchant_id",
        unique=True,
        sqlite_where=_UNFINISHED,
        postgresql_where=_UNFINISHED,
    ),
    claim_token_index("reconciliation_runs"),
)

#: A repair a run made (or asked the sync or the newsletter processing to make), with why.
reconciliation_repairs = sa.Table(
    "reconciliation_repairs",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True),
    sa.Column(
        "run_id",
        sa.BigInteger(),
        sa.ForeignKey("reconciliation_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column(
        "customer_id",
        sa.BigInteger(),
        sa.ForeignKey("customers.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("reason_parts", sa.Text(), nullable=True),
    timestamp("at"),
    sa.Index("ix_reconciliation_repairs_run_id_id", "run_id", "id"),
    sa.Index("ix_reconciliation_repairs_merchant_customer", "merchant_id", "customer_id", "id"),
)
