"""a newsletter notification's reason kept as clauses, to show it in the reader's language

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-07 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: rows stored before keep only their English ``reason``
    # (shown as it is), and neither database rewrites the table.
    with op.batch_alter_table("newsletter_notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason_parts", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("newsletter_notifications", schema=None) as batch_op:
        batch_op.drop_column("reason_parts")
