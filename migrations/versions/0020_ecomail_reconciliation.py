"""reconciliation of the Ecomail list: runs, repairs, each contact's status as last seen

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from ellity.adapters.sql.tables import UtcDateTime

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_UNFINISHED = sa.text("finished_at IS NULL")
_CLAIMED = sa.text("claim_token IS NOT NULL")


def upgrade() -> None:
    # Plain ADD COLUMN (no table copy on SQLite): nullable, or with a server default.
    op.add_column(
        "merchants",
        sa.Column("ecomail_reconcile", sa.String(8), nullable=False, server_default="weekly"),
    )
    op.add_column("ecomail_contacts", sa.Column("list_status", sa.SmallInteger(), nullable=True))
    op.add_column("ecomail_contacts", sa.Column("list_status_at", UtcDateTime(), nullable=True))
    op.add_column("ecomail_contacts", sa.Column("seen_run_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "newsletter_notifications",
        sa.Column("origin", sa.String(16), nullable=False, server_default="webhook"),
    )
    op.create_index("ix_outbox_customer_id_id", "outbox", ["customer_id", "id"], unique=False)
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", _BIG_ID, primary_key=True),
        sa.Column("merchant_id", sa.Integer(), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("list_id", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("available_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("claimed_until", UtcDateTime(), nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("sweep_after_id", sa.BigInteger(), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=True),
        sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("fields_rewritten", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("unsubscribed", sa.Integer(), nullable=False),
        sa.Column("confirmed_paid", sa.Integer(), nullable=False),
        sa.Column("signup_paid", sa.Integer(), nullable=False),
        sa.Column("cleared", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_parts", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_reconciliation_runs_merchant_id_id", "reconciliation_runs", ["merchant_id", "id"]
    )
    op.create_index(
        "ux_reconciliation_runs_unfinished",
        "reconciliation_runs",
        ["merchant_id"],
        unique=True,
        sqlite_where=_UNFINISHED,
        postgresql_where=_UNFINISHED,
    )
    op.create_index(
        "ix_reconciliation_runs_claim_token",
        "reconciliation_runs",
        ["claim_token"],
        sqlite_where=_CLAIMED,
        postgresql_where=_CLAIMED,
    )
    op.create_table(
        "reconciliation_repairs",
        sa.Column("id", _BIG_ID, primary_key=True),
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
        sa.Column("at", UtcDateTime(), nullable=False),
    )
    op.create_index(
        "ix_reconciliation_repairs_run_id_id", "reconciliation_repairs", ["run_id", "id"]
    )
    op.create_index(
        "ix_reconciliation_repairs_merchant_customer",
        "reconciliation_repairs",
        ["merchant_id", "customer_id", "id"],
    )


def downgrade() -> None:
    op.drop_table("reconciliation_repairs")
    op.drop_table("reconciliation_runs")
    op.drop_index("ix_outbox_customer_id_id", table_name="outbox")
    op.drop_column("newsletter_notifications", "origin")
    op.drop_column("ecomail_contacts", "seen_run_id")
    op.drop_column("ecomail_contacts", "list_status_at")
    op.drop_column("ecomail_contacts", "list_status")
    op.drop_column("merchants", "ecomail_reconcile")
