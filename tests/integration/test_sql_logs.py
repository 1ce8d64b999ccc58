"""The SQL adapter keeps stored values out of logs and errors, on SQLite and PostgreSQL.

PINs are stored as they are, so a statement's bound values, the rows it reads and the row a
failed write would have stored must never reach a log line or an error's text.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from ellity.adapters.sql.database import Database

PIN = "924683"
DRIVER_LOGGERS = ("sqlalchemy.engine", "sqlalchemy.pool", "aiosqlite", "asyncpg")


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{logging.Formatter().format(record)} {record.args!r}")


@contextmanager
def drivers_at_debug() -> Iterator[Kept]:
    kept = Kept()
    loggers = [logging.getLogger(name) for name in DRIVER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(kept)
    try:
        yield kept
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(kept)
            logger.setLevel(level)


async def test_statements_and_the_rows_they_read_are_logged_without_their_values(
    sql_database: Database,
) -> None:
    with drivers_at_debug() as kept:
        async with sql_database.engine.connect() as conn:
            result = await conn.execute(sa.text("SELECT :pin AS pin"), {"pin": PIN})
            assert result.scalar_one() == PIN
    assert any("SELECT" in line for line in kept.lines)
    assert any("Row" in line for line in kept.lines)  # SQLAlchemy logs each row at DEBUG
    assert [line for line in kept.lines if PIN in line] == []


async def test_a_failed_write_names_neither_its_values_nor_the_failing_row(
    sql_database: Database,
) -> None:
    """A customer without its merchant breaks NOT NULL; PostgreSQL's error would detail the
    whole row it refused, PIN included."""
    with drivers_at_debug() as kept, pytest.raises(sa.exc.DBAPIError) as failed:
        async with sql_database.write_engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO customers (pin, email) VALUES (:pin, 'ann@example.cz')"),
                {"pin": PIN},
            )
    error = "".join(traceback.format_exception(failed.value))
    assert "merchant_id" in error  # what is wrong is still said
    assert PIN not in error
    assert [line for line in kept.lines if PIN in line] == []
