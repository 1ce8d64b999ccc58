"""The floor of the nightly run: the same work as hand-written set-based SQL, a script per chunk.

What it does, for the bench's setting (Ecomail integration active, pre-expiry notices on,
system emails off), in the application's chunks (``nightly.NIGHTLY_CHUNK`` customers in id
order, the same ``(after, up_to]`` ranges) and one transaction per chunk:

- expiry: the chunk's open lots are read once (PostgreSQL: grouped by customer and last valid
  day; SQLite: by customer, in index order, with one index probe per customer for the points
  of the first day kept), giving per customer the points due and what the customer keeps
  (balance, next expiration day and its points); then the due lots are set to 0, an
  ``expire`` ledger entry is inserted per customer, the customer's stored summary is updated
  (balance, last change, next expiration), the customer's Ecomail contact is marked pending
  (the application's upsert) and a ``credit`` event is inserted in the outbox as the
  application writes it: a reference to the customer's ``expire`` entry and the next
  expiration after it (the payload is built when the event is delivered);
- pre-expiry notices: the notices of the chunk's customers with an email, for each last valid
  day in the window, inserted once (the primary key decides on PostgreSQL, ``NOT EXISTS`` in
  SQLite's single-writer transaction), and an ``expiry`` event per new notice.

It writes the same rows to the same tables with the same indexes, foreign keys and connection
settings as the application (the bench compares both results table by table), and it is as safe
to run beside live changes: on PostgreSQL the chunk's customers are locked first, in id order
(``FOR UPDATE``), and the amounts are read after the lock; on SQLite the chunk is one
``BEGIN IMMEDIATE`` transaction. What it leaves out: the chunk is sent as one script on
PostgreSQL (one round trip; on SQLite the statements run in this process), there is no ORM
and no Python per row, the chunk's working set is a CTE (PostgreSQL) or a temporary table in
memory (SQLite) instead of a lookup of the run's new entries, nothing is retried (a chunk that
failed would fail the run), and there is no "points changed" email (the switch is off in the
bench). Only what the chunk holds is read: each statement is bounded by the chunk's id range
or by the chunk's own rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from benchdb import BenchDatabase, PostgresSession, SqliteSession, session
from seeding import MERCHANT_ID

from ellity.domain.model.ledger import EntryKind
from ellity.domain.model.outbox import OutboxStatus, Topic

EXPIRE = EntryKind.EXPIRE.value
EVENT = Topic.ECOMAIL_EVENT.value
PENDING = OutboxStatus.PENDING.value

CHUNK_ENDS = """
SELECT id FROM (
  SELECT id, row_number() OVER (ORDER BY id) AS k, count(*) OVER () AS total
  FROM customers WHERE merchant_id = :m) AS numbered
WHERE k % :size = 0 OR k = total ORDER BY id
"""

# -- PostgreSQL -------------------------------------------------------------------------------


def _pg_decimal(cents: str) -> str:
    """``Points.decimal_string()`` of integer hundredths: ``-12.50``, ``0.05``."""
    return (
        f"(CASE WHEN {cents} < 0 THEN '-' ELSE '' END || abs({cents}) / 100 || '.'"
        f" || lpad((abs({cents}) % 100)::text, 2, '0'))"
    )


_PG_LOCK = """
WITH locked AS (
  SELECT c.id FROM customers c
  WHERE c.merchant_id = :m AND c.id > :after AND c.id <= :upto
    AND c.id IN (SELECT l.customer_id FROM point_lots l
                 WHERE l.merchant_id = :m AND l.customer_id > :after AND l.customer_id <= :upto
                   AND l.remaining_cents > 0 AND l.expires_on < :today)
  ORDER BY c.id FOR UPDATE)
SELECT count(*) FROM locked
"""

_PG_EXPIRE = f"""
WITH open AS (
  SELECT l.customer_id, l.expires_on, sum(l.remaining_cents)::bigint AS cents
  FROM point_lots l
  WHERE l.merchant_id = :m AND l.customer_id > :after AND l.customer_id <= :upto
    AND l.remaining_cents > 0
  GROUP BY l.customer_id, l.expires_on
), due AS (
  SELECT customer_id, sum(cents)::bigint AS cents FROM open WHERE expires_on < :today
  GROUP BY customer_id
), kept_days AS (
  SELECT o.customer_id, o.expires_on, o.cents,
    min(o.expires_on) OVER (PARTITION BY o.customer_id) AS first_on
  FROM open o JOIN due d ON d.customer_id = o.customer_id
  WHERE o.expires_on >= :today OR o.expires_on IS NULL
), kept AS (
  SELECT customer_id, sum(cents)::bigint AS balance, min(first_on) AS next_on,
    coalesce(sum(cents) FILTER (WHERE expires_on = first_on), 0)::bigint AS next_cents
  FROM kept_days GROUP BY customer_id
), hit AS (
  SELECT d.customer_id, d.cents, c.balance_cents - d.cents AS after,
    c.email IS NOT NULL AS has_email, coalesce(k.balance, 0) AS balance, k.next_on,
    coalesce(k.next_cents, 0) AS next_cents
  FROM due d JOIN customers c ON c.id = d.customer_id
  LEFT JOIN kept k ON k.customer_id = d.customer_id
), zeroed AS (
  UPDATE point_lots l SET remaining_cents = 0
  WHERE l.merchant_id = :m AND l.customer_id > :after AND l.customer_id <= :upto
    AND l.remaining_cents > 0 AND l.expires_on < :today
), entries AS (
  INSERT INTO ledger_entries (merchant_id, customer_id, kind, points_cents,
    balance_after_cents, at)
  SELECT :m, customer_id, '{EXPIRE}', -cents, after, :at FROM hit ORDER BY customer_id
  RETURNING id, customer_id
), summaries AS (
  UPDATE customers c SET balance_cents = h.balance, last_change_on = :today,
    last_change_cents = -h.cents, next_expiry_on = h.next_on, next_expiry_cents = h.next_cents
  FROM hit h WHERE c.id = h.customer_id
), marks AS (
  INSERT INTO ecomail_contacts (customer_id, merchant_id, pending_since, change_seq, attempts,
    in_list)
  SELECT customer_id, :m, :at, 0, 0, FALSE FROM hit WHERE has_email ORDER BY customer_id
  ON CONFLICT (customer_id) DO UPDATE SET
    pending_since = coalesce(ecomail_contacts.pending_since, excluded.pending_since),
    change_seq = ecomail_contacts.change_seq + 1, failed_at = NULL
)
INSERT INTO outbox (merchant_id, customer_id, topic, payload, status, attempts, created_at,
  available_at, entry_id, next_expiry_on, next_expiry_cents)
SELECT :m, h.customer_id, '{EVENT}', '{{}}', '{PENDING}', 0, :at, :at, e.id, h.next_on,
  h.next_cents
FROM hit h JOIN entries e ON e.customer_id = h.customer_id
WHERE h.has_email ORDER BY h.customer_id
"""

_PG_NOTICES = f"""
WITH noted AS (
  INSERT INTO expiry_notices (customer_id, expires_on, merchant_id, points_cents, created_at)
  SELECT l.customer_id, l.expires_on, :m, sum(l.remaining_cents), :at
  FROM point_lots l JOIN customers c ON c.id = l.customer_id
  WHERE l.merchant_id = :m AND l.customer_id > :after AND l.customer_id <= :upto
    AND l.remaining_cents > 0 AND l.expires_on >= :first_day AND l.expires_on <= :last_day
    AND c.email IS NOT NULL
  GROUP BY l.customer_id, l.expires_on
  ORDER BY l.customer_id, l.expires_on
  ON CONFLICT DO NOTHING
  RETURNING customer_id, expires_on, points_cents
)
INSERT INTO outbox (merchant_id, customer_id, topic, payload, status, attempts, created_at,
  available_at)
SELECT :m, n.customer_id, '{EVENT}',
  '{{"label":"expiry","value":{{"points":"' || {_pg_decimal("n.points_cents")}
  || '","expiration_date":"' || n.expires_on
  || '","balance":"' || {_pg_decimal("c.balance_cents")} || '"}}}}',
  '{PENDING}', 0, :at, :at
FROM noted n JOIN customers c ON c.id = n.customer_id
ORDER BY n.customer_id, n.expires_on
"""

# -- SQLite -----------------------------------------------------------------------------------


def _sqlite_decimal(cents: str) -> tuple[str, list[str]]:
    """A printf format and its arguments for ``Points.decimal_string()``."""
    return "%s%d.%02d", [
        f"CASE WHEN {cents} < 0 THEN '-' ELSE '' END",
        f"abs({cents}) / 100",
        f"abs({cents}) % 100",
    ]


def _sqlite_printf(*parts: str | tuple[str, list[str]]) -> str:
    """One ``printf`` of literal text and (format, arguments) pieces."""
    formats, arguments = [], []
    for part in parts:
        if isinstance(part, str):
            formats.append(part.replace("%", "%%"))
        else:
            formats.append(part[0])
            arguments += part[1]
    text = "".join(formats).replace("'", "''")
    return f"printf('{text}', {', '.join(arguments)})"


_SQLITE_TABLES = [
    """CREATE TEMP TABLE IF NOT EXISTS hit (customer_id INTEGER PRIMARY KEY, cents INTEGER,
         after INTEGER, has_email INTEGER, balance INTEGER, next_on TEXT, next_cents INTEGER)""",
    """CREATE TEMP TABLE IF NOT EXISTS noted (customer_id INTEGER, expires_on TEXT,
         cents INTEGER, balance INTEGER)""",
]


_SQLITE_EXPIRE = [
    "BEGIN IMMEDIATE",
    "DELETE FROM temp.hit",
    # one pass over the chunk's open lots (in index order): what is due, what is kept, and
    # the first day kept, whose points are then read with one probe per customer
    """INSERT INTO temp.hit
       SELECT s.customer_id, s.cents, c.balance_cents - s.cents, c.email IS NOT NULL,
         s.balance, s.next_on,
         CASE WHEN s.next_on IS NULL THEN 0 ELSE (
           SELECT sum(l.remaining_cents) FROM point_lots l
           WHERE l.customer_id = s.customer_id AND l.remaining_cents > 0
             AND l.expires_on = s.next_on) END
       FROM (SELECT customer_id,
               sum(CASE WHEN expires_on < :today THEN remaining_cents END) AS cents,
               coalesce(sum(CASE WHEN expires_on < :today THEN NULL ELSE remaining_cents END), 0)
                 AS balance,
               min(CASE WHEN expires_on < :today THEN NULL ELSE expires_on END) AS next_on
             FROM point_lots
             WHERE merchant_id = :m AND customer_id > :after AND customer_id <= :upto
               AND remaining_cents > 0
             GROUP BY customer_id) AS s
       JOIN customers c ON c.id = s.customer_id
       WHERE s.cents IS NOT NULL""",
    """UPDATE point_lots SET remaining_cents = 0
       WHERE merchant_id = :m AND customer_id > :after AND customer_id <= :upto
         AND remaining_cents > 0 AND expires_on < :today""",
    f"""INSERT INTO ledger_entries (merchant_id, customer_id, kind, points_cents,
         balance_after_cents, at)
       SELECT :m, customer_id, '{EXPIRE}', -cents, after, :at FROM temp.hit
       ORDER BY customer_id""",
    """UPDATE customers SET balance_cents = h.balance, last_change_on = :today,
         last_change_cents = -h.cents, next_expiry_on = h.next_on,
         next_expiry_cents = h.next_cents
       FROM temp.hit AS h
       WHERE customers.id > :after AND customers.id <= :upto AND customers.id = h.customer_id""",
    """INSERT INTO ecomail_contacts (customer_id, merchant_id, pending_since, change_seq,
         attempts, in_list)
       SELECT customer_id, :m, :at, 0, 0, 0 FROM temp.hit WHERE has_email ORDER BY customer_id
       ON CONFLICT (customer_id) DO UPDATE SET
         pending_since = coalesce(ecomail_contacts.pending_since, excluded.pending_since),
         change_seq = ecomail_contacts.change_seq + 1, failed_at = NULL""",
    f"""INSERT INTO outbox (merchant_id, customer_id, topic, payload, status, attempts,
         created_at, available_at, entry_id, next_expiry_on, next_expiry_cents)
       SELECT :m, h.customer_id, '{EVENT}', '{{}}', '{PENDING}', 0, :at, :at, e.id, h.next_on,
         h.next_cents
       FROM temp.hit AS h
       JOIN ledger_entries AS e INDEXED BY ix_ledger_entries_expiry_customer_at_points
         ON e.customer_id = h.customer_id AND e.kind = '{EXPIRE}' AND e.at = :at
       WHERE h.has_email AND e.customer_id > :after AND e.customer_id <= :upto
       ORDER BY h.customer_id""",
    "COMMIT",
]

_SQLITE_NOTICES = [
    "BEGIN IMMEDIATE",
    "DELETE FROM temp.noted",
    """INSERT INTO temp.noted
       SELECT l.customer_id, l.expires_on, sum(l.remaining_cents), c.balance_cents
       FROM point_lots l JOIN customers c ON c.id = l.customer_id
       WHERE c.merchant_id = :m AND l.customer_id > :after AND l.customer_id <= :upto
         AND l.remaining_cents > 0 AND l.expires_on >= :first_day AND l.expires_on <= :last_day
         AND c.email IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM expiry_notices n
                         WHERE n.customer_id = l.customer_id AND n.expires_on = l.expires_on)
       GROUP BY l.customer_id, l.expires_on""",
    """INSERT INTO expiry_notices (customer_id, expires_on, merchant_id, points_cents, created_at)
       SELECT customer_id, expires_on, :m, cents, :at FROM temp.noted
       ORDER BY customer_id, expires_on""",
    f"""INSERT INTO outbox (merchant_id, customer_id, topic, payload, status, attempts,
         created_at, available_at)
       SELECT :m, customer_id, '{EVENT}', {
        _sqlite_printf(
            '{"label":"expiry","value":{"points":"',
            _sqlite_decimal("cents"),
            '","expiration_date":"',
            ("%s", ["expires_on"]),
            '","balance":"',
            _sqlite_decimal("balance"),
            '"}}',
        )
    }, '{PENDING}', 0, :at, :at
       FROM temp.noted ORDER BY customer_id, expires_on""",
    "COMMIT",
]


@dataclass(frozen=True)
class FloorRun:
    expiry_s: float
    notices_s: float
    chunks: int
    longest_write_s: float

    @property
    def total_s(self) -> float:
        return self.expiry_s + self.notices_s


def run_floor(
    database: BenchDatabase,
    *,
    at: datetime,
    today: date,
    first_day: date,
    last_day: date,
    chunk: int,
) -> FloorRun:
    """Expire what is due on ``today`` and note the expirations from ``first_day`` to
    ``last_day``, as the application's nightly run at ``at`` does; timed apart."""
    sql = session(database)
    params: dict[str, Any] = {
        "m": MERCHANT_ID,
        "size": chunk,
        "at": at,
        "today": today,
        "first_day": first_day,
        "last_day": last_day,
    }
    writes: list[float] = []
    try:
        if isinstance(sql, SqliteSession):
            sql.script(_SQLITE_TABLES, params)

        def chunks() -> list[tuple[int, int]]:
            ends = [int(row[0]) for row in sql.rows(CHUNK_ENDS, params)]
            return list(zip([0, *ends[:-1]], ends, strict=True))

        def each_chunk(postgres: list[str], sqlite: list[str]) -> None:
            for after, upto in chunks():
                started = time.perf_counter()
                values = {**params, "after": after, "upto": upto}
                if isinstance(sql, PostgresSession):
                    sql.script(["BEGIN", *postgres, "COMMIT"], values)
                else:
                    sql.script(sqlite, values)
                writes.append(time.perf_counter() - started)

        started = time.perf_counter()
        each_chunk([_PG_LOCK, _PG_EXPIRE], _SQLITE_EXPIRE)
        expiry_s = time.perf_counter() - started
        count = len(writes)
        started = time.perf_counter()
        each_chunk([_PG_NOTICES], _SQLITE_NOTICES)
        notices_s = time.perf_counter() - started
    finally:
        sql.close()
    return FloorRun(expiry_s, notices_s, count, max(writes, default=0.0))
