"""when a test email last went out, for the first-run checklist

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from ellity.adapters.sql.tables import UtcDateTime

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: no test email has gone out yet (or it went out before this was recorded).
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("test_email_sent_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+ has it): a batch copy of ``merchants`` would drop the
    # table its customers' foreign keys point at.
    op.drop_column("merchants", "test_email_sent_at")
