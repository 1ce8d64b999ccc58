"""addresses customers left, to clear in Ecomail

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:45:51.759261
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import ellity.adapters.sql.tables
from alembic import op


revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ecomail_old_addresses",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("email_key", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("left_at", ellity.adapters.sql.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ecomail_old_addresses", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ecomail_old_addresses_merchant_email_key",
            ["merchant_id", "email_key"],
            unique=False,
        )
        batch_op.create_index(
            "ux_ecomail_old_addresses_customer_email_key", ["customer_id", "email_key"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("ecomail_old_addresses", schema=None) as batch_op:
        batch_op.drop_index("ux_ecomail_old_addresses_customer_email_key")
        batch_op.drop_index("ix_ecomail_old_addresses_merchant_email_key")

    op.drop_table("ecomail_old_addresses")
