"""The Ecomail request budget of the single-process default (``ellity serve`` with its
embedded Redis) across restarts, as an operator runs it: real processes, a SQLite file, the
Ecomail emulator on a port counting every request. Slow by nature (about two minutes): the
budget is a minute's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.outbox import Payload, Topic
from ellity.domain.services.customers import CustomerInput, upsert_customer
from ellity.domain.services.merchants import create_merchant
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.fakes import FakePasswordHasher
from tests.processes import ELLITY, clean_env, free_port

KEY = "budget-restart-key"
EVENTS = 2500  # a request each: more than two minutes of the budget
ECOMAIL_LIMIT = 1000  # requests in any 60 s


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, EmulatorServer]]:
    # The emulator's own limit is far away: it must not throttle and hide an excess.
    with Emulator(rate_limit=1_000_000) as emu, EmulatorServer(emu, port=0) as server:
        yield emu, server


def environment(workdir: Path, emulator_url: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if k != "REDIS_URL"}  # the embedded server
    return {
        **env,
        "ELLITY_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'ellity.db'}",
        "ELLITY_SECRET_KEY": "budget-test-secret",
        "ELLITY_ECOMAIL_API_URL": emulator_url,
    }


async def new_shop(workdir: Path) -> CustomerId:
    """The shop with one customer with an email (the activation adds its contact)."""
    url = f"sqlite+aiosqlite:///{workdir / 'ellity.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    database = create_database(url)
    uow, clock = SqlUnitOfWorkFactory(database), SystemClock()
    try:
        shop = await create_merchant(
            slug="shop",
            settings=MerchantSettings(
                name="Shop", shop_url="https://shop.example.cz", ecomail_add=EcomailAdd.CUSTOMERS
            ),
            admin_email="admin@shop.example.cz",
            admin_password="a long password",
            uow=uow(),
            clock=clock,
            hasher=FakePasswordHasher(),
        )
        assert shop.id is not None
        data = CustomerInput(email="anna@example.cz", registered=True)
        added = await upsert_customer(shop.id, data, uow=uow(), clock=clock, rng=SecretsRandom())
        assert added.view.customer.id is not None
        return added.view.customer.id
    finally:
        await database.dispose()


async def backlog_of_events(workdir: Path, customer_id: CustomerId, count: int) -> None:
    """``count`` Ecomail events for the customer, recorded at once (as a nightly's are)."""
    database = create_database(f"sqlite+aiosqlite:///{workdir / 'ellity.db'}")
    try:
        async with SqlUnitOfWorkFactory(database)() as uow:
            shop = await uow.merchants.get_by_slug("shop")
            assert shop is not None and shop.id is not None
            event: Payload = {"label": "credit", "value": {"points": 10}}
            items: list[tuple[CustomerId | None, Payload]] = [(customer_id, event)] * count
            await uow.outbox.add_many(
                shop.id, Topic.ECOMAIL_EVENT.value, items, at=SystemClock().now()
            )
            await uow.commit()
    finally:
        await database.dispose()


async def test_restarting_serve_twice_within_a_minute_never_exceeds_ecomails_limit(
    tmp_path: Path, emulator: tuple[Emulator, EmulatorServer]
) -> None:
    emu, server = emulator
    list_id = emu.add_account(KEY).add_list("Newsletter")
    env = environment(tmp_path, server.url)
    anna = await new_shop(tmp_path)
    activate = ["ecomail", "activate", "--merchant", "shop", "--api-key", KEY]
    activated = subprocess.run(  # noqa: ASYNC221 - a command that finishes
        [*ELLITY, *activate, "--list-id", str(list_id)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert activated.returncode == 0, activated.stderr
    await backlog_of_events(tmp_path, anna, EVENTS)
    sent_before = len(emu.requests)  # the activation's: a few, in the same minute maybe
    log = (tmp_path / "serve.log").open("ab")
    processes: list[subprocess.Popen[bytes]] = []

    def serve() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [*ELLITY, "serve", "--port", str(free_port())],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    async def until_sent(count: int, process: subprocess.Popen[bytes], *, by: float) -> None:
        while len(emu.requests) - sent_before < count:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < by, f"fewer than {count} requests were sent"
            await asyncio.sleep(0.05)

    started = time.monotonic()
    try:
        first = serve()
        await until_sent(300, first, by=started + 60)  # spending the budget at full speed
        first.send_signal(signal.SIGTERM)  # a restart: the embedded server stops cleanly
        first.wait(timeout=30)
        second = serve()
        await asyncio.sleep(20)
        os.kill(second.pid, signal.SIGKILL)  # a crash: the kernel stops the embedded server
        second.wait(timeout=10)
        third = serve()
        assert time.monotonic() - started < 60  # two restarts within a minute
        # Past the first window, the budget comes back: the work goes on at the limit.
        await until_sent(1200, third, by=started + 120)
        await asyncio.sleep(max(0.0, started + 110 - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)

    text = (tmp_path / "serve.log").read_text(errors="replace")
    print(f"{len(emu.requests) - sent_before} requests in {time.monotonic() - started:.0f} s")
    assert emu.max_requests_in_window(KEY) <= ECOMAIL_LIMIT
    assert not [line for line in text.splitlines() if "request budget" in line]  # DEBUG only
