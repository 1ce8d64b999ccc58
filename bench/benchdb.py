"""The databases a benchmark run works on, on SQLite or PostgreSQL, and plain SQL on them.

A run makes its databases, copies them, and removes them all at the end:

- SQLite: files in a folder of the run's own (``var/bench/sqlite``), copied with the file
  system after a checkpoint (the WAL is folded into the file first);
- PostgreSQL: databases named ``ellity_bench_<pid>_<name>``, made and dropped through the
  admin URL (``ELLITY_TEST_POSTGRES_URL``); a copy is ``CREATE DATABASE ... TEMPLATE ...
  STRATEGY FILE_COPY``, a file-level copy of the seeded database: at 1M customers a few
  seconds against minutes for seeding again (``WAL_LOG``, the default, writes every page of
  the copy to the WAL as well and is several times slower).

``SqlSession`` runs the bench's own SQL (seeding, floors, checks) with the database's plain
driver, ``sqlite3`` or ``asyncpg``, outside SQLAlchemy. Statements name their values
``:name``; on PostgreSQL they are written into the text as literals (they are the bench's own
numbers, dates and words), so a script of several statements goes to the server in one
message, as ``psql`` would send it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from ellity.adapters.sql.database import SQLITE_CACHE_KIB

SQLITE = "sqlite"
POSTGRES = "postgresql"
DIALECTS = {"sqlite": SQLITE, "postgres": POSTGRES, "postgresql": POSTGRES}

# a value's name, or a string literal (left as it is: a ':' in it names nothing)
SERVER_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "max_wal_size",
    "checkpoint_timeout",
    "synchronous_commit",
    "wal_compression",
    "jit",
    "jit_above_cost",
    "random_page_cost",
    "autovacuum",
)

_PARAM = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class BenchDatabase:
    """One database of the run: its name in the run, SQLAlchemy URL and dialect."""

    name: str
    url: str
    dialect: str
    path: Path | None = None  # SQLite: the file

    @property
    def libpq_url(self) -> str:
        """PostgreSQL: the URL for ``psql`` and ``asyncpg``."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)


class SqlSession(Protocol):
    dialect: str

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def value(self, sql: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def close(self) -> None: ...


class SqliteSession:
    """``sqlite3`` in autocommit mode (``BEGIN``/``COMMIT`` are written out), with the pragmas
    the application's connections use (``adapters.sql.database``)."""

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}",
            "PRAGMA temp_store=MEMORY",
        ):
            self.conn.execute(pragma)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        if params is None:
            self.conn.executescript(sql)
        else:
            self.conn.execute(sql, _used(sql, params))

    def script(self, statements: Sequence[str], params: Mapping[str, Any]) -> None:
        """Several statements with values (``executescript`` takes none)."""
        for statement in statements:
            self.conn.execute(statement, _used(statement, params))

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, _used(sql, params or {})).fetchall()

    def value(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.rows(sql, params)[0][0]

    def close(self) -> None:
        self.conn.close()


class PostgresSession:
    """``asyncpg`` on an event loop of its own, so the bench's synchronous code can use it."""

    dialect = POSTGRES

    def __init__(self, database: BenchDatabase) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(
            asyncpg.connect(database.libpq_url)
        )

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.loop.run_until_complete(self.conn.execute(inline(sql, params or {})))

    def script(self, statements: Sequence[str], params: Mapping[str, Any]) -> None:
        self.execute(";\n".join(statements), params)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        found = self.loop.run_until_complete(self.conn.fetch(inline(sql, params or {})))
        return [tuple(row) for row in found]

    def value(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.rows(sql, params)[0][0]

    def run(self, coroutine: Any) -> Any:
        """Await something on the session's loop (``self.conn``'s own API)."""
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def _used(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    names = {name for name in _PARAM.findall(sql) if name}
    return {name: _sqlite_value(value) for name, value in params.items() if name in names}


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def sqlite_instant(value: datetime) -> str:
    """An aware instant as the application stores it on SQLite (naive UTC, microseconds)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def literal(value: Any) -> str:
    """A PostgreSQL literal of one of the bench's own values."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no literal for {type(value).__name__}")


def inline(sql: str, params: Mapping[str, Any]) -> str:
    """``sql`` with each ``:name`` replaced by the literal of ``params[name]``."""
    return _PARAM.sub(
        lambda found: found.group(0) if found.group(1) is None else literal(params[found.group(1)]),
        sql,
    )


def migrate(database: BenchDatabase) -> None:
    """The newest schema, by the application's migrations (in a process of their own: alembic
    configures this process's logging)."""
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-c",
            "import sys; from ellity.adapters.sql import migrate; migrate.upgrade(sys.argv[1])",
            database.url,
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the migrations failed on {database.name}:\n{done.stderr}")


def session(database: BenchDatabase) -> SqliteSession | PostgresSession:
    if database.dialect == SQLITE:
        if database.path is None:
            raise ValueError("a SQLite database without a file")
        return SqliteSession(database.path)
    return PostgresSession(database)


class Databases(Protocol):
    """Where a run keeps its databases; ``drop_all`` removes every one it made."""

    dialect: str

    def create(self, name: str) -> BenchDatabase:
        """An empty database at the newest schema."""
        ...

    def copy(self, source: BenchDatabase, name: str) -> BenchDatabase: ...

    def drop(self, database: BenchDatabase) -> None: ...

    def drop_all(self) -> None: ...

    def version(self) -> str: ...

    def settings(self) -> dict[str, str]: ...


class SqliteDatabases:
    dialect = SQLITE

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)

    def _database(self, name: str) -> BenchDatabase:
        path = self.folder / f"{name}.db"
        return BenchDatabase(name, f"sqlite+aiosqlite:///{path}", SQLITE, path)

    def create(self, name: str) -> BenchDatabase:
        database = self._database(name)
        self.drop(database)
        migrate(database)
        return database

    def copy(self, source: BenchDatabase, name: str) -> BenchDatabase:
        if source.path is None:
            raise ValueError("a SQLite database without a file")
        conn = sqlite3.connect(source.path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        database = self._database(name)
        self.drop(database)
        shutil.copyfile(source.path, self.folder / f"{name}.db")
        return database

    def drop(self, database: BenchDatabase) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database.path}{suffix}").unlink(missing_ok=True)

    def drop_all(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def version(self) -> str:
        return sqlite3.sqlite_version

    def settings(self) -> dict[str, str]:
        """SQLite's settings are the connection's (the application's pragmas)."""
        return {}


class PostgresDatabases:
    """Databases ``<prefix>_<name>`` on the server of ``admin_url`` (which names a database
    to connect to for ``CREATE``/``DROP DATABASE``)."""

    dialect = POSTGRES

    def __init__(self, admin_url: str, prefix: str | None = None) -> None:
        self.admin_url = admin_url
        self.prefix = prefix or f"ellity_bench_{os.getpid()}"
        self.made: list[str] = []

    def _admin(self, *statements: str) -> list[Any]:
        async def run() -> list[Any]:
            url = make_url(self.admin_url).set(drivername="postgresql")
            conn = await asyncpg.connect(url.render_as_string(False))
            try:
                return [await conn.fetch(statement) for statement in statements]
            finally:
                await conn.close()

        return asyncio.run(run())

    def _database(self, name: str) -> BenchDatabase:
        full = f"{self.prefix}_{name}"
        url = make_url(self.admin_url).set(database=full).render_as_string(False)
        return BenchDatabase(name, url, POSTGRES)

    def _db_name(self, database: BenchDatabase) -> str:
        return str(make_url(database.url).database)

    def create(self, name: str) -> BenchDatabase:
        database = self._database(name)
        full = self._db_name(database)
        self._admin(f'DROP DATABASE IF EXISTS "{full}" WITH (FORCE)', f'CREATE DATABASE "{full}"')
        self.made.append(full)
        migrate(database)
        return database

    def copy(self, source: BenchDatabase, name: str) -> BenchDatabase:
        database = self._database(name)
        full = self._db_name(database)
        self._admin(
            f'DROP DATABASE IF EXISTS "{full}" WITH (FORCE)',
            f'CREATE DATABASE "{full}" TEMPLATE "{self._db_name(source)}" STRATEGY FILE_COPY',
        )
        self.made.append(full)
        return database

    def drop(self, database: BenchDatabase) -> None:
        full = self._db_name(database)
        self._admin(f'DROP DATABASE IF EXISTS "{full}" WITH (FORCE)')
        if full in self.made:
            self.made.remove(full)

    def drop_all(self) -> None:
        if self.made:
            self._admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in self.made))
            self.made.clear()

    def version(self) -> str:
        return str(self._admin("SHOW server_version")[0][0][0])

    def settings(self) -> dict[str, str]:
        """The server settings that move the figures most (all defaults here unless set)."""
        names = SERVER_SETTINGS
        found = self._admin(
            "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings"
            f" WHERE name IN ({', '.join(literal(name) for name in names)}) ORDER BY name"
        )
        return {name: value for name, value in found[0]}

    def leftovers(self) -> list[str]:
        """Bench databases on the server that are not this run's (a run killed with SIGKILL
        cannot drop its own)."""
        found = self._admin("SELECT datname FROM pg_database WHERE datname LIKE 'ellity_bench_%'")
        return [row[0] for row in found[0] if not row[0].startswith(f"{self.prefix}_")]


def timed_copy(
    databases: Databases, source: BenchDatabase, name: str
) -> tuple[BenchDatabase, float]:
    started = time.perf_counter()
    copy = databases.copy(source, name)
    return copy, time.perf_counter() - started
