"""Benchmark of the reconciliation of the Ecomail list, after the backfill (``bench/ecomail.py``).

Runs while the emulator holds every customer as a member. In order:

1. Drift: exactly 1 % of the members (a seeded random sample), 60 % with ``ellity_credit``
   edited by hand, 20 % deleted from the list (the merchant's ``ecomail_add=customers`` wants
   them back), 20 % orphans: new members whom no customer has, carrying Ellity's values.
   Expected repairs: fields rewritten, added and cleared in those numbers, drift in all.
2. *Floor*: every member page of the list read with a plain httpx client against the emulator
   server, the requests the run makes (the first page of each status with one member, to
   count; then each status's pages of 5 000), each answer's JSON decoded and nothing more
   done with it: wall time and requests.
3. ``ellity serve`` (its in-process worker delivers the repairs) and, in a thread,
   ``ellity ecomail reconcile --merchant bench`` under ``run_measured`` (wall time, peak RSS;
   its output in ``reconcile.log``). While it runs, points changes through the API, one at a
   time, each timed until the emulator holds the new ``ellity_credit_num`` (at least
   ``MIN_CHANGES``, more as long as the run goes on): p50 and p95.
4. The run's row (``reconciliation_runs``): members checked and expected, API calls, each
   kind of repair; each must equal its expected count. The requests Ecomail saw from the run's
   start to its end: the most in any minute (limit 1 000) and the member-page reads. Then the
   repairs must reach the emulator (members back, fields rewritten, orphans cleared): the
   time that takes after the run.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from benchdb import BenchDatabase, session
from measure import run_measured
from seeding import MERCHANT_ID, MERCHANT_SLUG

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ecomail_emulator import Emulator, EmulatorServer

SEED = 20261207
DRIFT_SHARE = 0.01
PER_PAGE = 5000  # ports.marketing.MEMBERS_PER_PAGE
BULK = 3000  # ports.marketing.BULK_LIMIT: one bulk update clears up to this many members
#: the member-page status filters, in the run's order (domain.model.reconciliation.READ_ORDER)
STATUSES = ("subscribed", "unsubscribed", "not_confirmed", "bounced", "complained")
MIN_CHANGES = 20
RSS_TARGET_MB = 200
EDITED = "drift"
ORPHAN_FIELDS = {"ellity_credit": "5", "ellity_credit_num": 5}


def drift(emulator: Emulator, list_id: int, emails: Sequence[str]) -> dict[str, list[str]]:
    """Change exactly 1 % of the members behind Ellity's back; the emails of each kind."""
    size = round(len(emails) * DRIFT_SHARE)
    fields, deleted = round(size * 0.6), round(size * 0.2)
    chosen = random.Random(SEED).sample(list(emails), fields + deleted)
    kinds = {
        "fields": chosen[:fields],
        "deleted": chosen[fields:],
        "orphans": [f"orphan{i}@bench-orphans.example" for i in range(size - fields - deleted)],
    }
    for email in kinds["fields"]:
        emulator.edit_field(list_id, email, "ellity_credit", EDITED)
    for email in kinds["deleted"]:
        emulator.delete_member(list_id, email)
    for email in kinds["orphans"]:
        emulator.add_member(list_id, email, custom_fields=ORPHAN_FIELDS)
    return kinds


def read_every_page(url: str, key: str, list_id: int, orphans: set[str]) -> dict[str, Any]:
    """The floor: the run's reads with a plain client. Also the ideal count of the run's
    calls: 5 counting reads, each status's pages, one clearing call per 3 000 orphans of a
    page."""
    requests = 0
    members: dict[str, int] = {}
    clears = 0
    started = time.perf_counter()
    with httpx.Client(base_url=url, headers={"key": key}, timeout=120) as client:

        def page(status: str, number: int, per_page: int) -> dict[str, Any]:
            nonlocal requests
            requests += 1
            answer = client.get(
                f"/lists/{list_id}/subscribers",
                params={"status": status, "page": number, "per_page": per_page},
            )
            answer.raise_for_status()
            body: dict[str, Any] = answer.json()
            return body

        for status in STATUSES:
            members[status] = int(page(status, 1, 1)["total"])
        for status in STATUSES:
            number = 1
            while True:
                body = page(status, number, PER_PAGE)
                found = sum(1 for m in body["data"] if m["email"] in orphans)
                clears += -(-found // BULK)
                if number >= body["last_page"] or not body["data"]:
                    break
                number += 1
    seconds = time.perf_counter() - started
    ideal_reads = len(STATUSES) + sum(-(-count // PER_PAGE) for count in members.values())
    return {
        "seconds": seconds,
        "requests": requests,
        "members": members,
        "ideal_reads": ideal_reads,
        "ideal_clear_calls": clears,
    }


def most_in_a_minute(times: Sequence[float]) -> int:
    most = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= 60.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def reconcile_measured(environ: dict[str, str], cwd: Path, out: dict[str, Any]) -> None:
    """``ellity ecomail reconcile`` under ``run_measured``; its figures or its failure in
    ``out``."""
    try:
        with (cwd / "reconcile.log").open("wb") as log:
            out.update(
                run_measured(
                    [
                        sys.executable,
                        "-m",
                        "ellity.cli",
                        "ecomail",
                        "reconcile",
                        "--merchant",
                        MERCHANT_SLUG,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=environ,
                    cwd=cwd,
                )
            )
        out["ended"] = time.monotonic()
    except Exception as failed:  # noqa: BLE001 - handed to the main thread
        lines = (cwd / "reconcile.log").read_text(errors="replace").splitlines()[-15:]
        tail = [line if len(line) < 400 else f"{line[:400]} ..." for line in lines]
        out["failed"] = f"{failed}; the end of {cwd / 'reconcile.log'}:\n" + "\n".join(tail)


def changes_while(
    running: threading.Thread,
    base: str,
    token: str,
    members: dict[str, Any],
    candidates: list[tuple[int, str]],
) -> tuple[list[float], set[str]]:
    """Points changes one at a time while ``running`` is alive (at least ``MIN_CHANGES``)."""
    from ecomail import change  # noqa: PLC0415 - the module imports this one

    seconds: list[float] = []
    changed: set[str] = set()
    picker = random.Random(SEED + 1)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        while running.is_alive() or len(seconds) < MIN_CHANGES:
            customer_id, email = picker.choice(candidates)
            seconds.append(change(client, customer_id, email, members, f"bench-rec-{len(seconds)}"))
            changed.add(email.lower())
            time.sleep(random.uniform(0.05, 0.3))  # changes arrive one by one, not in lockstep
    return seconds, changed


def watch_phases(log: Path, running: threading.Thread, seen: dict[str, float]) -> None:
    """When each phase's first progress line appeared in the command's log (polled every 0.1
    s): ``read`` (the count done), ``sweep``."""
    prefixes = {"read": "reading the list:", "sweep": "looking for customers missing"}
    offset = 0
    while running.is_alive():
        time.sleep(0.1)
        try:
            with log.open("rb") as text:
                text.seek(offset)
                chunk = text.read()
        except FileNotFoundError:
            continue
        cut = chunk.rfind(b"\n") + 1
        offset += cut
        for line in chunk[:cut].decode(errors="replace").splitlines():
            for phase, prefix in prefixes.items():
                if phase not in seen and line.startswith(prefix):
                    seen[phase] = time.monotonic()


def run_row(database: BenchDatabase) -> dict[str, Any]:
    columns = (
        "id",
        "checked",
        "expected",
        "api_calls",
        "fields_rewritten",
        "added",
        "unsubscribed",
        "confirmed_paid",
        "signup_paid",
        "cleared",
        "started_at",
        "finished_at",
        "error",
    )
    sql = session(database)
    try:
        rows = sql.rows(
            f"SELECT {', '.join(columns)} FROM reconciliation_runs"
            " WHERE merchant_id = :m ORDER BY id DESC LIMIT 1",
            {"m": MERCHANT_ID},
        )
        if not rows:
            raise RuntimeError("the reconciliation left no run")
        row = dict(zip(columns, rows[0], strict=True))
        repairs = sql.rows(
            "SELECT kind, email FROM reconciliation_repairs WHERE run_id = :r",
            {"r": row["id"]},
        )
    finally:
        sql.close()
    row["repairs_by_email"] = [(kind, email) for kind, email in repairs]
    return row


def check_repairs(
    row: dict[str, Any], kinds: dict[str, list[str]], changed: set[str]
) -> dict[str, int]:
    """Each drifted member repaired once with its kind, and no other member but those whose
    points changed through the API during the run (a page read before such a change reached
    Ecomail and compared after it did: one more rewrite of its fields). The repairs of drift
    and the others, by kind."""
    wanted = {e.lower(): "fields" for e in kinds["fields"]}
    wanted |= {e.lower(): "added" for e in kinds["deleted"]}
    wanted |= {e.lower(): "cleared" for e in kinds["orphans"]}
    made: dict[str, list[str]] = {}
    for kind, email in row["repairs_by_email"]:
        made.setdefault(email.lower(), []).append(kind)
    wrong = {e: made.get(e, []) for e, kind in wanted.items() if made.get(e) != [kind]}
    others = {e: k for e, k in made.items() if e not in wanted}
    unexplained = {e: k for e, k in others.items() if e not in changed or k != ["fields"]}
    counts = {
        "fields_rewritten": len(kinds["fields"]) + len(others),
        "added": len(kinds["deleted"]),
        "cleared": len(kinds["orphans"]),
        "unsubscribed": 0,
        "confirmed_paid": 0,
        "signup_paid": 0,
    }
    miscounted = {k: (row[k], v) for k, v in counts.items() if row[k] != v}
    if row["error"] or wrong or unexplained or miscounted:
        raise RuntimeError(
            f"the reconciliation's repairs are not the drift: error {row['error']!r};"
            f" {len(wrong)} drifted members not repaired as expected {list(wrong.items())[:5]};"
            f" {len(unexplained)} other members repaired {list(unexplained.items())[:5]};"
            f" counts (found, expected) {miscounted}"
        )
    return {"drift": len(wanted), "changed_during_run": len(others)}


def delivered(members: dict[str, Any], kinds: dict[str, list[str]], timeout: float) -> float:
    """Seconds until the emulator holds every repair."""
    started = time.perf_counter()

    def missing() -> dict[str, int]:
        def field(email: str, name: str) -> Any:
            return members[email.lower()].custom_fields.get(name)

        left = {
            "deleted": sum(1 for e in kinds["deleted"] if e.lower() not in members),
            "fields": sum(1 for e in kinds["fields"] if field(e, "ellity_credit") == EDITED),
            "orphans": sum(
                1
                for e in kinds["orphans"]
                if field(e, "ellity_credit_num") == ORPHAN_FIELDS["ellity_credit_num"]
            ),
        }
        return {kind: count for kind, count in left.items() if count}

    while left := missing():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"repairs not in the emulator after {timeout:.0f} s: {left}")
        time.sleep(0.2)
    return time.perf_counter() - started


def run(
    database: BenchDatabase,
    *,
    emulator: Emulator,
    server: EmulatorServer,
    key: str,
    list_id: int,
    environ: dict[str, str],
    var_dir: Path,
    token: str,
) -> dict[str, Any]:
    from ecomail import start_server  # noqa: PLC0415 - the module imports this one

    members = emulator.accounts[key].lists[list_id].members
    sql = session(database)
    try:
        customers = [
            (int(i), str(e))
            for i, e in sql.rows(
                "SELECT id, email FROM customers WHERE merchant_id = :m AND email IS NOT NULL"
                " ORDER BY id",
                {"m": MERCHANT_ID},
            )
        ]
    finally:
        sql.close()
    kinds = drift(emulator, list_id, [e for _, e in customers])
    size = sum(len(v) for v in kinds.values())
    print(
        f"  reconciliation: drift {size:,} ({len(kinds['fields']):,} fields edited,"
        f" {len(kinds['deleted']):,} deleted, {len(kinds['orphans']):,} orphans)",
        flush=True,
    )
    floor = read_every_page(server.url, key, list_id, set(kinds["orphans"]))
    drifted = {e.lower() for e in kinds["fields"] + kinds["deleted"]}
    candidates = [c for c in customers if c[1].lower() not in drifted]
    del customers

    process, base = start_server(environ, var_dir)
    measured: dict[str, Any] = {}
    try:
        before = len(emulator.requests)
        began = time.monotonic()
        thread = threading.Thread(target=reconcile_measured, args=(environ, var_dir, measured))
        thread.start()
        phases: dict[str, float] = {}
        watcher = threading.Thread(
            target=watch_phases, args=(var_dir / "reconcile.log", thread, phases)
        )
        watcher.start()
        try:
            waits, changed = changes_while(thread, base, token, members, candidates)
        finally:
            thread.join()
            watcher.join()
        ended = time.monotonic()
        if "failed" in measured:
            raise RuntimeError(measured["failed"])
        row = run_row(database)
        repaired = check_repairs(row, kinds, changed)
        delivery_s = delivered(members, kinds, timeout=300)
    finally:
        process.terminate()
        process.wait(timeout=30)
    during = [r for r in emulator.requests[before:] if r.key == key and began <= r.at <= ended]
    reads = sum(1 for r in during if r.method == "GET" and r.path.endswith("/subscribers"))
    most = most_in_a_minute(sorted(r.at for r in during))
    waits_ms = sorted(w * 1000 for w in waits)
    p95 = waits_ms[max(0, round(0.95 * len(waits_ms)) - 1)]
    result = {
        "members_read": sum(floor["members"].values()),
        "drift": size,
        "drift_fields": len(kinds["fields"]),
        "drift_deleted": len(kinds["deleted"]),
        "drift_orphans": len(kinds["orphans"]),
        "seconds": measured["seconds"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "checked": row["checked"],
        "expected": row["expected"],
        "api_calls": row["api_calls"],
        "reads": reads,
        "ideal_reads": floor["ideal_reads"],
        "ideal_calls": floor["ideal_reads"] + floor["ideal_clear_calls"],
        "repairs": {
            k: row[k]
            for k in (
                "fields_rewritten",
                "added",
                "cleared",
                "unsubscribed",
                "confirmed_paid",
                "signup_paid",
            )
        },
        "repairs_total": sum(
            row[k]
            for k in (
                "fields_rewritten",
                "added",
                "cleared",
                "unsubscribed",
                "confirmed_paid",
                "signup_paid",
            )
        ),
        "repairs_of_drift": repaired["drift"],
        # members whose points changed through the API during the run, rewritten once more
        "repairs_of_changed_members": repaired["changed_during_run"],
        "repairs_delivered_s": delivery_s,
        # from the progress lines' first sight (to 0.1 s): start-up and counting, reading
        # the pages, sweeping the customers
        "count_phase_s": phases.get("read", measured["ended"]) - began,
        "read_phase_s": phases.get("sweep", measured["ended"]) - phases.get("read", began),
        "sweep_phase_s": measured["ended"] - phases.get("sweep", measured["ended"]),
        "requests_during_run": len(during),
        "max_requests_per_minute": most,
        "change_latency_median_ms": statistics.median(waits_ms),
        "change_latency_p95_ms": p95,
        "changes": len(waits_ms),
        "floor": {k: v for k, v in floor.items() if k != "ideal_clear_calls"},
    }
    print(
        f"  reconciliation of {result['members_read']:,} members: {result['seconds']:.1f} s"
        f" (reading every page, plain httpx: {floor['seconds']:.1f} s), {row['api_calls']} API"
        f" calls ({reads} reads; ideal {result['ideal_calls']}), peak RSS"
        f" {result['peak_rss_mb']:.0f} MB, repairs {repaired['drift']:,} = drift"
        f" (+{repaired['changed_during_run']} of members changed during the run);"
        f" delivered {delivery_s:.1f} s after it; during it: change → emulator median"
        f" {result['change_latency_median_ms']:.0f} ms, p95 {p95:.0f} ms over {len(waits_ms)}"
        f" changes, max {most} requests in a minute (limit 1,000)",
        flush=True,
    )
    return result
