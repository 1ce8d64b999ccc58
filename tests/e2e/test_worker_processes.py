"""The worker as operators run it: real ``ellity worker`` / ``ellity serve`` processes, the real
Redis on 127.0.0.1:6379 (a queue of their own per test), a file database, a real SMTP server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
from arq import create_pool
from arq.connections import RedisSettings

from ellity.adapters.arq_queue import DELIVER_JOB, ArqJobQueue
from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.services.customers import CustomerInput, upsert_customer
from ellity.domain.services.merchants import create_merchant
from ellity.domain.services.points import earn_points
from ellity.ports.queue import JobQueue
from tests.e2e.deployments import REDIS_URL, Deployment, on_postgres, on_sqlite, until
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.fakes import FakePasswordHasher
from tests.processes import free_port, log_events
from tests.smtp_server import SmtpServer


async def seed(
    deployment: Deployment,
    smtp: SmtpServer,
    customers: int,
    *,
    first: int = 0,
    queue: JobQueue | None = None,
) -> None:
    """Anna's shop with system emails on and SMTP set up; each customer earns points.

    With ``queue``, commits nudge the worker as the web process's commits do."""
    database, clock = create_database(deployment.database_url), SystemClock()
    uow = SqlUnitOfWorkFactory(
        database, on_outbox_work=None if queue is None else queue.nudge_delivery
    )
    try:
        async with uow(read_only=True) as unit:
            merchant = await unit.merchants.get_by_slug("anna")
        if merchant is None:
            merchant = await create_merchant(
                slug="anna",
                settings=MerchantSettings(name="Kavárna U Anny", send_system_emails=True),
                admin_email="admin@anna.example.cz",
                admin_password="a long password",
                uow=uow(),
                clock=clock,
                hasher=FakePasswordHasher(),
            )
            async with uow() as unit:
                server = SmtpSettings(
                    host="127.0.0.1", port=smtp.port, sender="body@anna.cz", security="none"
                )
                await unit.merchants.update_smtp(merchant.id or MerchantId(0), server)
                await unit.commit()
        # PostgreSQL flushes concurrent commits together; SQLite has one writer at a time
        gate = asyncio.Semaphore(8 if deployment.database_url.startswith("postgresql") else 1)

        async def customer_earns(n: int) -> None:
            async with gate:
                created = await upsert_customer(
                    merchant_id,
                    CustomerInput(email=f"c{n}@example.cz", registered=True),
                    uow=uow(),
                    clock=clock,
                    rng=SecretsRandom(),
                )
                await earn_points(
                    merchant_id,
                    created.view.customer.id or CustomerId(0),
                    Points.parse("10"),
                    order_ref=f"o-{n}",
                    uow=uow(),
                    clock=clock,
                )

        merchant_id = merchant.id or MerchantId(0)
        await asyncio.gather(*(customer_earns(n) for n in range(first, first + customers)))
    finally:
        await database.dispose()


async def enqueue_deliveries(queue: str, count: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name=queue)
    try:
        for _ in range(count):
            await pool.enqueue_job(DELIVER_JOB, _job_id=f"{queue}:{uuid.uuid4().hex}")
    finally:
        await pool.aclose()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def sqlite_deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with on_sqlite(tmp_path) as deployment:
        yield deployment


@pytest.fixture
async def postgres_deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with on_postgres(tmp_path) as deployment:
        yield deployment


async def test_a_worker_killed_while_sending_leaves_the_email_to_the_next_worker(
    sqlite_deployment: Deployment, smtp: SmtpServer
) -> None:
    await seed(sqlite_deployment, smtp, 1)
    smtp.recorder.stall_next = True  # the server takes the email in, then stalls: kill now
    first = sqlite_deployment.start("first", "worker", ELLITY_DELIVERY_TIMEOUT="0.5")
    smtp.recorder.on_stall = lambda: os.kill(first.pid, signal.SIGKILL)
    await until(lambda: first.poll() is not None, within=30, what="the kill mid-delivery")
    assert first.returncode == -signal.SIGKILL
    assert smtp.recorder.count() == 0
    [(_, status, attempts)] = await sqlite_deployment.outbox_rows()
    assert (status, attempts) == ("pending", 1)  # claimed, not settled: the claim runs out
    sqlite_deployment.start("second", "worker", ELLITY_DELIVERY_TIMEOUT="0.5")
    # the dead claim runs out within its lease (30 s) of the kill
    await until(lambda: smtp.recorder.count() == 1, within=45, what="the delivery after restart")
    assert await sqlite_deployment.outbox_rows() == [(1, "delivered", 2)]
    await asyncio.sleep(1)
    assert smtp.recorder.count() == 1


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """On SQLite, then on PostgreSQL."""
    found: Deployment = request.getfixturevalue(f"{request.param}_deployment")
    return found


async def test_two_workers_at_once_deliver_each_email_exactly_once(
    deployment: Deployment, smtp: SmtpServer
) -> None:
    items = 60  # more than one worker's four runs claim at once (4 x 10)
    smtp.recorder.delay = 0.03  # slow enough that both workers are busy at the same time

    def started(name: str) -> Callable[[], bool]:
        return lambda: "Starting worker" in deployment.log(name)

    for name in "ab":
        deployment.start(name, "worker")
    for name in "ab":
        await until(started(name), within=30, what=name)
    await asyncio.sleep(1)  # their start-up runs found nothing to do
    await seed(deployment, smtp, items)
    await enqueue_deliveries(deployment.queue, 8)  # more than one worker takes (max_jobs 4)
    await until(lambda: smtp.recorder.count() >= items, within=60, what="all emails")
    await asyncio.sleep(1)  # anything sent twice would arrive now
    received = smtp.recorder.received
    assert len(received) == items
    assert len({r.message["Message-ID"] for r in received}) == items
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(
        f"c{n}@example.cz" for n in range(items)
    )
    assert {status for _, status, _ in await deployment.outbox_rows()} == {"delivered"}
    by_worker = [
        sum(1 for e in log_events(deployment.log(name)) if str(e["event"]).endswith(" delivered"))
        for name in "ab"
    ]
    assert sum(by_worker) == items
    assert min(by_worker) > 0, f"one worker did everything: {by_worker}"


async def test_a_web_commit_nudges_a_running_worker_within_a_second_or_two(
    sqlite_deployment: Deployment, smtp: SmtpServer
) -> None:
    sqlite_deployment.start("worker", "worker")
    await until(
        lambda: "Starting worker" in sqlite_deployment.log("worker"), within=30, what="start"
    )
    await asyncio.sleep(0.5)  # its start-up run has found nothing
    started = time.monotonic()
    queue = ArqJobQueue(REDIS_URL, queue_name=sqlite_deployment.queue)
    try:  # wired like the web process: each commit with outbox work nudges
        await seed(sqlite_deployment, smtp, 1, queue=queue)
    finally:
        await queue.close()
    await until(lambda: smtp.recorder.count() == 1, within=10, what="the nudged delivery")
    assert time.monotonic() - started < 5  # not the minute cron


async def test_worker_burst_delivers_everything_due_then_exits(
    sqlite_deployment: Deployment, smtp: SmtpServer
) -> None:
    await seed(sqlite_deployment, smtp, 5)
    burst = sqlite_deployment.start("burst", "worker", "--burst", REDIS_URL="")  # no Redis needed
    assert burst.wait(timeout=60) == 0, sqlite_deployment.log("burst")
    assert smtp.recorder.count() == 5
    assert [status for _, status, _ in await sqlite_deployment.outbox_rows()] == ["delivered"] * 5
    assert "burst done: 5 delivered" in sqlite_deployment.log("burst")


async def test_serve_without_redis_runs_an_embedded_server_and_the_worker_in_process(
    sqlite_deployment: Deployment, smtp: SmtpServer
) -> None:
    await seed(sqlite_deployment, smtp, 2)
    port = free_port()
    server = sqlite_deployment.start("serve", "serve", "--port", str(port), REDIS_URL="")
    await until(lambda: smtp.recorder.count() == 2, within=60, what="emails from `serve`")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/health", timeout=5)).status_code == 200
    children = psutil.Process(server.pid).children(recursive=True)
    [valkey] = [c for c in children if "valkey" in c.name()]
    assert valkey.net_connections()[0].laddr.ip == "127.0.0.1"
    os.kill(server.pid, signal.SIGKILL)  # no clean shutdown: the kernel stops valkey with it
    server.wait(timeout=10)
    valkey.wait(timeout=10)
    assert not valkey.is_running()


async def test_activation_wakes_a_running_worker_and_every_customer_is_written_at_once(
    sqlite_deployment: Deployment,
) -> None:
    """``ellity ecomail activate`` (as the integration page does) requests the backfill and
    wakes the worker: the customers reach Ecomail in seconds, not at the minute's tick."""
    deployment = sqlite_deployment
    with Emulator() as emu, EmulatorServer(emu, port=0) as server:
        key = f"wake-{uuid.uuid4().hex}"  # the request budget in Redis is per key
        list_id = emu.add_account(key).add_list("Newsletter")
        members = emu.accounts[key].lists[list_id].members
        deployment.settings["ELLITY_ECOMAIL_API_URL"] = server.url
        for command in (
            ("create-merchant", "--slug", "anna", "--name", "Anna", "--admin-email",
             "admin@anna.example.cz", "--admin-password", "a long password"),
            ("settings", "--merchant", "anna", "ecomail_add=customers"),
        ):  # fmt: skip
            done = await deployment.run(*command)
            assert done.returncode == 0, done.stderr
        await add_customers(deployment, "anna", 5)
        deployment.start("worker", "worker")
        await until(lambda: "Starting worker" in deployment.log("worker"), within=30, what="start")
        await asyncio.sleep(1)  # its start-up run has found nothing to do
        second = datetime.now(UTC).second  # start far from the minute's tick (second 0)
        if not 5 <= second <= 30:
            await asyncio.sleep((65 - second) % 60)
        activated = await deployment.run(
            "ecomail", "activate", "--merchant", "anna", "--api-key", key,
            "--list-id", str(list_id),
        )  # fmt: skip
        assert activated.returncode == 0, activated.stderr
        started = time.monotonic()
        await until(lambda: len(members) == 5, within=10, what="the backfill, nudged")
        assert datetime.now(UTC).second > 5  # no tick came between (it runs at second 0)
        print(f"backfill of 5 customers written {time.monotonic() - started:.2f} s after")


async def add_customers(deployment: Deployment, slug: str, count: int) -> None:
    database, clock = create_database(deployment.database_url), SystemClock()
    uow = SqlUnitOfWorkFactory(database)
    try:
        async with uow(read_only=True) as unit:
            merchant = await unit.merchants.get_by_slug(slug)
        assert merchant is not None and merchant.id is not None
        for n in range(count):
            await upsert_customer(
                merchant.id,
                CustomerInput(email=f"c{n}@example.cz"),
                uow=uow(),
                clock=clock,
                rng=SecretsRandom(),
            )
    finally:
        await database.dispose()
