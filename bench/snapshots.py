"""Benchmark of the contact snapshots of all customers against reading their stored summaries.

Runs after the nightly run, when every customer row's stored summary is the answer (no lot is
past its validity), as it is in production between nightly runs:

- the application: ``customers.all_contact_snapshots`` through the real service and SQL
  adapter (pages of ``SNAPSHOT_BATCH`` customers, each snapshot built with its fields);
- the floor: one query reading, from the customers table alone, the columns a snapshot is
  made of (identity, registration, PIN, referral code, consent and the stored summary:
  balance, next expiration day and points, last change day and points) for all customers
  in id order, with the database's plain driver (``sqlite3``; ``asyncpg`` through a
  server-side cursor), rows only, nothing formatted.

Both loops add up the whole points of the balances, which must agree. The floor runs before
and after the application and its faster time counts, so both read warm pages.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchdb import BenchDatabase, PostgresSession, SqliteSession, session
from seeding import MERCHANT_ID

from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SystemClock
from ellity.domain.services import customers

FLOOR_SQL = """
SELECT id, email, first_name, last_name, registered, pin, referral_code, balance_cents,
  next_expiry_on, next_expiry_cents, last_change_on, last_change_cents, marketing_consent
FROM customers WHERE merchant_id = :m ORDER BY id
"""
_BALANCE = 7  # FLOOR_SQL's balance column
FETCH = 20_000  # rows a round trip on PostgreSQL


async def _app(database: BenchDatabase) -> tuple[float, int, int]:
    engine = create_database(database.url)
    uow = SqlUnitOfWorkFactory(engine)
    try:
        started = time.perf_counter()
        count = points = 0
        async for batch in customers.all_contact_snapshots(
            MERCHANT_ID, uow_factory=uow, clock=SystemClock()
        ):
            count += len(batch)
            points += sum(int(snapshot.fields["ellity_credit_num"]) for snapshot in batch)
        return time.perf_counter() - started, count, points
    finally:
        await engine.dispose()


def _floor(database: BenchDatabase) -> tuple[float, int, int]:
    sql = session(database)
    count = points = 0
    try:
        if isinstance(sql, SqliteSession):
            started = time.perf_counter()
            for row in sql.conn.execute(FLOOR_SQL, {"m": MERCHANT_ID}):
                count += 1
                points += row[_BALANCE] // 100
            return time.perf_counter() - started, count, points
        return _postgres_floor(sql)
    finally:
        sql.close()


def _postgres_floor(sql: PostgresSession) -> tuple[float, int, int]:
    async def read() -> tuple[int, int]:
        count = points = 0
        async with sql.conn.transaction(readonly=True):
            query = FLOOR_SQL.replace(":m", "$1")
            async for row in sql.conn.cursor(query, MERCHANT_ID, prefetch=FETCH):
                count += 1
                points += row[_BALANCE] // 100
        return count, points

    started = time.perf_counter()
    count, points = sql.run(read())
    return time.perf_counter() - started, count, points


def run(database: BenchDatabase, n: int) -> dict[str, Any]:
    print(f"Contact snapshots of {n:,} customers ...", flush=True)
    # the floor before and after the application, the faster counts: both read warm pages
    floor_s, floor_count, floor_points = _floor(database)
    app_s, count, points = asyncio.run(_app(database))
    floor_s = min(floor_s, _floor(database)[0])
    if (count, points) != (floor_count, floor_points) or count != n:
        raise RuntimeError(
            f"{count} snapshots holding {points} points; the floor read {floor_count}"
            f" customers holding {floor_points}"
        )
    return {
        "customers": count,
        "app_s": app_s,
        "app_per_s": count / app_s,
        "floor_s": floor_s,
        "floor_per_s": count / floor_s,
        "floor_is": "the stored summary columns of all customers, one query, plain driver",
    }
