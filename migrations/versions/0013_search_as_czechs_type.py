"""search keys without accents, the email domain key, code-point order on PostgreSQL

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:45:00.000000
"""

import unicodedata
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000
MAX_NAME_LENGTH = 100
_KEYS = {"email_key": 254, "email_domain_key": 254, "first_name_key": 100, "last_name_key": 100}


def _rekey_names(key: Callable[[str], str]) -> None:
    """Every customer's name keys made again with ``key``, a batch of rows at a time (the
    folding is Python's Unicode data, which neither database has); only changed rows are
    written."""
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, first_name, last_name, first_name_key, last_name_key FROM customers"
                " WHERE id > :after ORDER BY id LIMIT :batch"
            ),
            {"after": after, "batch": BATCH},
        ).all()
        if not rows:
            return
        changed = [
            {"id": row.id, "first": key(row.first_name), "last": key(row.last_name)}
            for row in rows
            if (key(row.first_name), key(row.last_name)) != (row.first_name_key, row.last_name_key)
        ]
        if changed:
            bind.execute(
                sa.text(
                    "UPDATE customers SET first_name_key = :first, last_name_key = :last"
                    " WHERE id = :id"
                ),
                changed,
            )
        after = rows[-1].id


def name_key(name: str) -> str:
    """``customer.name_key`` as this revision made it: without case and accents."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare)[:MAX_NAME_LENGTH]


def _case_folded(name: str) -> str:
    return name.casefold()[:MAX_NAME_LENGTH]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_domain_key", sa.String(length=254), nullable=True))
    if postgres:  # code-point order under any database collation (``columns.search_key``)
        for column, length in _KEYS.items():
            op.alter_column(
                "customers",
                column,
                type_=postgresql.VARCHAR(length, collation="C"),
                existing_type=sa.String(length),
            )
        op.execute(
            "UPDATE customers SET email_domain_key = split_part(email_key, '@', 2)"
            " WHERE email_key IS NOT NULL"
        )
    else:
        op.execute(
            "UPDATE customers SET email_domain_key = substr(email_key,"
            " instr(email_key, '@') + 1) WHERE email_key IS NOT NULL"
        )
    _rekey_names(name_key)
    # (key, id) order straight from the index: a page of a key many share needs no sort
    with op.batch_alter_table("customers", schema=None) as batch_op:
        for key in ("first_name_key", "last_name_key"):
            batch_op.drop_index(f"ix_customers_merchant_{key}")
            batch_op.create_index(f"ix_customers_merchant_{key}", ["merchant_id", key, "id"])
        batch_op.create_index(
            "ix_customers_merchant_email_domain_key",
            ["merchant_id", "email_domain_key", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_merchant_email_domain_key")
        batch_op.drop_column("email_domain_key")
        for key in ("first_name_key", "last_name_key"):
            batch_op.drop_index(f"ix_customers_merchant_{key}")
            batch_op.create_index(f"ix_customers_merchant_{key}", ["merchant_id", key])
    if op.get_bind().dialect.name == "postgresql":
        for column, length in _KEYS.items():
            if column != "email_domain_key":
                op.alter_column(
                    "customers",
                    column,
                    type_=sa.String(length),
                    existing_type=postgresql.VARCHAR(length, collation="C"),
                )
    _rekey_names(_case_folded)
