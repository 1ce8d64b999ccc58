"""Benchmark of the nightly run (expiry, then the pre-expiry notices) against its floor.

The seeded database gets the Ecomail integration (active; no Ecomail is called: the run only
records the contact marks and events the worker would deliver) and the 14-day pre-expiry
notices, and is copied (``benchdb``) before anything expires. Then, at one fixed instant:

- the application: ``nightly.expire_points`` and ``nightly.notify_upcoming_expiry`` through
  the real services and SQL adapter on the seeded database (chunks of
  ``nightly.NIGHTLY_CHUNK`` customers), timed apart, with the longest write transaction (on
  SQLite the writer's lock, on PostgreSQL the locks on the chunk's rows) and a second run
  that must find nothing to do;
- the floor: ``nightly_floor``, the same work as a hand-written SQL script per chunk, on
  the copy.

Both results are then compared table by table (rows and their values, a count and a hash
sum per table; an expiry's outbox item by the entry it refers to); a difference stops the
benchmark. The outbox payloads are compared too but only reported.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from benchdb import POSTGRES, BenchDatabase, Databases, SqliteSession, session, timed_copy
from nightly_floor import run_floor
from seeding import MERCHANT_ID
from sqlalchemy import event

from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.expiry import local_date
from ellity.domain.model.nightly import notice_window
from ellity.domain.services import nightly

NOTICE_DAYS = 14
TIMEZONE = "Europe/Prague"  # the seeded merchant's

_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


@dataclass(frozen=True)
class FixedClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


def enable_nightly_work(database: BenchDatabase) -> None:
    """The integration active and the pre-expiry notices on (system emails stay off)."""
    sql = session(database)
    now = datetime.now(UTC)
    try:
        sql.execute(
            "UPDATE merchants SET pre_expiry_notify = :on, pre_expiry_days = :days,"
            " send_system_emails = :off WHERE id = :m",
            {"on": True, "off": False, "days": NOTICE_DAYS, "m": MERCHANT_ID},
        )
        sql.execute(
            "INSERT INTO ecomail_integrations (merchant_id, api_key_encrypted, key_hint, list_id,"
            " list_name, active, activated_at, backfill_after_id, backfill_marked, updated_at)"
            " VALUES (:m, 'not-a-key', 'abcd', '1', 'Bench', :on, :now, 0, 0, :now)",
            {"m": MERCHANT_ID, "on": True, "now": now},
        )
    finally:
        sql.close()


async def measure_app(database: BenchDatabase, at: datetime, chunk: int) -> dict[str, Any]:
    engine = create_database(database.url)
    writes: list[float] = []

    @event.listens_for(engine.engine.sync_engine, "begin")
    def _began(conn: Any) -> None:
        conn.info["began"] = time.perf_counter()
        conn.info["wrote"] = False

    @event.listens_for(engine.engine.sync_engine, "before_cursor_execute")
    def _statement(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _WRITES.search(statement):
            conn.info["wrote"] = True

    @event.listens_for(engine.engine.sync_engine, "commit")
    def _committed(conn: Any) -> None:
        began = conn.info.pop("began", None)
        if began is not None and conn.info.pop("wrote", False):
            writes.append(time.perf_counter() - began)

    uow = SqlUnitOfWorkFactory(engine)
    clock = FixedClock(at)
    try:
        started = time.perf_counter()
        expiry = await nightly.expire_points(
            MERCHANT_ID, uow_factory=uow, clock=clock, chunk_size=chunk
        )
        expiry_s = time.perf_counter() - started
        started = time.perf_counter()
        notices = await nightly.notify_upcoming_expiry(
            MERCHANT_ID, uow_factory=uow, clock=clock, chunk_size=chunk
        )
        notices_s = time.perf_counter() - started
        longest = max(writes, default=0.0)
        count = len(writes)
        started = time.perf_counter()
        repeat = await nightly.run_nightly(
            MERCHANT_ID, uow_factory=uow, clock=clock, chunk_size=chunk
        )
        repeat_s = time.perf_counter() - started
    finally:
        await engine.dispose()
    if repeat.expiry.customers or repeat.notices.notices:
        raise RuntimeError(f"a second run changed something: {repeat}")
    return {
        "expiry_s": expiry_s,
        "notices_s": notices_s,
        "total_s": expiry_s + notices_s,
        "second_run_s": repeat_s,
        "expired_customers": expiry.customers,
        "credit_events": expiry.recorded.events,
        "notices": notices.notices,
        "expiry_events": notices.recorded.events,
        "write_transactions": count,
        "longest_write_s": longest,
    }


#: What the nightly run writes, table by table: where the rows are and the values compared.
WRITTEN: dict[str, tuple[str, tuple[str, ...]]] = {
    "customers": (
        "customers",
        (
            "id",
            "balance_cents",
            "next_expiry_on",
            "next_expiry_cents",
            "last_change_on",
            "last_change_cents",
        ),
    ),
    "point_lots": ("point_lots", ("id", "customer_id", "remaining_cents")),
    "expiry_entries": (
        "ledger_entries WHERE kind = 'expire'",
        ("merchant_id", "customer_id", "points_cents", "balance_after_cents", "at", "note"),
    ),
    "expiry_notices": (
        "expiry_notices",
        ("merchant_id", "customer_id", "expires_on", "points_cents", "created_at"),
    ),
    "ecomail_contacts": (
        "ecomail_contacts",
        (
            "merchant_id",
            "customer_id",
            "pending_since",
            "change_seq",
            "attempts",
            "in_list",
            "failed_at",
        ),
    ),
    "outbox": (
        "outbox",
        (
            "merchant_id",
            "customer_id",
            "topic",
            "status",
            "attempts",
            "created_at",
            "available_at",
            "next_expiry_on",
            "next_expiry_cents",
        ),
    ),
    # the entry an item refers to is the customer's expiry entry of the run (ids may differ)
    "outbox_entries": (
        "outbox o JOIN ledger_entries e ON e.id = o.entry_id",
        ("o.customer_id", "e.customer_id", "e.kind", "e.points_cents", "e.at"),
    ),
    "outbox_payloads": ("outbox", ("payload",)),
}


def _row(columns: tuple[str, ...]) -> str:
    return " || '|' || ".join(f"coalesce(CAST({column} AS TEXT), '~')" for column in columns)


def fingerprints(database: BenchDatabase) -> dict[str, tuple[int, int]]:
    """Per table: how many rows and the sum of a hash of each (their order does not matter)."""
    sql = session(database)
    try:
        if isinstance(sql, SqliteSession):
            sql.conn.create_function(
                "row_hash", 1, lambda text: zlib.crc32(str(text).encode()), deterministic=True
            )
        found = {}
        for name, (rows, columns) in WRITTEN.items():
            row = _row(columns)
            hashed = (
                f"row_hash({row})"
                if isinstance(sql, SqliteSession)
                else (f"hashtextextended({row}, 0)")
            )
            count, total = sql.rows(f"SELECT count(*), sum({hashed}) FROM {rows}")[0]
            found[name] = (int(count), int(total or 0))
        return found
    finally:
        sql.close()


def run(databases: Databases, seeded: BenchDatabase, chunk: int) -> dict[str, Any]:
    """Run both on the seeded database and a copy; ``seeded`` is left expired."""
    enable_nightly_work(seeded)
    copy, copy_s = timed_copy(databases, seeded, "nightly_floor")
    at = datetime.now(UTC)
    today = local_date(at, TIMEZONE)
    first_day, last_day = notice_window(at, TIMEZONE, NOTICE_DAYS)
    print(
        f"Nightly run, Ecomail active, notices {NOTICE_DAYS} days ahead, {chunk:,} customers"
        f" a chunk (the floor's copy made in {copy_s:.1f} s) ...",
        flush=True,
    )
    try:
        app = asyncio.run(measure_app(seeded, at, chunk))
        floor = run_floor(
            copy, at=at, today=today, first_day=first_day, last_day=last_day, chunk=chunk
        )
        written, floor_written = fingerprints(seeded), fingerprints(copy)
    finally:
        databases.drop(copy)
    payloads_equal = written.pop("outbox_payloads") == floor_written.pop("outbox_payloads")
    different = [name for name in written if written[name] != floor_written[name]]
    if different:
        raise RuntimeError(
            f"the floor wrote other rows than the application in {', '.join(different)}:"
            f" {written} against {floor_written}"
        )
    if written["expiry_entries"][0] != app["expired_customers"]:
        raise RuntimeError(f"{written['expiry_entries'][0]} entries for {app}")
    if not payloads_equal:
        print("  note: the outbox payloads differ from the floor's (rows and counts agree)")
    return {
        "chunk": chunk,
        "copy_s": copy_s,
        "copy_method": "file copy" if databases.dialect != POSTGRES else "TEMPLATE FILE_COPY",
        "app": app,
        "floor": {
            "expiry_s": floor.expiry_s,
            "notices_s": floor.notices_s,
            "total_s": floor.total_s,
            "chunks": floor.chunks,
            "longest_write_s": floor.longest_write_s,
        },
        "rows": {name: count for name, (count, _) in written.items()},
        "outbox_payloads_equal": payloads_equal,
    }
