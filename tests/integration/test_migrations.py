"""The migrations build exactly the tables the code declares, on both databases."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import Database


async def test_alembic_check_finds_no_drift_between_tables_and_migrations(
    sql_database: Database,
) -> None:
    url = sql_database.engine.url.render_as_string(hide_password=False)
    await asyncio.to_thread(migrate.check, url)  # raises on any difference


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(clean_sqlite: Database) -> None:
    async with clean_sqlite.engine.connect() as conn:
        assert (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(sa.text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar() >= 5000
