"""Benchmark of the nightly run on SQLite: expiry, then the pre-expiry notices.

    make bench                               # runs bench/core.py first, then this
    python bench/nightly.py --customers N [--dir D] [--emails]

Seeds its own database like bench/core.py (three lots per customer, some past their
validity; kept as ``nightly-seed.db`` and copied to ``nightly.db`` for each run, since a run
expires the due points; the copy is deleted afterwards), turns the Ecomail integration on (no Ecomail is called: the run only records the
contact marks and events the worker would deliver) and the pre-expiry notification with 14
days, then times ``nightly.run_nightly`` through the real services and SQL adapter:

- the expiry (chunks of customers, each marking the contacts and recording a ``credit``
  event per customer who lost points) and the pre-expiry notices (each recording an
  ``expiry`` event), apart and together; target: under 60 s for 1 000 000 customers;
- the longest write transaction (on SQLite the writer's lock: other writers wait for it,
  at most the busy timeout of 30 s);
- what was recorded: customers expired, contacts marked, notices and events.

``--emails`` also switches "Send emails from Ellity" on (an email per customer as well).
Figures are printed and merged into ``<dir>/latest.json`` under ``"nightly"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import MERCHANT_ID, seed
from sqlalchemy import event

from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SystemClock
from ellity.domain.services import nightly

NOTICE_DAYS = 14


def customers_in(path: Path) -> int | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM customers").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def prepare(directory: Path, n: int, *, emails: bool) -> Path:
    pristine, path = directory / "nightly-seed.db", directory / "nightly.db"
    if customers_in(pristine) != n:
        print(f"Seeding {n:,} customers into {pristine} ...", flush=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{pristine}{suffix}").unlink(missing_ok=True)
        seeded = seed(pristine, n)
        print(f"  {seeded['seconds']:.1f} s", flush=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    source = sqlite3.connect(pristine)
    source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    source.close()
    shutil.copyfile(pristine, path)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE merchants SET pre_expiry_notify = 1, pre_expiry_days = :days,"
        " send_system_emails = :emails WHERE id = :m",
        {"days": NOTICE_DAYS, "emails": int(emails), "m": MERCHANT_ID},
    )
    conn.execute(
        "INSERT INTO ecomail_integrations (merchant_id, api_key_encrypted, key_hint, list_id,"
        " list_name, active, activated_at, backfill_after_id, backfill_marked, updated_at)"
        " VALUES (:m, 'not-a-key', 'abcd', '1', 'Bench', 1, :now, 0, 0, :now)",
        {"m": MERCHANT_ID, "now": now},
    )
    conn.close()
    return path


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        queries = {
            "expiry_entries": "SELECT count(*) FROM ledger_entries WHERE kind = 'expire'",
            "contacts_marked": "SELECT count(*) FROM ecomail_contacts WHERE pending_since IS NOT NULL",
            "notices": "SELECT count(*) FROM expiry_notices",
            "credit_events": 'SELECT count(*) FROM outbox WHERE payload LIKE \'{"label":"credit"%\'',
            "expiry_events": 'SELECT count(*) FROM outbox WHERE payload LIKE \'{"label":"expiry"%\'',
            "emails": "SELECT count(*) FROM outbox WHERE topic LIKE 'email.%'",
        }
        return {name: int(conn.execute(sql).fetchone()[0]) for name, sql in queries.items()}
    finally:
        conn.close()


async def measure(path: Path, chunk: int) -> dict[str, Any]:
    database = create_database(f"sqlite+aiosqlite:///{path}")
    writes: list[float] = []

    @event.listens_for(database.engine.sync_engine, "begin")
    def _began(conn: Any) -> None:
        conn.info["began"] = time.perf_counter()

    @event.listens_for(database.engine.sync_engine, "commit")
    def _committed(conn: Any) -> None:
        if conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE":
            writes.append(time.perf_counter() - conn.info.pop("began", time.perf_counter()))

    uow = SqlUnitOfWorkFactory(database)
    clock = SystemClock()
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
        notice_s = time.perf_counter() - started
        again = time.perf_counter()
        repeat = await nightly.run_nightly(
            MERCHANT_ID, uow_factory=uow, clock=clock, chunk_size=chunk
        )
        repeat_s = time.perf_counter() - again
    finally:
        await database.dispose()
    if repeat.expiry.customers or repeat.notices.notices:
        raise RuntimeError(f"a second run changed something: {repeat}")
    return {
        "expiry_s": expiry_s,
        "notices_s": notice_s,
        "total_s": expiry_s + notice_s,
        "second_run_s": repeat_s,
        "expired_customers": expiry.customers,
        "credit_events": expiry.recorded.events,
        "notices": notices.notices,
        "expiry_events": notices.recorded.events,
        "emails": expiry.recorded.emails + notices.recorded.emails,
        "write_transactions": len(writes),
        "longest_write_s": max(writes, default=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--chunk", type=int, default=nightly.NIGHTLY_CHUNK)
    parser.add_argument("--emails", action="store_true", help="system emails on as well")
    args = parser.parse_args()
    n = args.customers
    args.dir.mkdir(parents=True, exist_ok=True)
    path = prepare(args.dir, n, emails=args.emails)
    print(
        f"Nightly run for {n:,} customers, Ecomail active, notices {NOTICE_DAYS} days ahead"
        f"{', system emails on' if args.emails else ''}, {args.chunk:,} customers a chunk:",
        flush=True,
    )
    measured = asyncio.run(measure(path, args.chunk))
    stored = counts(path)
    if stored["expiry_entries"] != measured["expired_customers"]:
        raise RuntimeError(f"{stored} does not match {measured}")
    print(
        f"  expiry: {measured['expiry_s']:.2f} s for {measured['expired_customers']:,} customers"
        f" ({stored['contacts_marked']:,} contacts marked, {measured['credit_events']:,} credit"
        f" events)"
    )
    print(
        f"  pre-expiry: {measured['notices_s']:.2f} s for {measured['notices']:,} notices"
        f" ({measured['expiry_events']:,} expiry events)"
    )
    print(
        f"  total {measured['total_s']:.2f} s (target < 60 s); {measured['emails']:,} emails;"
        f" {measured['write_transactions']} write transactions, the longest"
        f" {measured['longest_write_s']:.2f} s; a second run {measured['second_run_s']:.2f} s"
        " (nothing to do)"
    )
    out = args.dir / "latest.json"
    report = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    report["nightly"] = {
        "at": datetime.now(UTC).isoformat(),
        "customers": n,
        "chunk": args.chunk,
        "system_emails": args.emails,
        **measured,
        "stored": stored,
    }
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"Written to {out}")
    for suffix in ("", "-wal", "-shm"):  # the seed stays for the next run; the copy goes
        Path(f"{path}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
