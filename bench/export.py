"""Benchmark of the customer export: ``ellity export`` in a subprocess against ``sqlite3 -csv``.

    make bench                              # runs bench/core.py first, then this
    python bench/export.py --customers N

Works on the database bench/core.py seeded (``var/bench/core.db``, merchant ``bench``); seeds
it the same way only when it is missing or holds another number of customers. Measures:

- the real command, ``python -m ellity.cli export --merchant bench --out FILE``, in a
  subprocess: wall time (interpreter start and imports included) as rows per second, and
  the process's peak RSS (the kernel's high-water mark, ``wait4`` rusage ``ru_maxrss``);
- a baseline: ``/usr/bin/sqlite3 -csv`` dumping the same columns of the same customers from
  the same file (stored values, the display texts approximated in SQL), to a file.

The exported file is checked (header, one row per customer, valid CSV). Figures are printed
and merged into ``var/bench/latest.json`` under ``"export"``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import MERCHANT_ID, seed

from ellity.adapters.sql import migrate
from ellity.domain.services.export import EXPORT_COLUMNS

SQLITE3 = "/usr/bin/sqlite3"
RATIO_TARGET = 2.0
RSS_TARGET_MB = 200

BASELINE_SQL = f"""
SELECT c.email, c.first_name, c.last_name,
  c.balance_cents / 100.0 AS ellity_credit, c.balance_cents / 100 AS ellity_credit_num,
  CASE WHEN c.registered THEN '' ELSE coalesce(c.pin, '') END AS ellity_pin,
  CASE WHEN c.registered THEN 'registered' ELSE 'anonymous' END AS ellity_registered,
  c.next_expiry_on AS ellity_next_expiration_date,
  c.next_expiry_cents / 100.0 AS ellity_next_expiration_value,
  c.next_expiry_cents / 100 AS ellity_next_expiration_value_num,
  c.last_change_on AS ellity_last_change_date,
  c.last_change_cents / 100.0 AS ellity_last_change_value,
  c.referral_code AS ellity_referral_code,
  m.shop_url || '/?ref=' || c.referral_code AS ellity_referral_link
FROM customers c JOIN merchants m ON m.id = c.merchant_id
WHERE c.merchant_id = {MERCHANT_ID} ORDER BY c.id
"""


def customers_in(path: Path) -> int | None:
    if not path.is_file():
        return None
    conn = sqlite3.connect(path)
    try:
        found = conn.execute(
            "SELECT count(*) FROM customers WHERE merchant_id = ?", (MERCHANT_ID,)
        ).fetchone()
        return int(found[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def run_measured(command: list[str], *, stdout: Any, env: dict[str, str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one child process, which must succeed."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=errors, env=env)  # noqa: S603
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")
            raise RuntimeError(f"{command[0]} failed ({process.returncode}): {message}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}  # ru_maxrss is in KiB


def check_export(path: Path, n: int) -> None:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = sum(1 for row in reader if len(row) == len(EXPORT_COLUMNS))
    if header != list(EXPORT_COLUMNS) or rows != n:
        raise RuntimeError(f"the export has {rows} complete rows for {n} customers")


def startup_seconds(env: dict[str, str]) -> float:
    """Interpreter start and the command's imports, the fixed part of every export."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ellity.cli"], env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--keep", action="store_true", help="keep the exported files")
    args = parser.parse_args()
    n = args.customers
    args.dir.mkdir(parents=True, exist_ok=True)
    db = (args.dir / "core.db").resolve()
    url = f"sqlite+aiosqlite:///{db}"

    if customers_in(db) != n:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        print(f"Seeding {n:,} customers into {db} (as bench/core.py does) ...", flush=True)
        seed(db, n)
    migrate.upgrade(url)  # the command expects the current schema

    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}
    env.update(ELLITY_DATABASE_URL=url, ELLITY_SECRET_KEY="bench, not a secret")
    out = args.dir / "export.csv"
    baseline_out = args.dir / "export-baseline.csv"

    print(f"Exporting {n:,} customers with `ellity export` ...", flush=True)
    measured = run_measured(
        [sys.executable, "-m", "ellity.cli", "export", "--merchant", "bench", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        env=env,
    )
    check_export(out, n)
    size_mb = out.stat().st_size / 1e6
    with baseline_out.open("wb") as sink:
        baseline = run_measured(
            [SQLITE3, "-readonly", "-csv", "-header", str(db), BASELINE_SQL], stdout=sink, env=env
        )
    start_s = startup_seconds(env)
    if not args.keep:
        out.unlink()
        baseline_out.unlink()

    rate = n / measured["seconds"]
    base_rate = n / baseline["seconds"]
    ratio = measured["seconds"] / baseline["seconds"]
    print(
        f"Export: {rate:,.0f} rows/s ({measured['seconds']:.2f} s, {size_mb:,.1f} MB, of which "
        f"~{start_s:.2f} s interpreter start and imports); peak RSS "
        f"{measured['peak_rss_mb']:.0f} MB (target < {RSS_TARGET_MB} MB at 1M)"
    )
    print(
        f"Baseline sqlite3 -csv: {base_rate:,.0f} rows/s ({baseline['seconds']:.2f} s, peak RSS "
        f"{baseline['peak_rss_mb']:.0f} MB); ratio {ratio:.2f}x (target <= {RATIO_TARGET:g}x)"
    )

    report_path = args.dir / "latest.json"
    report: dict[str, Any] = {}
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
    report["export"] = {
        "at": datetime.now(UTC).isoformat(),
        "customers": n,
        "seconds": measured["seconds"],
        "rows_per_s": rate,
        "startup_seconds": start_s,
        "peak_rss_mb": measured["peak_rss_mb"],
        "file_mb": size_mb,
        "baseline": {
            "tool": "sqlite3 -csv",
            "seconds": baseline["seconds"],
            "rows_per_s": base_rate,
            "peak_rss_mb": baseline["peak_rss_mb"],
        },
        "ratio": ratio,
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"Merged into {report_path}")


if __name__ == "__main__":
    main()
