"""The production topology as a whole: two ``ellity serve`` and two ``ellity worker`` processes
on PostgreSQL and Redis, the Ecomail emulator on a port, concurrent e-shop traffic through both
web processes while Ecomail fails (500s, then 429s with ``Retry-After``), a worker is SIGKILLed
in the middle of a batch and replaced, and later the other worker is stopped with SIGTERM.

After the queues drain: every balance equals its ledger and what the e-shop was answered, every
contact in the Ecomail list equals the database, each change produced its tracker event, and
an event reached Ecomail twice only when the worker sending it died during that very call.
The figures (time to delivery after the kill and after the stop, duplicates, requests, 5xx)
are printed and written to ``topology-report.txt`` in the test's folder.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from ellity.adapters.sql.database import create_database
from ellity.domain.model.ids import CustomerId, MerchantId
from tests.e2e.deployments import (
    REDIS_URL,
    Deployment,
    ellity_fields,
    on_postgres,
    stop,
    stored_fields,
    until,
)
from tests.e2e.installation_probe import Probe
from tests.e2e.shop_traffic import Shop, Traffic, cents_text
from tests.ecomail_emulator import Account, Emulator, EmulatorServer
from tests.processes import free_port

SHOPPERS = 8  # concurrent e-shop sessions, each a customer at a time
PAUSE = 0.4  # seconds between one shopper's calls: about 15 calls a second in all
TRAFFIC_SECONDS = 45.0  # at least; and 3 s more after the SIGTERMed worker exited
FAIL_500 = (2.0, 6.0)  # Ecomail answers 500 in this span of the traffic (seconds)
FAIL_429 = (6.0, 10.0)  # ... then 429 with Retry-After
RETRY_AFTER = 2
KILL_FROM = 13.0  # the first worker is SIGKILLed once it holds outbox items after this
RECOVERY_WITHIN = 70.0  # the second waits at most this for the killed worker's work to move
SLOW_ECOMAIL = 0.5  # seconds each Ecomail call takes while a worker is caught holding items
DELIVERY_TIMEOUT = "5"  # ELLITY_DELIVERY_TIMEOUT: one delivery at most
REFERRAL_BONUS = 500  # cents
KILLED_WITHIN = 45.0  # a killed worker's items are delivered by another within this
STOPPED_WITHIN = 5.0  # a stopped worker's items are delivered within this
EXITS_WITHIN = 35.0  # a worker given SIGTERM exits within this
DRAIN_WITHIN = 90.0  # nothing pending this long after the traffic stops


EventKey = tuple[str, str, str]


def event_key(email: str, label: object, value: object) -> EventKey:
    """An event as Ecomail sees it: the email, the label and the value (JSON, keys sorted)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return email.lower(), str(label), json.dumps(json.loads(text), sort_keys=True)


def credit_of(key: EventKey) -> tuple[str, str, str, str, datetime] | None:
    """A credit event's email, reason, change, balance and instant."""
    email, label, text = key
    if label != "credit":
        return None
    value = json.loads(text)
    at = datetime.fromisoformat(value["at"])
    return email, value["reason"], value["change"], value["balance"], at


def web_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def heartbeat_pids(queue: str) -> set[int]:
    """The processes whose worker heartbeat is in Redis (a worker token holds its pid)."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{queue}:heartbeat:*"))
    finally:
        client.close()
    return {int(key.removeprefix(f"{queue}:heartbeat:").split(":")[1]) for key in keys}


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, EmulatorServer]]:
    with Emulator() as emu, EmulatorServer(emu, port=0) as server:
        yield emu, server


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with on_postgres(tmp_path) as installed:
        yield installed


@pytest.fixture
async def probe(deployment: Deployment) -> AsyncIterator[Probe]:
    database = create_database(deployment.database_url)
    try:
        yield Probe(database)
    finally:
        await database.dispose()


async def set_up_the_shop(
    deployment: Deployment, emu: Emulator, server: EmulatorServer, web: str
) -> tuple[str, Account, int]:
    """The merchant, its settings and API token, and Ecomail activated, with the commands an
    operator types; the list's webhook goes to the first web process. Returns the API token,
    the Ecomail account and the list's id."""
    key = f"topology-{uuid.uuid4().hex}"  # the request budget in Redis is per key
    account = emu.add_account(key)
    list_id = account.add_list("Newsletter")
    deployment.settings.update(
        ELLITY_ECOMAIL_API_URL=server.url,
        ELLITY_BASE_URL=web,
        ELLITY_DELIVERY_TIMEOUT=DELIVERY_TIMEOUT,
    )
    commands = [
        ("create-merchant", "--slug", "shop", "--name", "Shop", "--shop-url",
         "https://shop.example.cz", "--admin-email", "admin@shop.example.cz",
         "--admin-password", "a long password"),
        ("settings", "--merchant", "shop", "ecomail_add=customers",
         f"referral_bonus={cents_text(REFERRAL_BONUS)}", "newsletter_reward=10"),
        ("create-api-token", "--merchant", "shop"),
        ("ecomail", "activate", "--merchant", "shop", "--api-key", key,
         "--list-id", str(list_id)),
    ]  # fmt: skip
    outputs = []
    for command in commands:
        done = await deployment.run(*command)
        assert done.returncode == 0, f"{command[0]}: {done.stderr}"
        outputs.append(done.stdout)
    account.lists[list_id].webhook_url = outputs[3].strip().splitlines()[-1]
    return outputs[2].strip(), account, list_id


async def test_two_web_processes_and_two_workers_lose_nothing_while_workers_die_and_ecomail_fails(
    deployment: Deployment,
    probe: Probe,
    emulator: tuple[Emulator, EmulatorServer],
    tmp_path: Path,
) -> None:
    emu, server = emulator
    ports = [free_port(), free_port()]
    webs = [f"http://127.0.0.1:{port}" for port in ports]
    token, account, list_id = await set_up_the_shop(deployment, emu, server, webs[0])
    serving = [
        deployment.start(f"serve-{n}", "serve", "--port", str(port)) for n, port in enumerate(ports)
    ]
    workers = [deployment.start(f"worker-{n}", "worker") for n in range(2)]
    for url in webs:
        await until(lambda url=url: web_ready(url), within=60, what=f"{url}/ready")  # type: ignore[misc]
    # With REDIS_URL the web processes run no worker: the heartbeats are the workers' alone.
    await until(lambda: len(heartbeat_pids(deployment.queue)) == 2, within=30, what="workers")
    assert heartbeat_pids(deployment.queue) == {worker.pid for worker in workers}
    for web in serving:
        assert not psutil.Process(web.pid).children(recursive=True)  # no embedded Redis

    shop = Shop()
    auth = {"Authorization": f"Bearer {token}"}
    clients = [httpx.AsyncClient(base_url=url, headers=auth, timeout=30) for url in webs]
    traffic = Traffic(clients, shop, pause=PAUSE, referral_bonus=REFERRAL_BONUS)
    started = time.monotonic()
    shoppers = asyncio.gather(*(traffic.shopper(n) for n in range(SHOPPERS)))

    async def at(second: float) -> None:
        await asyncio.sleep(max(0.0, started + second - time.monotonic()))

    try:
        await at(FAIL_500[0])
        emu.faults.fail_always(500)
        await at(FAIL_500[1])
        emu.faults.clear()
        emu.faults.rate_limit_next(100_000, retry_after=RETRY_AFTER)
        await at(FAIL_429[1])
        emu.faults.clear()

        # SIGKILL the first worker while it holds outbox items, Ecomail slow enough that it
        # is most likely in the middle of a call; a replacement starts at once.
        await at(KILL_FROM)
        victim = workers[0]
        emu.faults.delay = SLOW_ECOMAIL
        await probe.holding(victim.pid, at_least=2, within=30)  # one is left at the kill
        victim.send_signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        await asyncio.to_thread(victim.wait, 10)
        emu.faults.delay = 0.0
        workers.append(deployment.start("worker-2", "worker"))
        killed = await probe.held(victim.pid, killed_at)

        # Once another worker has taken over what the killed one held (an event waits for
        # its contact, which the killed worker may hold), SIGTERM the second worker while it
        # holds outbox items.
        recovered = time.monotonic() + RECOVERY_WITHIN
        while time.monotonic() < recovered:
            left = await probe.held(victim.pid, killed_at)
            if not (left.items or left.contacts or left.notifications):
                break
            await asyncio.sleep(0.5)
        stopping = workers[1]
        emu.faults.delay = SLOW_ECOMAIL / 2
        rows = await probe.holding(stopping.pid, at_least=1, within=30)
        stopping.send_signal(signal.SIGTERM)
        stopped_at, stop_began = datetime.now(UTC), time.monotonic()
        emu.faults.delay = 0.0
        try:
            await asyncio.to_thread(stopping.wait, EXITS_WITHIN + 5)
        except subprocess.TimeoutExpired:
            stop(stopping)
        exited_after = time.monotonic() - stop_began
        stopped = await probe.held(stopping.pid, stopped_at, *rows)

        await at(max(TRAFFIC_SECONDS, time.monotonic() - started + 3))
    finally:
        traffic.stopping.set()
        await shoppers
        for client in clients:
            await client.aclose()
    traffic_seconds = time.monotonic() - started

    drained_after, still_pending = await probe.drain(within=DRAIN_WITHIN)
    emu.wait_for_webhooks(timeout=10)
    after_kill = await probe.settled_after(killed)
    after_stop = await probe.settled_after(stopped)
    outcome = await probe.outcome()
    balances, entries, events = outcome.balances, outcome.entries, outcome.events

    # Each event recorded in the outbox reached Ecomail; twice only if it was in flight in
    # the killed worker.
    received = Counter(event_key(e["email"], e["label"], e["value"]) for e in account.events)
    sent = {
        row.id: event_key(row.email, payload["label"], payload["value"])
        for row in events
        for payload in [json.loads(row.payload)]
    }
    missing = sorted(item for item, key in sent.items() if not received[key])
    duplicates = sorted(item for item, key in sent.items() if received[key] > 1)
    # ... and each ledger entry is a credit event Ecomail received.
    credits = {credit_of(key) for key in received}
    unreported = [
        entry
        for entry in entries
        if (
            entry.email.lower(),
            entry.kind,
            cents_text(entry.points_cents),
            cents_text(entry.balance_after_cents),
            entry.at,
        )
        not in credits
    ]
    ids = [CustomerId(customer_id) for customer_id in balances]
    stored = await stored_fields(deployment.database_url, MerchantId(1), ids)
    in_list = ellity_fields(account.lists[list_id].members)
    contacts_differing = sorted(
        email for email in stored.keys() | in_list.keys() if stored.get(email) != in_list.get(email)
    )
    answers = Counter(request.status for request in emu.requests)
    webhooks = Counter(call.status for call in emu.webhook_calls)
    server_errors = sum(n for status, n in shop.statuses.items() if status >= 500)

    def seconds(figure: float | None) -> str:
        return "not all delivered" if figure is None else f"{figure:.1f} s"

    report = "\n".join(
        [
            "topology: 2 x ellity serve, 2 x ellity worker (one SIGKILLed and replaced, one"
            " stopped with SIGTERM), PostgreSQL, Redis, the Ecomail emulator",
            f"API calls: {traffic.calls} in {traffic_seconds:.0f} s"
            f" ({traffic.calls / traffic_seconds:.1f}/s; per web process"
            f" {sorted(shop.calls.values())}); answers {dict(sorted(shop.statuses.items()))};"
            f" 5xx seen by the client: {server_errors}; calls with no answer: {len(shop.broken)}",
            f"customers: {len(balances)}; ledger entries: {len(entries)}; Ecomail events"
            f" recorded: {len(sent)}",
            f"Ecomail requests: {len(emu.requests)}; answers {dict(sorted(answers.items()))};"
            f" most in any 60 s: {emu.max_requests_in_window(account.key)}; list webhooks"
            f" answered {dict(webhooks)}",
            f"SIGKILL: the worker held {len(killed.items)} outbox items ({len(killed.in_flight)}"
            f" in flight), {killed.contacts} contacts, {killed.notifications} notifications;"
            f" its items delivered {seconds(after_kill)} after the kill (target"
            f" {KILLED_WITHIN:.0f} s)",
            f"SIGTERM: the worker held {len(stopped.items)} outbox items, {stopped.contacts}"
            f" contacts, {stopped.notifications} notifications; it exited after"
            f" {exited_after:.1f} s (target {EXITS_WITHIN:.0f} s); its items delivered"
            f" {seconds(after_stop)} after the SIGTERM (target {STOPPED_WITHIN:.0f} s)",
            f"events received more than once: {len(duplicates)} in 1 SIGKILL, {duplicates};"
            f" of them held by the killed worker {sorted(killed.items & set(duplicates))},"
            f" in flight there {sorted(killed.in_flight & set(duplicates))}, held by the"
            f" stopped worker {sorted(stopped.items & set(duplicates))}",
            f"drained {drained_after:.1f} s after the traffic stopped; left: {still_pending}",
        ]
    )
    print(report)
    (tmp_path / "topology-report.txt").write_text(report + "\n", encoding="utf-8")

    problems = {
        "calls with no answer": shop.broken[:5],
        "5xx answers": server_errors,
        "calls refused": shop.refused[:5],
        "still pending after the drain": still_pending,
        "failed": outcome.failed[:5],
        "balances other than their ledger": outcome.unbalanced[:5],
        "balances other than the shop was answered": sorted(
            (customer, balances.get(customer), cents)
            for customer, cents in shop.expected.items()
            if balances.get(customer) != cents
        )[:5],
        "contacts other than the database": contacts_differing[:5],
        "events not delivered": sorted(row.id for row in events if row.status != "delivered")[:5],
        "events Ecomail never received": missing[:5],
        "ledger entries without a credit event": unreported[:5],
        "events received twice that were not in flight in the killed worker": sorted(
            set(duplicates) - killed.in_flight
        ),
        "list webhooks not accepted": [s for s in webhooks if s != 200],
        "no outbox item held by the killed worker": not killed.items,
        f"killed worker's items not delivered within {KILLED_WITHIN:.0f} s": after_kill is None
        or after_kill > KILLED_WITHIN,
        f"stopped worker not gone within {EXITS_WITHIN:.0f} s": exited_after > EXITS_WITHIN,
        f"stopped worker's items not delivered within {STOPPED_WITHIN:.0f} s": after_stop is None
        or after_stop > STOPPED_WITHIN,
    }
    found = {what: seen for what, seen in problems.items() if seen}
    assert not found, "\n".join(f"{what}: {seen}" for what, seen in found.items())
