"""The Ecomail integration as operators run it: ``ellity ecomail activate`` and
``ellity worker --burst`` as real processes, a SQLite file, the Ecomail emulator on a port."""

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
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.services.customers import CustomerInput, upsert_customer
from ellity.domain.services.merchants import create_merchant
from ellity.domain.services.work_loop import CLAIM_LEASE
from tests.e2e.deployments import ellity_fields, stored_fields
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.fakes import FakePasswordHasher
from tests.processes import ELLITY, clean_env

KEY = "process-test-key"


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, EmulatorServer]]:
    with Emulator() as emu, EmulatorServer(emu, port=0) as server:
        yield emu, server


def environment(workdir: Path, emulator_url: str) -> dict[str, str]:
    return {
        **clean_env(),
        "ELLITY_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'ellity.db'}",
        "ELLITY_SECRET_KEY": "process-test-secret",
        "ELLITY_ECOMAIL_API_URL": emulator_url,
        "ELLITY_DELIVERY_TIMEOUT": "1",
    }


def ellity(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ELLITY, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def shop_with_customers(workdir: Path, count: int) -> list[CustomerId]:
    url = f"sqlite+aiosqlite:///{workdir / 'ellity.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    database = create_database(url)
    uow, clock, rng = SqlUnitOfWorkFactory(database), SystemClock(), SecretsRandom()
    try:
        merchant = await create_merchant(
            slug="shop",
            settings=MerchantSettings(
                name="Shop",
                shop_url="https://shop.example.cz",
                ecomail_add=EcomailAdd.CUSTOMERS,  # every customer is added to the list
            ),
            admin_email="admin@shop.example.cz",
            admin_password="a long password",
            uow=uow(),
            clock=clock,
            hasher=FakePasswordHasher(),
        )
        assert merchant.id is not None
        ids = []
        for number in range(count):
            data = CustomerInput(email=f"c{number}@example.cz", first_name=f"C{number}")
            result = await upsert_customer(merchant.id, data, uow=uow(), clock=clock, rng=rng)
            assert result.view.customer.id is not None
            ids.append(result.view.customer.id)
        return ids
    finally:
        await database.dispose()


async def test_the_activate_command_refuses_a_wrong_key_then_creates_the_fields(
    tmp_path: Path, emulator: tuple[Emulator, EmulatorServer]
) -> None:
    emu, server = emulator
    account = emu.add_account(KEY)
    list_id = account.add_list("Newsletter")
    await shop_with_customers(tmp_path, 2)
    env = environment(tmp_path, server.url)

    wrong = ellity(
        tmp_path,
        env,
        "ecomail",
        "activate",
        "--merchant",
        "shop",
        "--api-key",
        "not-the-key",
        "--list-id",
        str(list_id),
    )
    assert wrong.returncode == 2
    assert "did not accept this API key" in wrong.stderr
    assert account.lists[list_id].fields == {}

    missing = ellity(
        tmp_path,
        env,
        "ecomail",
        "activate",
        "--merchant",
        "shop",
        "--api-key",
        KEY,
        "--list-id",
        "999",
    )
    assert missing.returncode == 2
    assert "no list 999" in missing.stderr

    done = ellity(
        tmp_path,
        env,
        "ecomail",
        "activate",
        "--merchant",
        "shop",
        "--api-key",
        KEY,
        "--list-id",
        str(list_id),
    )
    assert done.returncode == 0, done.stderr
    assert "the Ellity fields are confirmed" in done.stdout
    assert len(account.lists[list_id].fields) == 11
    assert KEY not in done.stdout + done.stderr


async def test_a_worker_killed_in_the_middle_of_a_bulk_call_loses_no_contact(
    tmp_path: Path, emulator: tuple[Emulator, EmulatorServer]
) -> None:
    emu, server = emulator
    account = emu.add_account(KEY)
    list_id = account.add_list("Newsletter")
    ids = await shop_with_customers(tmp_path, 3200)  # two bulk calls: 3000 and 200
    env = environment(tmp_path, server.url)
    activated = ellity(
        tmp_path,
        env,
        "ecomail",
        "activate",
        "--merchant",
        "shop",
        "--api-key",
        KEY,
        "--list-id",
        str(list_id),
    )
    assert activated.returncode == 0, activated.stderr

    emu.faults.delay = 3.0  # each call hangs long enough to kill the worker during it
    calls_before = len(emu.requests)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(  # noqa: ASYNC220 - started, not waited for
        [*ELLITY, "worker", "--burst"], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while not any("bulk" in r.path for r in emu.requests[calls_before:]):
        assert time.monotonic() < deadline, "the worker never called Ecomail"
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        await asyncio.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    emu.faults.delay = 0.0

    await asyncio.sleep(CLAIM_LEASE.total_seconds() + 1)  # the dead worker's claim runs out
    again = ellity(tmp_path, env, "worker", "--burst")
    assert again.returncode == 0, again.stderr

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'ellity.db'}"
    expected = await stored_fields(database_url, MerchantId(1), ids)
    assert ellity_fields(account.lists[list_id].members) == expected
