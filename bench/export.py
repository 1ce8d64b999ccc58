"""Benchmark of the customer export: ``ellity export`` in a subprocess against the database's
own CSV tool.

Works on the database after the nightly run (every stored summary is the answer). Measures:

- the real command, ``python -m ellity.cli export --merchant bench --out FILE``, in a
  subprocess: wall time (interpreter start and imports included) as rows per second, and
  the process's peak RSS (the kernel's high-water mark, ``measure``);
- the floor: ``sqlite3 -csv`` / ``psql -c "\\copy (SELECT ...) TO STDOUT CSV"`` writing the
  same columns of the same customers in id order to a file (stored values; the display texts
  approximated in SQL), timed the same way.

The exported file is checked (header, one row per customer, valid CSV).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchdb import POSTGRES, BenchDatabase
from measure import run_measured
from seeding import MERCHANT_ID, MERCHANT_SLUG

from ellity.domain.services.export import EXPORT_COLUMNS

SQLITE3 = "/usr/bin/sqlite3"
PSQL = "/usr/bin/psql"
RATIO_TARGET = 2.0
RSS_TARGET_MB = 200


def floor_sql(dialect: str) -> str:
    """The export's columns from the stored values, on one line (``\\copy`` needs that)."""
    decimal = "round({} / 100.0, 2)" if dialect == POSTGRES else "{} / 100.0"
    return " ".join(
        f"""
SELECT c.email, c.first_name, c.last_name,
  {decimal.format("c.balance_cents")} AS ellity_credit, c.balance_cents / 100 AS ellity_credit_num,
  CASE WHEN c.registered THEN '' ELSE coalesce(c.pin, '') END AS ellity_pin,
  CASE WHEN c.registered THEN 'registered' ELSE 'anonymous' END AS ellity_registered,
  c.next_expiry_on AS ellity_next_expiration_date,
  {decimal.format("c.next_expiry_cents")} AS ellity_next_expiration_value,
  c.next_expiry_cents / 100 AS ellity_next_expiration_value_num,
  c.last_change_on AS ellity_last_change_date,
  {decimal.format("c.last_change_cents")} AS ellity_last_change_value,
  c.referral_code AS ellity_referral_code,
  m.shop_url || '/?ref=' || c.referral_code AS ellity_referral_link
FROM customers c JOIN merchants m ON m.id = c.merchant_id
WHERE c.merchant_id = {MERCHANT_ID} ORDER BY c.id
""".split()
    )


def floor_command(database: BenchDatabase) -> list[str]:
    sql = floor_sql(database.dialect)
    if database.dialect == POSTGRES:
        return [
            PSQL,
            "--no-psqlrc",
            "--quiet",
            database.libpq_url,
            "-c",
            f"\\copy ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)",
        ]
    return [SQLITE3, "-readonly", "-csv", "-header", str(database.path), sql]


def check_export(path: Path, n: int) -> None:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = sum(1 for row in reader if len(row) == len(EXPORT_COLUMNS))
    if header != list(EXPORT_COLUMNS) or rows != n:
        raise RuntimeError(f"the export has {rows} complete rows for {n} customers")


def startup_seconds(env: dict[str, str]) -> float:
    """Interpreter start and the command's imports (``ellity.cli`` imports the export's
    module only for the export), the fixed part of every export."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import ellity.cli, ellity.cli_export"], env=env, check=True
    )
    return time.perf_counter() - started


def run(database: BenchDatabase, n: int, folder: Path, *, keep: bool = False) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}
    env.update(ELLITY_DATABASE_URL=database.url, ELLITY_SECRET_KEY="bench, not a secret")
    out = folder / "export.csv"
    floor_out = folder / "export-floor.csv"

    print(f"Exporting {n:,} customers with `ellity export` ...", flush=True)
    measured = run_measured(
        [
            sys.executable,
            "-m",
            "ellity.cli",
            "export",
            "--merchant",
            MERCHANT_SLUG,
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        env=env,
    )
    check_export(out, n)
    size_mb = out.stat().st_size / 1e6
    with floor_out.open("wb") as sink:
        floor = run_measured(floor_command(database), stdout=sink, env=env)
    floor_rows = sum(1 for _ in floor_out.open(encoding="utf-8")) - 1
    if floor_rows != n:
        raise RuntimeError(f"the floor wrote {floor_rows} rows for {n} customers")
    floor_mb = floor_out.stat().st_size / 1e6
    start_s = startup_seconds(env)
    if not keep:
        out.unlink()
        floor_out.unlink()
    return {
        "customers": n,
        "seconds": measured["seconds"],
        "rows_per_s": n / measured["seconds"],
        "startup_seconds": start_s,
        "peak_rss_mb": measured["peak_rss_mb"],
        "rss_target_mb": RSS_TARGET_MB,
        "file_mb": size_mb,
        "floor": {
            "tool": "psql \\copy" if database.dialect == POSTGRES else "sqlite3 -csv",
            "seconds": floor["seconds"],
            "rows_per_s": n / floor["seconds"],
            "peak_rss_mb": floor["peak_rss_mb"],
            "file_mb": floor_mb,
        },
        "ratio_target": RATIO_TARGET,
    }
