"""room on the customers' pages for updated summaries (PostgreSQL)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 13:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Pages of customers are filled to this percentage, so that an update of a customer's
#: summary (balance, next expiration, last change: no indexed column) finds room for the new
#: row version on the same page and touches none of the table's seven indexes (a HOT update).
#: The nightly expiry updates the summaries of up to every other customer at once.
FILLFACTOR = 60


def upgrade() -> None:
    # Pages written from now on keep the room (rows are not moved: no table rewrite).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE customers SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE customers RESET (fillfactor)")
