"""The migrations build exactly the tables the code declares, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import Database, create_database


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


async def test_the_nightly_settings_migration_keeps_a_populated_sqlite_database(
    tmp_path: Path,
) -> None:
    """0005 adds columns to ``merchants``, which customers reference: on SQLite it must not
    rebuild the table (dropping the old one fails under foreign keys once rows exist)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    config = migrate.alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0004")
    database = create_database(url)
    try:
        async with database.write_engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO merchants (id, slug, name, shop_url, referral_link_template,"
                    " referral_bonus_cents, validity_months, locale, timezone, created_at)"
                    " VALUES (1, 'shop', 'Shop', '', '{shop_url}/?ref={code}', 0, 12, 'cs',"
                    " 'Europe/Prague', '2024-01-01 00:00:00')"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO customers (merchant_id, referral_code, created_at, updated_at,"
                    " first_name, last_name, registered)"
                    " VALUES (1, 'ABCDEFGH', '2024-01-01', '2024-01-01', '', '', 0)"
                )
            )
    finally:
        await database.dispose()
    await asyncio.to_thread(command.upgrade, config, "0005")
    database = create_database(url)
    try:
        async with database.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT newsletter_reward_cents, newsletter_take_back, pre_expiry_notify,"
                        " pre_expiry_days, last_nightly_on, (SELECT count(*) FROM customers)"
                        " FROM merchants"
                    )
                )
            ).one()
    finally:
        await database.dispose()
    assert tuple(row) == (0, 0, 0, 14, None, 1)
