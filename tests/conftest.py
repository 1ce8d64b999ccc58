"""Storage backends for the tests: the in-memory fake, a real SQLite file and real PostgreSQL.

PostgreSQL is part of every run (``ELLITY_TEST_POSTGRES_URL`` names the server's admin
database; ``.ci/run`` starts the server). Each run gets its own database, built by the
migrations; each test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import Database, create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import InMemoryStore

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
TABLES = (
    "reconciliation_repairs",
    "reconciliation_runs",
    "kept_day_totals",
    "kept_expiry_forecasts",
    "newsletter_signups",
    "newsletter_rewards",
    "newsletter_notifications",
    "ecomail_webhooks",
    "web_sessions",
    "login_attempts",
    "ecomail_old_addresses",
    "ecomail_contacts",
    "ecomail_integrations",
    "expiry_notices",
    "outbox",
    "api_tokens",
    "ledger_entries",
    "point_lots",
    "consent_changes",
    "customers",
    "staff_users",
    "merchants",
)
BACKENDS = ("memory", "sqlite", "postgres")
SQL_BACKENDS = ("sqlite", "postgres")


def postgres_admin_url() -> str:
    return os.environ.get("ELLITY_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


async def admin_statements(*statements: str) -> None:
    """Statements run on the PostgreSQL server's admin database (creating databases)."""
    admin = make_url(postgres_admin_url())
    conn = await asyncpg.connect(
        host=admin.host,
        port=admin.port,
        user=admin.username,
        password=admin.password,
        database=admin.database,
    )
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _recreate_postgres_database(name: str) -> str:
    await admin_statements(
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )
    return make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'ellity.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    database = create_database(url)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[Database]:
    name = f"ellity_test_{os.getpid()}"
    url = await _recreate_postgres_database(name)
    await asyncio.to_thread(migrate.upgrade, url)
    database = create_database(url, pool_size=20, max_overflow=40)
    yield database
    await database.dispose()
    await admin_statements(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def empty_tables(database: Database) -> None:
    async with database.write_engine.begin() as conn:
        if database.is_sqlite:
            for table in TABLES:
                await conn.execute(sa.text(f"DELETE FROM {table}"))
        else:
            await conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def clean_sqlite(sqlite_database: Database) -> Database:
    await empty_tables(sqlite_database)
    return sqlite_database


@pytest.fixture
async def clean_postgres(postgres_database: Database) -> Database:
    await empty_tables(postgres_database)
    return postgres_database


@pytest.fixture(params=BACKENDS)
def uow_factory(request: pytest.FixtureRequest) -> UnitOfWorkFactory:
    """The same tests run on the fake, SQLite and PostgreSQL: fakes cannot drift."""
    if request.param == "memory":
        return InMemoryStore().unit_of_work
    database: Database = request.getfixturevalue(f"clean_{request.param}")
    return SqlUnitOfWorkFactory(database)


@pytest.fixture(params=SQL_BACKENDS)
def sql_database(request: pytest.FixtureRequest) -> Database:
    """A real database with empty tables: SQLite, then PostgreSQL."""
    database: Database = request.getfixturevalue(f"clean_{request.param}")
    return database
