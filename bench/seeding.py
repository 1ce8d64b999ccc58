"""The one seed of every benchmark: a merchant and N customers with a realistic ledger, in bulk.

Written set-based for each database (SQLite: a recursive CTE; PostgreSQL:
``generate_series``), the same data on both. Customer ``n`` (ids 1..N) has:

- three earned lots, ``d1`` in 400..699, ``d2`` in 200..399 and ``d3`` in 0..149 days ago
  (earned at noon UTC, valid 12 months: the first lot is always past its validity, the
  second for some customers), of ``a1``, ``a2`` and ``a3`` hundredths;
- for every second customer a FIFO spend ten days after the second lot that empties the
  first lot and half of the second;
- the ledger entries of all that (``earn`` with an order reference, ``spend``);
- the columns the application keeps on the customer row: email and its key, names and their
  search keys (``lower``: the names are ASCII), a shop customer id, registration (every
  third), a PIN (the others), a referral code, and the stored ledger summary as the
  application leaves it after the last change: balance, next expiration (day and points) and
  last change (day and points), counting the lots past their validity the nightly run has not
  expired yet.

All in one transaction. On PostgreSQL the three tables' secondary indexes are dropped for the
load and built again at its end, and the foreign-key triggers are skipped (the rows are
consistent by construction; ``session_replication_role``, so the admin user must be a
superuser): three times faster than inserting through them. On SQLite the seeding connection
runs without a rollback journal and with a 1 GiB page cache. Then PostgreSQL's id sequences
are moved past the seeded ids, and the statistics gathered
(``VACUUM ANALYZE`` on PostgreSQL, which also marks the pages all-visible as autovacuum would
in production; ``ANALYZE`` on SQLite).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from benchdb import POSTGRES, BenchDatabase, session

from ellity.domain.model.ids import MerchantId
from ellity.domain.model.referral import ALPHABET

MERCHANT_ID = MerchantId(1)
MERCHANT_SLUG = "bench"
SHOP_URL = "https://shop.example.cz"

MERCHANT_SQL = """
INSERT INTO merchants (id, slug, name, shop_url, referral_link_template, referral_bonus_cents,
  validity_months, locale, timezone, created_at)
VALUES (:m, :slug, 'Bench shop', :shop_url, '{shop_url}/?ref={code}', 0, 12, 'cs',
  'Europe/Prague', :now)
"""


def _code(bits: str) -> str:
    """The referral code of customer ``n``: 8 characters of ALPHABET from n's bits."""
    return " || ".join(
        f"substr(:alphabet, {bits.format(shift=shift)} + 1, 1)" for shift in range(0, 40, 5)
    )


# What the customer row keeps: with e2 < e3 always, the next expiration is the first lot's
# when it still holds points, else the second's (and the lots of that day are summed).
_SUMMARY = """
  r1 + r2 + a3 AS balance,
  (CASE WHEN r1 > 0 AND e1 = next_on THEN r1 ELSE 0 END)
    + (CASE WHEN e2 = next_on THEN r2 ELSE 0 END)
    + (CASE WHEN e3 = next_on THEN a3 ELSE 0 END) AS next_cents
"""

_CUSTOMER_COLUMNS = """id, merchant_id, email, email_key, email_domain_key, first_name, last_name,
  first_name_key,
  last_name_key, shop_customer_id, registered, pin, referral_code, created_at, updated_at,
  balance_cents, next_expiry_on, next_expiry_cents, last_change_on, last_change_cents"""

SQLITE_SEED = [
    """CREATE TEMP TABLE plan(n INTEGER PRIMARY KEY, d1, d2, d3, a1, a2, a3, spends,
         r1, r2, e1, e2, e3)""",
    """WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :n),
       p AS (SELECT n, 400 + (n * 7) % 300 AS d1, 200 + (n * 13) % 200 AS d2, (n * 17) % 150 AS d3,
         1000 + (n * 31) % 9000 AS a1, 1000 + (n * 37) % 9000 AS a2, 100 + (n * 41) % 5000 AS a3,
         n % 2 = 0 AS spends FROM s)
       INSERT INTO plan SELECT n, d1, d2, d3, a1, a2, a3, spends,
         CASE WHEN spends THEN 0 ELSE a1 END, CASE WHEN spends THEN a2 - a2 / 2 ELSE a2 END,
         date(:today, '-' || d1 || ' days', '+12 months'),
         date(:today, '-' || d2 || ' days', '+12 months'),
         date(:today, '-' || d3 || ' days', '+12 months') FROM p""",
    f"""INSERT INTO customers ({_CUSTOMER_COLUMNS})
       SELECT n, :m, 'customer' || n || '@example.cz', 'customer' || n || '@example.cz',
         'example.cz',
         'First' || n, 'Last' || n, lower('First' || n), lower('Last' || n), 'shop-' || n,
         n % 3 = 0, CASE WHEN n % 3 = 0 THEN NULL ELSE printf('%06d', (n * 7919) % 1000000) END,
         {_code("((n >> {shift}) & 31)")}, :now, :now,
         balance, next_on, next_cents, date(:today, '-' || d3 || ' days'), a3
       FROM (SELECT *, {_SUMMARY} FROM (
         SELECT *, coalesce(CASE WHEN r1 > 0 THEN e1 END, e2) AS next_on FROM plan))
       ORDER BY n""",
    """INSERT INTO point_lots (merchant_id, customer_id, earned_at, expires_on, amount_cents,
         remaining_cents)
       SELECT :m, n, datetime(:today, '-' || d || ' days', '+12 hours'), e, a, r FROM (
         SELECT n, 1 AS k, d1 AS d, e1 AS e, a1 AS a, r1 AS r FROM plan
         UNION ALL SELECT n, 2, d2, e2, a2, r2 FROM plan
         UNION ALL SELECT n, 3, d3, e3, a3, a3 FROM plan) ORDER BY n, k""",
    """INSERT INTO ledger_entries (merchant_id, customer_id, kind, points_cents,
         balance_after_cents, at, order_ref)
       SELECT :m, n, kind, cents, after, datetime(:today, '-' || d || ' days', '+12 hours'), ref
       FROM (
         SELECT n, 1 AS k, 'earn' AS kind, a1 AS cents, a1 AS after, d1 AS d,
           'order-' || n || '-1' AS ref FROM plan
         UNION ALL SELECT n, 2, 'earn', a2, a1 + a2, d2, 'order-' || n || '-2' FROM plan
         UNION ALL SELECT n, 3, 'spend', -(a1 + a2 / 2), a2 - a2 / 2, d2 - 10, NULL FROM plan
           WHERE spends
         UNION ALL SELECT n, 4, 'earn', a3, r1 + r2 + a3, d3, 'order-' || n || '-3' FROM plan)
       ORDER BY n, k""",
    "DROP TABLE plan",
]

# The tables' secondary indexes are dropped for the load and built again afterwards (in the
# same transaction), and the foreign-key triggers skipped (the rows are consistent by
# construction): three times faster than inserting through them.
POSTGRES_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename IN ('customers', 'point_lots', 'ledger_entries')
  AND indexname NOT IN (SELECT conname FROM pg_constraint)
ORDER BY indexname
"""

POSTGRES_SEED = [
    "SET LOCAL work_mem = '256MB'",
    "SET LOCAL maintenance_work_mem = '512MB'",
    "SET LOCAL session_replication_role = replica",
    """CREATE TEMP TABLE plan ON COMMIT DROP AS
       SELECT *, (:today - d1 + interval '12 months')::date AS e1,
         (:today - d2 + interval '12 months')::date AS e2,
         (:today - d3 + interval '12 months')::date AS e3
       FROM (SELECT n, d1, d2, d3, a1, a2, a3, spends,
           CASE WHEN spends THEN 0 ELSE a1 END AS r1,
           CASE WHEN spends THEN a2 - a2 / 2 ELSE a2 END AS r2
         FROM (SELECT n, (400 + (n * 7) % 300)::int AS d1, (200 + (n * 13) % 200)::int AS d2,
             ((n * 17) % 150)::int AS d3, 1000 + (n * 31) % 9000 AS a1,
             1000 + (n * 37) % 9000 AS a2, 100 + (n * 41) % 5000 AS a3, n % 2 = 0 AS spends
           FROM generate_series(1::bigint, :n) AS n) AS p) AS q""",
    f"""INSERT INTO customers ({_CUSTOMER_COLUMNS})
       SELECT n, :m, 'customer' || n || '@example.cz', 'customer' || n || '@example.cz',
         'example.cz',
         'First' || n, 'Last' || n, lower('First' || n), lower('Last' || n), 'shop-' || n,
         n % 3 = 0, CASE WHEN n % 3 = 0 THEN NULL ELSE lpad(((n * 7919) % 1000000)::text, 6, '0') END,
         {_code("((n >> {shift}) & 31)::int")}, :now, :now,
         balance, next_on, next_cents, :today - d3, a3
       FROM (SELECT *, {_SUMMARY} FROM (
         SELECT *, coalesce(CASE WHEN r1 > 0 THEN e1 END, e2) AS next_on FROM plan) AS p) AS s
       ORDER BY n""",
    """INSERT INTO point_lots (merchant_id, customer_id, earned_at, expires_on, amount_cents,
         remaining_cents)
       SELECT :m, n, ((:today - lot.d)::timestamp + interval '12 hours') AT TIME ZONE 'UTC',
         lot.e, lot.a, lot.r
       FROM plan CROSS JOIN LATERAL (VALUES (1, d1, e1, a1, r1), (2, d2, e2, a2, r2),
         (3, d3, e3, a3, a3)) AS lot(k, d, e, a, r)
       ORDER BY n, lot.k""",
    """INSERT INTO ledger_entries (merchant_id, customer_id, kind, points_cents,
         balance_after_cents, at, order_ref)
       SELECT :m, n, e.kind, e.cents, e.after,
         ((:today - e.d)::timestamp + interval '12 hours') AT TIME ZONE 'UTC', e.ref
       FROM plan CROSS JOIN LATERAL (VALUES
         (1, 'earn', a1, a1, d1, 'order-' || n || '-1'),
         (2, 'earn', a2, a1 + a2, d2, 'order-' || n || '-2'),
         (3, 'spend', -(a1 + a2 / 2), a2 - a2 / 2, d2 - 10, NULL),
         (4, 'earn', a3, r1 + r2 + a3, d3, 'order-' || n || '-3')) AS e(k, kind, cents, after, d, ref)
       WHERE e.k <> 3 OR spends
       ORDER BY n, e.k""",
    "SELECT setval(pg_get_serial_sequence('customers', 'id'), :n)",
    "SELECT setval(pg_get_serial_sequence('merchants', 'id'), :m)",
]


@dataclass(frozen=True)
class Seeded:
    customers: int
    rows: int
    seconds: float  # the inserts, in one transaction
    statistics_seconds: float  # VACUUM ANALYZE / ANALYZE afterwards

    def figures(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "rows": self.rows,
            "seconds": self.seconds,
            "statistics_seconds": self.statistics_seconds,
            "customers_per_s": self.customers / self.seconds,
            "rows_per_s": self.rows / self.seconds,
        }


def seed(database: BenchDatabase, n: int, *, today: date | None = None) -> Seeded:
    """Fill ``database`` (migrated, empty) with the merchant and ``n`` customers."""
    now = datetime.now(UTC)
    params: dict[str, Any] = {
        "n": n,
        "m": MERCHANT_ID,
        "slug": MERCHANT_SLUG,
        "shop_url": SHOP_URL,
        "now": now,
        "today": today or now.date(),
        "alphabet": ALPHABET,
    }
    sql = session(database)
    postgres = database.dialect == POSTGRES
    try:
        if not postgres:  # no rollback journal and a large cache while seeding
            sql.execute(
                "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-1048576"
            )
        sql.execute(MERCHANT_SQL, params)
        started = time.perf_counter()
        if postgres:
            sql.execute("BEGIN")
            indexes = sql.rows(POSTGRES_INDEXES)
            drop = [f'DROP INDEX "{name}"' for name, _ in indexes]
            sql.script([*drop, *POSTGRES_SEED, *(made for _, made in indexes), "COMMIT"], params)
        else:
            sql.script(["BEGIN", *SQLITE_SEED, "COMMIT"], params)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        sql.execute("VACUUM ANALYZE" if postgres else "ANALYZE")
        statistics_seconds = time.perf_counter() - started
        if not postgres:
            sql.execute("PRAGMA journal_mode=WAL")
        rows = sum(
            int(sql.value(f"SELECT count(*) FROM {table}"))
            for table in ("customers", "point_lots", "ledger_entries")
        )
    finally:
        sql.close()
    return Seeded(n, rows, seconds, statistics_seconds)
