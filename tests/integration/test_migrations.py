"""The migrations build exactly the tables the code declares, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import event

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import Database, create_database
from ellity.adapters.sql.expiry_run import expired_in, expiry_change
from ellity.adapters.sql.tables.customers import customers
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.ports.storage import ExpiredChunk


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


async def test_sqlite_keeps_a_large_page_cache_and_temporary_tables_in_memory(
    clean_sqlite: Database,
) -> None:
    async with clean_sqlite.engine.connect() as conn:
        assert (await conn.execute(sa.text("PRAGMA cache_size"))).scalar() == -32 * 1024
        assert (await conn.execute(sa.text("PRAGMA temp_store"))).scalar() == 2  # memory
        assert (await conn.execute(sa.text("PRAGMA mmap_size"))).scalar() == 0  # see RSS


async def test_the_expiry_probes_read_only_the_partial_index_of_expiry_entries(
    clean_sqlite: Database,
) -> None:
    """The nightly's per-customer tests ("did this run expire points of the customer", "how
    many") are one probe each of the expiry entries' index by customer and instant: none of
    the customer's other entries is read."""
    chunk = ExpiredChunk(
        MerchantId(1),
        at=datetime(2026, 11, 27, tzinfo=UTC),
        after_id=BEFORE_FIRST_CUSTOMER,
        up_to_id=CustomerId(100),
    )

    def explain(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> Any:
        return f"EXPLAIN QUERY PLAN {statement}", parameters

    engine = clean_sqlite.engine.sync_engine
    event.listen(engine, "before_cursor_execute", explain, retval=True)
    try:
        for probe in (expired_in(chunk), expiry_change(chunk)):
            async with clean_sqlite.engine.connect() as conn:
                plan = (await conn.execute(sa.select(customers.c.id, probe))).all()
            details = " | ".join(str(row[-1]) for row in plan)
            searched = "ix_ledger_entries_expiry_customer_at_points (customer_id=? AND at=?)"
            assert searched in details, details
    finally:
        event.remove(engine, "before_cursor_execute", explain)


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


async def test_the_search_key_migration_folds_existing_names_and_fills_the_domains(
    sql_database: Database,
) -> None:
    """0013 on a database with customers: name keys without accents, the domain key, and
    (PostgreSQL) the keys in code-point order; its downgrade gives the old keys back."""
    url = sql_database.engine.url.render_as_string(hide_password=False)
    config = migrate.alembic_config(url)
    await asyncio.to_thread(command.downgrade, config, "0012")
    try:
        async with sql_database.write_engine.begin() as conn:
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
                    " first_name, last_name, first_name_key, last_name_key, email, email_key,"
                    " registered) VALUES (1, 'ABCDEFGH', '2024-01-01', '2024-01-01', 'Růžena',"
                    " 'Růžičková', 'růžena', 'růžičková', 'R@Kavovar.CZ', 'r@kavovar.cz',"
                    " false), (1, 'BCDEFGHJ', '2024-01-01', '2024-01-01', '', 'Straße', '',"
                    " 'strasse', NULL, NULL, false)"
                )
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        keys = sa.text(
            "SELECT first_name_key, last_name_key, email_domain_key FROM customers ORDER BY id"
        )
        async with sql_database.engine.connect() as conn:
            assert [tuple(r) for r in await conn.execute(keys)] == [
                ("ruzena", "ruzickova", "kavovar.cz"),
                ("", "strasse", None),
            ]
            if not sql_database.is_sqlite:
                collations = await conn.execute(
                    sa.text(
                        "SELECT column_name, collation_name FROM information_schema.columns"
                        " WHERE table_name = 'customers' AND column_name LIKE '%_key'"
                    )
                )
                assert {name: collation for name, collation in collations} == {
                    "email_key": "C",
                    "email_domain_key": "C",
                    "first_name_key": "C",
                    "last_name_key": "C",
                }
        await asyncio.to_thread(command.downgrade, config, "0012")
        async with sql_database.engine.connect() as conn:
            back = sa.text("SELECT first_name_key, last_name_key FROM customers ORDER BY id")
            assert [tuple(r) for r in await conn.execute(back)] == [
                ("růžena", "růžičková"),
                ("", "strasse"),
            ]
    finally:
        await asyncio.to_thread(command.upgrade, config, "head")
