"""short claims: an outbox item's call in flight, and claims found by their token

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

import ellity.adapters.sql.tables
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLAIMED = "claim_token IS NOT NULL"
_QUEUES = ("outbox", "ecomail_contacts", "newsletter_notifications")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sending_since",
                ellity.adapters.sql.tables.UtcDateTime(timezone=True),
                nullable=True,
            )
        )
    # a worker renews and gives back its claims by token: only claimed rows are indexed
    for table in _QUEUES:
        op.create_index(
            f"ix_{table}_claim_token",
            table,
            ["claim_token"],
            unique=False,
            sqlite_where=sa.text(_CLAIMED),
            postgresql_where=sa.text(_CLAIMED),
        )


def downgrade() -> None:
    for table in _QUEUES:
        op.drop_index(f"ix_{table}_claim_token", table_name=table)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("sending_since")
