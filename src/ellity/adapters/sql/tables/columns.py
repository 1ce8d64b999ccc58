"""The schema's ``metadata``, and the column types and helpers that every table and statement
shares: aware UTC instants, big integer ids, and an INSERT that knows ON CONFLICT on either
database.

The tables are declared with SQLAlchemy Core: nothing more is needed to read and write them,
and a process that only reads (``ellity export``) starts without loading a model layer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

#: Every table of the schema (what the migrations are compared with).
metadata = sa.MetaData()


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes stored as UTC; read back aware (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def dialect_insert(dialect: sa.Dialect, table: sa.Table) -> Any:
    """An INSERT that knows ON CONFLICT, for the database behind ``dialect``."""
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415 - only these two

    return (postgresql if dialect.name == "postgresql" else sqlite).insert(table)


def instant(value: datetime | None) -> sa.BindParameter[datetime | None]:
    """An aware datetime (or NULL) as a bound value stored like the ``UtcDateTime`` columns."""
    return sa.literal(value, UtcDateTime())


def timestamp(name: str, **kw: Any) -> sa.Column[datetime]:
    """A required ``UtcDateTime`` column."""
    return sa.Column(name, UtcDateTime(), nullable=False, **kw)


def timestamp_or_none(name: str) -> sa.Column[datetime]:
    """A ``UtcDateTime`` column that may be NULL."""
    return sa.Column(name, UtcDateTime(), nullable=True)


#: Ids of the tables that grow with the customers: BIGINT, but SQLite's INTEGER so that the
#: column stays the rowid alias there.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def claim_token_index(table: str) -> sa.Index:
    """A work queue's claims by token (a worker renews and gives back its own): only the
    rows a claim holds are indexed."""
    claimed = sa.text("claim_token IS NOT NULL")
    return sa.Index(
        f"ix_{table}_claim_token", "claim_token", sqlite_where=claimed, postgresql_where=claimed
    )


def search_key(length: int) -> sa.types.TypeEngine[str]:
    """Text that prefix searches read as index ranges: compared in code-point order on both
    databases. SQLite compares that way by default; PostgreSQL's column gets the "C"
    collation, so that a database created with a language's collation (ICU ``cs-CZ`` puts
    ``ch`` after ``h``) keeps ``key >= 'c' AND key < 'd'`` the range of the keys starting
    with ``c``."""
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - as dialect_insert

    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")
