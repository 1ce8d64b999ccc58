"""Engines for SQLite (the default) and PostgreSQL.

SQLite ignores ``SELECT ... FOR UPDATE``; writers there open their transaction with
``BEGIN IMMEDIATE`` so read-modify-write sequences are serialized, while readers use a plain
deferred ``BEGIN`` and never queue behind writers (WAL).

No stored value reaches a log (PINs are stored as they are): the engines hide bound
parameters, also in the text of a failed statement's error (``hide_parameters``), PostgreSQL's
error details (the failing row) are dropped, and the rows SQLAlchemy and the calls aiosqlite
log at DEBUG are logged without their values.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ellity.settings import DEFAULT_DB_MAX_OVERFLOW, DEFAULT_DB_POOL_SIZE

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CACHE_KIB = 32 * 1024  # per connection, filled as pages are read


class NestedWrite(RuntimeError):
    """A writing unit of work was opened inside another one of the same task."""


class WritersTurn:
    """SQLite: this process's writing units of work take turns here. SQLite admits one writer
    at a time anyway; queueing in the process spares the others the file lock's busy
    handler, which sleeps 1, 2, 5, 10 ... ms between tries and so wastes the free moments
    (a burst of webhook requests stored half as fast without it).

    A task that asks for the turn while it holds it would wait for itself for ever (and,
    without the turn, for its own file lock until the busy timeout): it is refused at once."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    async def acquire(self) -> None:
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            raise NestedWrite(
                "a writing unit of work is already open in this task; SQLite has one writer,"
                " so a nested one would wait for it for ever"
            )
        await self._lock.acquire()
        self._holder = task

    def release(self) -> None:
        self._holder = None
        self._lock.release()


@dataclass(frozen=True)
class Database:
    """One engine, so one connection pool per process: ``write_engine`` is the same engine
    with other execution options."""

    engine: AsyncEngine  # readers
    write_engine: AsyncEngine  # shares the pool; IMMEDIATE transactions on SQLite
    writers_turn: WritersTurn | None = None  # SQLite only

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


#: ``set_config(..., true)``: for the current transaction only.
_WITHOUT_JIT = sa.text("SELECT set_config('jit', 'off', true)")


async def without_jit(conn: AsyncConnection) -> None:
    """PostgreSQL: no JIT compilation for the rest of the connection's transaction.

    For a query that reads thousands of rows through per-row expressions (the valid-on-today
    summary's CASE and subqueries, the export's formatting): its cost estimate is above the
    default ``jit_above_cost``, and compiling it takes tens of milliseconds per query, more
    than running it without JIT. Whatever the server's settings, such a page is not compiled.
    Nothing on SQLite.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(_WITHOUT_JIT)


def ensure_sqlite_folder(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def create_database(
    url: str,
    *,
    pool_size: int = DEFAULT_DB_POOL_SIZE,
    max_overflow: int = DEFAULT_DB_MAX_OVERFLOW,
) -> Database:
    """On PostgreSQL the pool keeps ``pool_size`` connections and opens up to
    ``max_overflow`` more under load: at most their sum at once (SQLite ignores both)."""
    ensure_sqlite_folder(url)
    backend = make_url(url).get_backend_name()
    _keep_values_out_of_logs()
    kwargs: dict[str, Any] = {"pool_pre_ping": backend != "sqlite", "hide_parameters": True}
    if backend == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
    engine = create_async_engine(url, **kwargs)
    if backend == "sqlite":
        _configure_sqlite(engine)
        return Database(
            engine=engine,
            write_engine=engine.execution_options(sqlite_begin="IMMEDIATE"),
            writers_turn=WritersTurn(),
        )
    _drop_error_details(engine)
    return Database(engine=engine, write_engine=engine)


class _RowValuesHidden(logging.Filter):
    """SQLAlchemy logs every fetched row at DEBUG (``hide_parameters`` does not cover rows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.endswith("Row %r") and record.args:
            record.msg = record.msg.removesuffix("%r") + "(values not logged)"
            record.args = tuple(record.args)[:-1]
        return True


class _CallArgumentsHidden(logging.Filter):
    """aiosqlite logs every call it hands its thread at DEBUG, with the statement's values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_call_name(arg) for arg in record.args)
        return True


def _call_name(arg: object) -> object:
    if isinstance(arg, functools.partial):
        name = getattr(arg.func, "__qualname__", type(arg.func).__name__)
        return f"{name}(…)" if arg.args or arg.keywords else f"{name}()"
    return arg


_LIBRARY_LOG_FILTERS: tuple[tuple[str, type[logging.Filter]], ...] = (
    ("sqlalchemy.engine.Engine", _RowValuesHidden),
    ("aiosqlite", _CallArgumentsHidden),
)


def _keep_values_out_of_logs() -> None:
    """Filters on the libraries' own loggers: they act before any handler sees a record."""
    for name, kind in _LIBRARY_LOG_FILTERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, kind) for existing in logger.filters):
            logger.addFilter(kind())


def _drop_error_details(engine: AsyncEngine) -> None:
    """PostgreSQL details a failed statement with the values it saw ("Failing row contains
    (..., '924683', ...)", "Key (email_key)=(...)"), and asyncpg puts the detail into its
    error's text, so into every traceback: the detail is dropped. The message, naming the
    constraint, stays."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        error: BaseException | None = context.original_exception
        seen: set[int] = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            if isinstance(getattr(error, "detail", None), str):
                error.detail = None  # type: ignore[attr-defined]
            error = error.__cause__ or error.__context__


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            # set-based work over many customers (the nightly expiry) reads and writes far
            # more than SQLite's default 2 MiB page cache holds. No memory map: its pages
            # would count in the process's resident memory (an export of 1M customers 4x).
            f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}",
            "PRAGMA temp_store=MEMORY",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
