"""Benchmark of the Ecomail sync against the Ecomail emulator, with real ``ellity`` processes.

Works on the database after the nightly run, last (it changes it): what the nightly recorded
for Ecomail (the integration, contact marks, outbox items) is removed first, so the merchant
starts without an integration. The emulator runs in this process on a port of its own.
Measures:

- the backfill: ``ellity ecomail activate`` (key check, fields written and confirmed), then
  ``ellity worker --burst`` writing every customer: wall time, the API calls it made (the
  floor is one bulk call per 3000 customers), and the worker's peak RSS (``measure``);
- the latency from a points change (``POST /api/v1/customers/{id}/earn`` on ``ellity serve``
  with its in-process worker) to the emulator holding the new ``ellity_credit_num``:
  median and p95 over a series of changes;
- then the reconciliation of the list after 1 % of it drifted, and the change latency while
  it runs (``bench/reconcile.py``).

The contacts are checked against the database (every customer with an email present, a
sample's fields equal to the stored balance).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import reconcile
from benchdb import BenchDatabase, session
from measure import run_measured
from seeding import MERCHANT_ID, MERCHANT_SLUG

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.processes import free_port

API_KEY = "bench-ecomail-key"
SECRET = "bench-secret-key"
BULK = 3000
LATENCY_CHANGES = 40


def prepare(database: BenchDatabase) -> None:
    """The merchant without an integration and without the nightly's Ecomail work."""
    sql = session(database)
    try:
        for statement in (
            "DELETE FROM outbox",
            "DELETE FROM ecomail_contacts",
            "DELETE FROM ecomail_integrations",
        ):
            sql.execute(statement, {})
        sql.execute(
            "UPDATE merchants SET pre_expiry_notify = :off WHERE id = :m",
            {"off": False, "m": MERCHANT_ID},
        )
    finally:
        sql.close()


def env(database: BenchDatabase, var_dir: Path, emulator_url: str) -> dict[str, str]:
    values = {
        k: v for k, v in os.environ.items() if not k.startswith("ELLITY_") and k != "REDIS_URL"
    }
    values.update(
        ELLITY_DATABASE_URL=database.url,
        ELLITY_VAR_DIR=str(var_dir),
        ELLITY_SECRET_KEY=SECRET,
        ELLITY_ECOMAIL_API_URL=emulator_url,
    )
    return values


def ellity(*args: str, environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "ellity.cli", *args],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )


def burst(environ: dict[str, str], cwd: Path) -> tuple[float, float]:
    """``ellity worker --burst``: wall seconds and peak RSS in MB."""
    with (cwd / "burst.log").open("wb") as log:
        try:
            measured = run_measured(
                [sys.executable, "-m", "ellity.cli", "worker", "--burst"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=cwd,
            )
        except RuntimeError as failed:
            raise RuntimeError(f"{failed}; see {cwd / 'burst.log'}") from failed
    return measured["seconds"], measured["peak_rss_mb"]


def analysed(database: BenchDatabase) -> None:
    """Fresh statistics after the backfill wrote every contact row: the maintenance step ran
    while ``ecomail_contacts`` was empty, and the bench's PostgreSQL runs without autovacuum."""
    sql = session(database)
    try:
        sql.execute("ANALYZE", {})
    finally:
        sql.close()


def check_contacts(database: BenchDatabase, members: dict[str, Any]) -> int:
    sql = session(database)
    try:
        expected = int(
            sql.value(
                "SELECT count(*) FROM customers WHERE merchant_id = :m AND email IS NOT NULL",
                {"m": MERCHANT_ID},
            )
        )
        if len(members) != expected:
            raise RuntimeError(f"{len(members)} contacts in the list, {expected} customers")
        sample = sql.rows(
            "SELECT email, balance_cents FROM customers WHERE merchant_id = :m"
            " ORDER BY random() LIMIT 200",
            {"m": MERCHANT_ID},
        )
    finally:
        sql.close()
    for email, cents in sample:
        fields = members[email.lower()].custom_fields
        if fields["ellity_credit_num"] != cents // 100:
            raise RuntimeError(f"{email}: {fields['ellity_credit_num']} != {cents // 100}")
    return expected


def start_server(environ: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (cwd / "serve.log").open("wb")
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "ellity.cli", "serve", "--port", str(port)],
        env=environ,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError(f"the app did not start; see {cwd / 'serve.log'}")
        time.sleep(0.2)


def latency(base: str, token: str, members: dict[str, Any], database: BenchDatabase) -> list[float]:
    sql = session(database)
    try:
        customers = sql.rows(
            "SELECT id, email FROM customers WHERE merchant_id = :m AND email IS NOT NULL"
            " ORDER BY random() LIMIT :k",
            {"m": MERCHANT_ID, "k": LATENCY_CHANGES},
        )
    finally:
        sql.close()
    seconds = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        for number, (customer_id, email) in enumerate(customers):
            seconds.append(change(client, customer_id, email, members, f"bench-latency-{number}"))
            time.sleep(random.uniform(0.05, 0.3))  # changes arrive one by one, not in lockstep
    return seconds


def change(
    client: httpx.Client, customer_id: int, email: str, members: dict[str, Any], ref: str
) -> float:
    """Seconds from earning 10 points through the API to the emulator holding the customer's
    new ``ellity_credit_num``."""
    started = time.perf_counter()
    answer = client.post(
        f"/api/v1/customers/{customer_id}/earn",
        json={"points": "10", "order_ref": f"{ref}-{random.random()}"},
    )
    answer.raise_for_status()
    wanted = int(answer.json()["balance"].split(".")[0])
    deadline = started + 60
    while (member := members.get(email.lower())) is None or member.custom_fields.get(
        "ellity_credit_num"
    ) != wanted:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{email} did not reach the emulator within 60 s")
        time.sleep(0.002)
    return time.perf_counter() - started


def run(database: BenchDatabase, n: int, folder: Path) -> dict[str, Any]:
    prepare(database)
    var_dir = (folder / "ecomail-var").resolve()
    var_dir.mkdir(exist_ok=True)

    emulator = Emulator()
    account = emulator.add_account(API_KEY)
    list_id = account.add_list("Bench newsletter")
    with EmulatorServer(emulator, port=0) as server:
        environ = env(database, var_dir, server.url)
        print(f"Activating Ecomail for {n:,} customers ...", flush=True)
        # every customer is added (the seeded customers' consent is unknown)
        merchant = ("--merchant", MERCHANT_SLUG)
        ellity("settings", *merchant, "ecomail_add=customers", environ=environ, cwd=var_dir)
        ellity(
            "ecomail",
            "activate",
            *merchant,
            "--api-key",
            API_KEY,
            "--list-id",
            str(list_id),
            environ=environ,
            cwd=var_dir,
        )
        before = len(emulator.requests)
        seconds, rss_mb = burst(environ, var_dir)
        calls = emulator.requests[before:]
        bulk_calls = sum(1 for r in calls if "bulk" in r.path)
        members = account.lists[list_id].members
        contacts = check_contacts(database, members)
        analysed(database)  # as autovacuum would after a million new contact rows
        ideal = -(-contacts // BULK)
        print(
            f"  backfill: {contacts:,} contacts in {seconds:.1f} s ({contacts / seconds:,.0f}/s),"
            f" {len(calls)} API calls ({bulk_calls} bulk; ideal {ideal}), worker peak RSS"
            f" {rss_mb:.0f} MB; max {emulator.max_requests_in_window(API_KEY):,} requests in a"
            " minute (limit 1,000)",
            flush=True,
        )

        token = ellity("create-api-token", *merchant, environ=environ, cwd=var_dir).stdout.strip()
        process, base = start_server(environ, var_dir)
        try:
            waits = latency(base, token, members, database)
        finally:
            process.terminate()
            process.wait(timeout=30)
        waits_ms = sorted(w * 1000 for w in waits)
        p95 = waits_ms[max(0, round(0.95 * len(waits_ms)) - 1)]
        print(
            f"  change → emulator: median {statistics.median(waits_ms):.0f} ms,"
            f" p95 {p95:.0f} ms over {len(waits_ms)} changes (worker running in `ellity serve`)",
            flush=True,
        )
        reconciled = reconcile.run(
            database,
            emulator=emulator,
            server=server,
            key=API_KEY,
            list_id=list_id,
            environ=environ,
            var_dir=var_dir,
            token=token,
        )
    return {
        "customers": n,
        "backfill_s": seconds,
        "backfill_contacts": contacts,
        "backfill_api_calls": len(calls),
        "backfill_bulk_calls": bulk_calls,
        "backfill_ideal_calls": ideal,
        "backfill_worker_peak_rss_mb": rss_mb,
        "max_requests_per_minute": emulator.max_requests_in_window(API_KEY),
        "change_latency_median_ms": statistics.median(waits_ms),
        "change_latency_p95_ms": p95,
        "reconcile": reconciled,
    }
