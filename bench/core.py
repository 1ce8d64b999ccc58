"""Benchmark of the loyalty core on SQLite: seeding, contact snapshots, expiry.

    make bench            # 100 000 customers
    make bench N=1000000

Seeds a fresh database (built by the migrations) in bulk with a realistic ledger — three earned
lots per customer, half of them with a FIFO spend that empties the oldest lot and half of the
next, some lots past their validity — then measures, through the real service and SQL adapter:

- seeding rate (customers and rows per second);
- contact snapshots per second for all customers (``all_contact_snapshots``), against a
  baseline: one hand-written SQL aggregate computing balance and next expiration from the lots
  still valid today (the snapshots run before the expiry, so the lots past their validity are
  there and must be left out);
- the time to expire due points for all customers (``expire_due_points``), against a baseline:
  one hand-written SQL aggregate of the due points per customer.

Figures are printed and written to ``var/bench/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SystemClock
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.referral import ALPHABET
from ellity.domain.services import customers, points

MERCHANT_ID = MerchantId(1)

SEED_SQL = [
    "CREATE TEMP TABLE seq(n INTEGER PRIMARY KEY)",
    """WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :n)
       INSERT INTO seq SELECT n FROM s""",
    # the per-customer plan: lot ages in days and amounts in hundredths
    """CREATE TEMP TABLE plan(n INTEGER PRIMARY KEY, d1, d2, d3, a1, a2, a3, spends)""",
    """INSERT INTO plan SELECT n,
         400 + (n * 7) % 300 AS d1, 200 + (n * 13) % 200 AS d2, (n * 17) % 150 AS d3,
         1000 + (n * 31) % 9000 AS a1, 1000 + (n * 37) % 9000 AS a2, 100 + (n * 41) % 5000 AS a3,
         n % 2 = 0 AS spends FROM seq""",
    """INSERT INTO customers (id, merchant_id, email, email_key, first_name, last_name,
         shop_customer_id, registered, pin, referral_code, created_at, updated_at)
       SELECT n, :m, 'customer' || n || '@example.cz', 'customer' || n || '@example.cz',
         'First' || n, 'Last' || n, 'shop-' || n, n % 3 = 0,
         CASE WHEN n % 3 = 0 THEN NULL ELSE printf('%06d', (n * 7919) % 1000000) END,
         substr(:alphabet, ((n >> 0) & 31) + 1, 1) || substr(:alphabet, ((n >> 5) & 31) + 1, 1) ||
         substr(:alphabet, ((n >> 10) & 31) + 1, 1) || substr(:alphabet, ((n >> 15) & 31) + 1, 1) ||
         substr(:alphabet, ((n >> 20) & 31) + 1, 1) || substr(:alphabet, ((n >> 25) & 31) + 1, 1) ||
         substr(:alphabet, ((n >> 30) & 31) + 1, 1) || substr(:alphabet, ((n >> 35) & 31) + 1, 1),
         :now, :now FROM seq""",
    # lots: earned at noon UTC (same calendar day in Prague), valid 12 months
    """INSERT INTO point_lots (merchant_id, customer_id, earned_at, expires_on, amount_cents, remaining_cents)
       SELECT :m, n, datetime(:today, '-' || d || ' days', '+12 hours'),
         date(:today, '-' || d || ' days', '+12 months'), a, r FROM (
         SELECT n, d1 AS d, a1 AS a, CASE WHEN spends THEN 0 ELSE a1 END AS r FROM plan
         UNION ALL SELECT n, d2, a2, CASE WHEN spends THEN a2 - a2 / 2 ELSE a2 END FROM plan
         UNION ALL SELECT n, d3, a3, a3 FROM plan) ORDER BY n""",
    """INSERT INTO ledger_entries (merchant_id, customer_id, kind, points_cents, balance_after_cents, at, order_ref)
       SELECT :m, n, kind, cents, after, datetime(:today, '-' || d || ' days', '+12 hours'), ref FROM (
         SELECT n, 1 AS k, 'earn' AS kind, a1 AS cents, a1 AS after, d1 AS d, 'order-' || n || '-1' AS ref FROM plan
         UNION ALL SELECT n, 2, 'earn', a2, a1 + a2, d2, 'order-' || n || '-2' FROM plan
         UNION ALL SELECT n, 3, 'spend', -(a1 + a2 / 2), a2 - a2 / 2, d2 - 10, NULL FROM plan WHERE spends
         UNION ALL SELECT n, 4, 'earn', a3,
           CASE WHEN spends THEN a2 - a2 / 2 ELSE a1 + a2 END + a3, d3, 'order-' || n || '-3' FROM plan)
       ORDER BY n, k""",
    # the summary columns, from the lots and the newest entry
    """UPDATE customers SET
         balance_cents = (SELECT coalesce(sum(remaining_cents), 0) FROM point_lots l
                          WHERE l.customer_id = customers.id AND remaining_cents > 0),
         next_expiry_on = (SELECT min(expires_on) FROM point_lots l
                           WHERE l.customer_id = customers.id AND remaining_cents > 0),
         last_change_on = (SELECT date(:today, '-' || d3 || ' days') FROM plan WHERE plan.n = customers.id),
         last_change_cents = (SELECT a3 FROM plan WHERE plan.n = customers.id)""",
    """UPDATE customers SET next_expiry_cents = (SELECT coalesce(sum(remaining_cents), 0) FROM point_lots l
         WHERE l.customer_id = customers.id AND remaining_cents > 0 AND expires_on = customers.next_expiry_on)""",
]

SNAPSHOT_BASELINE = """
WITH open AS (
  SELECT customer_id, expires_on, sum(remaining_cents) AS held FROM point_lots
  WHERE merchant_id = :m AND remaining_cents > 0 AND (expires_on IS NULL OR expires_on >= :today)
  GROUP BY customer_id, expires_on),
first AS (SELECT customer_id, sum(held) AS balance, min(expires_on) AS first_on FROM open GROUP BY customer_id)
SELECT c.id, c.email, c.first_name, c.last_name, c.registered, c.pin, c.referral_code,
       coalesce(f.balance, 0), f.first_on, o.held, c.last_change_on, c.last_change_cents
FROM customers c LEFT JOIN first f ON f.customer_id = c.id
LEFT JOIN open o ON o.customer_id = c.id AND o.expires_on = f.first_on
WHERE c.merchant_id = :m ORDER BY c.id
"""

EXPIRY_BASELINE = """
SELECT customer_id, sum(remaining_cents) FROM point_lots
WHERE merchant_id = :m AND remaining_cents > 0 AND expires_on < :today GROUP BY customer_id
"""


def seed(path: Path, n: int) -> dict[str, float]:
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url)
    now = datetime.now(UTC)
    today = now.date().isoformat()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "INSERT INTO merchants (id, slug, name, shop_url, referral_link_template, referral_bonus_cents,"
        " validity_months, locale, timezone, created_at)"
        " VALUES (:m, 'bench', 'Bench shop', 'https://shop.example.cz', '{shop_url}/?ref={code}', 0,"
        " 12, 'cs', 'Europe/Prague', :now)",
        {"m": MERCHANT_ID, "now": now.replace(tzinfo=None).isoformat(" ")},
    )
    started = time.perf_counter()
    conn.execute("BEGIN")
    params = {
        "n": n,
        "m": MERCHANT_ID,
        "now": now.replace(tzinfo=None).isoformat(" "),
        "today": today,
        "alphabet": ALPHABET,
    }
    for statement in SEED_SQL:
        conn.execute(statement, {k: v for k, v in params.items() if f":{k}" in statement})
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    seconds = time.perf_counter() - started
    rows = sum(
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("customers", "point_lots", "ledger_entries")
    )
    conn.close()
    return {
        "seconds": seconds,
        "customers_per_s": n / seconds,
        "rows": rows,
        "rows_per_s": rows / seconds,
    }


def baseline(path: Path, sql: str, params: dict[str, Any]) -> tuple[float, int]:
    conn = sqlite3.connect(path)
    started = time.perf_counter()
    count = len(conn.execute(sql, params).fetchall())
    seconds = time.perf_counter() - started
    conn.close()
    return seconds, count


async def measure(path: Path, n: int) -> dict[str, Any]:
    database = create_database(f"sqlite+aiosqlite:///{path}")
    uow = SqlUnitOfWorkFactory(database)
    try:
        started = time.perf_counter()
        count = 0
        async for batch in customers.all_contact_snapshots(
            MERCHANT_ID, uow_factory=uow, clock=SystemClock()
        ):
            count += len(batch)
        snapshot_s = time.perf_counter() - started
        if count != n:
            raise RuntimeError(f"{count} snapshots for {n} customers")

        today = datetime.now(UTC).date().isoformat()
        base_expiry_s, due = baseline(path, EXPIRY_BASELINE, {"m": MERCHANT_ID, "today": today})
        started = time.perf_counter()
        expired = await points.expire_due_points(MERCHANT_ID, uow_factory=uow, clock=SystemClock())
        expiry_s = time.perf_counter() - started
        if expired != due:
            raise RuntimeError(f"expired {expired} customers, {due} were due")
    finally:
        await database.dispose()
    return {
        "snapshot_s": snapshot_s,
        "expiry_s": expiry_s,
        "expired_customers": expired,
        "expiry_baseline_s": base_expiry_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path("var/bench"))
    args = parser.parse_args()
    n = args.customers
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / "core.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    print(f"Seeding {n:,} customers into {path} ...", flush=True)
    seeded = seed(path, n)
    print(
        f"  {seeded['seconds']:.1f} s: {seeded['customers_per_s']:,.0f} customers/s, "
        f"{seeded['rows']:,} rows at {seeded['rows_per_s']:,.0f} rows/s",
        flush=True,
    )

    # Like the snapshots, the baseline leaves out lots past their last valid day (before the
    # expiry below has run, some customers still hold such lots).
    today = datetime.now(ZoneInfo("Europe/Prague")).date().isoformat()
    base_snapshot_s, rows = baseline(path, SNAPSHOT_BASELINE, {"m": MERCHANT_ID, "today": today})
    if rows != n:
        raise RuntimeError(f"baseline saw {rows} customers")
    measured = asyncio.run(measure(path, n))

    snapshot_ratio = measured["snapshot_s"] / base_snapshot_s
    expiry_ratio = measured["expiry_s"] / measured["expiry_baseline_s"]
    print(
        f"Contact snapshots: {n / measured['snapshot_s']:,.0f}/s ({measured['snapshot_s']:.2f} s); "
        f"baseline aggregate {base_snapshot_s:.2f} s; ratio {snapshot_ratio:.2f}x (target <= 3x)"
    )
    print(
        f"Expire due points: {measured['expiry_s']:.2f} s for {measured['expired_customers']:,} customers; "
        f"baseline aggregate {measured['expiry_baseline_s']:.2f} s; ratio {expiry_ratio:.2f}x "
        f"(target < 60 s)"
    )
    report = {
        "benchmark": "core",
        "at": datetime.now(UTC).isoformat(),
        "database": "sqlite",
        "customers": n,
        "seed": seeded,
        "snapshots": {
            "seconds": measured["snapshot_s"],
            "per_s": n / measured["snapshot_s"],
            "baseline_seconds": base_snapshot_s,
            "ratio": snapshot_ratio,
        },
        "expiry": {
            "seconds": measured["expiry_s"],
            "customers": measured["expired_customers"],
            "baseline_seconds": measured["expiry_baseline_s"],
            "ratio": expiry_ratio,
        },
    }
    out = args.dir / "latest.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"Written to {out}")


if __name__ == "__main__":
    main()
