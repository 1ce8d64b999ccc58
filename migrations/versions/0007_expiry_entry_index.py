"""an index of the expiry entries, for the nightly run

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EXPIRY = sa.text("kind = 'expire'")


def upgrade() -> None:
    op.create_index(
        "ix_ledger_entries_expiry_customer_at_points",
        "ledger_entries",
        ["customer_id", "at", "points_cents"],
        unique=False,
        sqlite_where=_EXPIRY,
        postgresql_where=_EXPIRY,
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_expiry_customer_at_points", table_name="ledger_entries")
