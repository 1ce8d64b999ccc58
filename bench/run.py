"""Every benchmark on one database, each figure beside its floor: ``make bench``.

    make bench [N=100000] [DB=sqlite|postgres]
    python bench/run.py --customers N --db sqlite|postgres [--only web,export] [--keep]
    python bench/run.py --customers N --db sqlite|postgres --only nightly   (seeding + nightly)

The run makes its own databases (SQLite: files in ``var/bench/sqlite``; PostgreSQL: databases
``ellity_bench_<pid>_*`` on the server of ``ELLITY_TEST_POSTGRES_URL``) and removes them at
the end, also when a benchmark fails or the run is interrupted (Ctrl-C, SIGTERM). In order:

1. ``seeding``: N customers with their ledger, in bulk;
2. ``nightly``: the nightly run (expiry, pre-expiry notices) against ``nightly_floor`` on a
   copy; the seeded database is left as the nightly leaves it, then vacuumed/analysed;
3. ``snapshots``: all contact snapshots against reading the stored summary columns;
4. ``export``: ``ellity export`` against ``sqlite3 -csv`` / ``psql \\copy``;
5. ``web``: the customer list pages, the searches and the dashboard over HTTP, p50 / p95;
6. ``ecomail``: the backfill of every customer into the Ecomail emulator, the latency of a
   change, then the reconciliation of the list with 1 % drift (``reconcile``) and the latency
   of a change while it runs (it changes the database, so it comes last);
7. ``webhook``: the newsletter webhook's intake against ``/health``, on a fresh database.

The figures, their floors and ratios, the database and its version, N, the machine's load
average (at the start and the end, and around each step), its CPU count, the git commit and
the date go to ``var/bench/latest.json`` and ``var/bench/latest-<db>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import ecomail
import export
import nightly
import reconcile
import snapshots
import web
import webhook
from benchdb import (
    DIALECTS,
    POSTGRES,
    BenchDatabase,
    Databases,
    PostgresDatabases,
    SqliteDatabases,
    session,
)
from figures import Figure, git_state, load, machine, now, table
from seeding import seed

from ellity.domain.services.nightly import NIGHTLY_CHUNK

OPTIONAL = ("snapshots", "export", "web", "ecomail", "webhook")
NIGHTLY_ONLY = "nightly"  # ``--only nightly``: seeding and the nightly run, nothing after it
DEFAULT_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

T = TypeVar("T")


class Steps:
    """Each step's wall time and the load average before and after it."""

    def __init__(self) -> None:
        self.done: dict[str, dict[str, Any]] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        record: dict[str, Any] = {"load_before": load()}
        started = time.perf_counter()
        try:
            yield
        finally:
            record["seconds"] = time.perf_counter() - started
            record["load_after"] = load()
            self.done[name] = record

    def run(self, name: str, work: Callable[[], T]) -> T:
        with self.step(name):
            return work()


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def maintain(database: BenchDatabase) -> None:
    """After the nightly run: what autovacuum / a periodic ANALYZE would do by morning."""
    sql = session(database)
    try:
        sql.execute("VACUUM ANALYZE" if database.dialect == POSTGRES else "ANALYZE")
    finally:
        sql.close()


def figures_of(results: dict[str, Any]) -> list[Figure]:
    found = [Figure("seed", "seeding", "s", results["seed"]["seconds"], note="no floor")]
    if "nightly" in results:
        app, floor = results["nightly"]["app"], results["nightly"]["floor"]
        hand = "SQL script per chunk (nightly_floor)"
        found += [
            Figure(
                "nightly",
                "nightly run (expiry + pre-expiry)",
                "s",
                app["total_s"],
                floor["total_s"],
                hand,
            ),
            Figure("nightly_expiry", "  expiry", "s", app["expiry_s"], floor["expiry_s"], hand),
            Figure(
                "nightly_notices", "  pre-expiry notices", "s", app["notices_s"], floor["notices_s"]
            ),
            Figure(
                "nightly_longest_write",
                "  longest write transaction",
                "s",
                app["longest_write_s"],
                floor["longest_write_s"],
                target="<= 1 s",
            ),
        ]
    if "snapshots" in results:
        shots = results["snapshots"]
        found.append(
            Figure(
                "snapshots",
                "contact snapshots, all",
                "s",
                shots["app_s"],
                shots["floor_s"],
                "stored summary columns, one query",
                target="<= 3x",
            )
        )
    if "export" in results:
        out = results["export"]
        found += [
            Figure(
                "export",
                "export (ellity export)",
                "s",
                out["seconds"],
                out["floor"]["seconds"],
                out["floor"]["tool"],
                target="<= 2x",
                note=f"start-up {out['startup_seconds']:.2f} s",
            ),
            Figure(
                "export_rss",
                "  export peak RSS",
                "MB",
                out["peak_rss_mb"],
                out["floor"]["peak_rss_mb"],
                out["floor"]["tool"],
                target=f"< {export.RSS_TARGET_MB} MB",
            ),
        ]
    if "web" in results:
        pages = results["web"]["customer_list"]
        for name, page in {**pages, "dashboard": results["web"]["dashboard"]}.items():
            found.append(
                Figure(
                    f"web_{name}_p95",
                    f"web {name} p95",
                    "ms",
                    page["p95_ms"],
                    target=web.target_of(name),
                    note=f"p50 {page['median_ms']:.1f} ms",
                )
            )
        found.append(
            Figure(
                "web_dashboard_kept",
                "  dashboard kept by the nightly",
                "s",
                results["web"]["dashboard_kept_s"],
                target="no floor: once a night",
            )
        )
    if "ecomail" in results:
        sync = results["ecomail"]
        found += [
            Figure(
                "ecomail_backfill",
                "Ecomail backfill",
                "s",
                sync["backfill_s"],
                note=f"worker peak RSS {sync['backfill_worker_peak_rss_mb']:.0f} MB",
            ),
            Figure(
                "ecomail_backfill_calls",
                "  its API calls",
                "calls",
                sync["backfill_api_calls"],
                sync["backfill_ideal_calls"],
                f"one bulk call per {ecomail.BULK} contacts",
            ),
            Figure(
                "ecomail_change_latency_p95",
                "change -> Ecomail p95",
                "ms",
                sync["change_latency_p95_ms"],
                note=f"p50 {sync['change_latency_median_ms']:.0f} ms",
            ),
        ]
        if "reconcile" in sync:
            found += reconcile_figures(sync["reconcile"])
    if "webhook" in results:
        hook = results["webhook"]
        found.append(
            Figure(
                "webhook",
                "webhook intake",
                "/s",
                hook["webhook"]["per_second"],
                hook["health_per_second"],
                "GET /health on the same server",
                target=f">= {webhook.RATIO_TARGET:g} of /health (ratio <= 2)",
                rate=True,
            )
        )
    return found


def reconcile_figures(rec: dict[str, Any]) -> list[Figure]:
    members = f"{rec['members_read']:,} members"
    return [
        Figure(
            "reconcile",
            "reconciliation (1 % drift)",
            "s",
            rec["seconds"],
            rec["floor"]["seconds"],
            "reading every page, plain httpx",
            note=(
                f"{members}; reading {rec['read_phase_s']:.1f} s, sweep"
                f" {rec['sweep_phase_s']:.1f} s; repairs in the emulator"
                f" {rec['repairs_delivered_s']:.1f} s later"
            ),
        ),
        Figure(
            "reconcile_reads",
            "  its member-page reads",
            "calls",
            rec["reads"],
            rec["ideal_reads"],
            f"5 counts + one per {reconcile.PER_PAGE} members of a status",
        ),
        Figure(
            "reconcile_calls",
            "  its API calls",
            "calls",
            rec["api_calls"],
            rec["ideal_calls"],
            f"the reads + one clear per {reconcile.BULK} orphans of a page",
        ),
        Figure(
            "reconcile_rss",
            "  its peak RSS",
            "MB",
            rec["peak_rss_mb"],
            target=f"< {reconcile.RSS_TARGET_MB} MB",
        ),
        Figure(
            "reconcile_repairs",
            "  repairs",
            "repairs",
            rec["repairs_of_drift"],
            rec["drift"],
            "the drift made",
            target="ratio 1.00",
            note=(
                f"fields {rec['repairs']['fields_rewritten']}, added {rec['repairs']['added']},"
                f" cleared {rec['repairs']['cleared']}; +{rec['repairs_of_changed_members']}"
                " rewrites of members changed during the run"
            ),
        ),
        Figure(
            "reconcile_change_latency_p95",
            "  change -> Ecomail p95 during it",
            "ms",
            rec["change_latency_p95_ms"],
            target="< 2000 ms",
            note=f"p50 {rec['change_latency_median_ms']:.0f} ms, {rec['changes']} changes",
        ),
        Figure(
            "reconcile_max_per_minute",
            "  most requests in a minute",
            "calls",
            rec["max_requests_per_minute"],
            target="<= 1000",
            note="the key's requests from the run's start to its end",
        ),
    ]


def bench(databases: Databases, args: argparse.Namespace, steps: Steps) -> dict[str, Any]:
    n = args.customers
    only = set(args.only.split(",")) if args.only else set(OPTIONAL)
    work = args.work
    results: dict[str, Any] = {}
    print(f"Seeding {n:,} customers ({databases.dialect}) ...", flush=True)
    with steps.step("seed"):
        seeded = databases.create("seeded")
        results["seed"] = seed(seeded, n).figures()
    print(f"  {results['seed']['seconds']:.1f} s", flush=True)
    results["nightly"] = steps.run("nightly", lambda: nightly.run(databases, seeded, args.chunk))
    if only - {NIGHTLY_ONLY}:
        steps.run("maintenance", lambda: maintain(seeded))
    if "snapshots" in only:
        results["snapshots"] = steps.run("snapshots", lambda: snapshots.run(seeded, n))
    if "export" in only:
        results["export"] = steps.run("export", lambda: export.run(seeded, n, work))
    if "web" in only:
        results["web"] = steps.run("web", lambda: web.run(seeded, args.requests))
    if "ecomail" in only:
        results["ecomail"] = steps.run("ecomail", lambda: ecomail.run(seeded, n, work))
    if "webhook" in only:
        with steps.step("webhook"):
            fresh = databases.create("webhook")
            results["webhook"] = webhook.run(fresh)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--db", choices=sorted(DIALECTS), default="sqlite")
    choices = ", ".join((NIGHTLY_ONLY, *OPTIONAL))
    parser.add_argument("--only", help=f"a comma-separated choice of {choices}")
    parser.add_argument("--chunk", type=int, default=NIGHTLY_CHUNK)
    parser.add_argument("--requests", type=int, default=200, help="per web page")
    parser.add_argument("--dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--keep", action="store_true", help="keep the databases (debugging)")
    args = parser.parse_args()
    if args.only and not set(args.only.split(",")) <= {NIGHTLY_ONLY, *OPTIONAL}:
        parser.error(f"--only takes {choices}")
    signal.signal(signal.SIGTERM, _interrupted)
    # the Ecomail emulator's app logs through the root logger: not every request
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.dir.mkdir(parents=True, exist_ok=True)
    dialect = DIALECTS[args.db]
    databases: Databases
    if dialect == POSTGRES:
        admin = os.environ.get("ELLITY_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
        postgres = PostgresDatabases(admin)
        for name in postgres.leftovers():
            print(f"note: {name} is left from another run (DROP DATABASE {name} if it is gone)")
        databases = postgres
    else:
        databases = SqliteDatabases(args.dir / "sqlite")
    report: dict[str, Any] = {
        "database": {
            "dialect": dialect,
            "version": databases.version(),
            "settings": databases.settings(),
        },
        "customers": args.customers,
        "started_at": now(),
        "git": git_state(),
        "machine": {**machine(), "load_at_start": load()},
    }
    steps = Steps()
    started = time.perf_counter()
    args.work = Path(tempfile.mkdtemp(prefix="run-", dir=args.dir)).resolve()
    try:
        results = bench(databases, args, steps)
    except KeyboardInterrupt:
        print("interrupted; removing the bench databases", file=sys.stderr)
        raise
    finally:
        if not args.keep:
            databases.drop_all()
            shutil.rmtree(args.work, ignore_errors=True)
    report["machine"]["load_at_end"] = load()
    report["finished_at"] = now()
    report["bench_seconds"] = time.perf_counter() - started
    report["steps"] = steps.done
    figures = figures_of(results)
    report["figures"] = {figure.key: figure.as_json() for figure in figures}
    report["details"] = results
    print()
    print(
        f"{args.customers:,} customers on {dialect} {report['database']['version']}, "
        f"{report['machine']['cpus']} CPUs, load {report['machine']['load_at_start']} at the"
        f" start and {report['machine']['load_at_end']} at the end; commit"
        f" {report['git']['commit']}{' (dirty)' if report['git']['dirty'] else ''};"
        f" {report['bench_seconds']:.0f} s in all"
    )
    print(table(figures))
    text = json.dumps(report, indent=2, default=str) + "\n"
    for name in ("latest.json", f"latest-{'postgres' if dialect == POSTGRES else 'sqlite'}.json"):
        (args.dir / name).write_text(text, encoding="utf-8")
    print(f"Written to {args.dir / 'latest.json'}")


if __name__ == "__main__":
    main()
