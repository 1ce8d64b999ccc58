"""an outbox item may refer to the ledger entry it follows

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 12:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without a default: existing rows keep their whole payload (NULL: no
    # reference), and neither database rewrites the table.
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entry_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("next_expiry_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("next_expiry_cents", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("next_expiry_cents")
        batch_op.drop_column("next_expiry_on")
        batch_op.drop_column("entry_id")
