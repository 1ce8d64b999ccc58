"""Installations as operators run them, for the end-to-end process tests: a working folder, a
database (a SQLite file, or a fresh PostgreSQL database), a queue of its own on the real Redis
at 127.0.0.1:6379, and ``ellity`` commands and processes started in that environment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.tables.outbox import outbox
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SystemClock
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.services.customers import contact_snapshots
from tests.conftest import _recreate_postgres_database, admin_statements
from tests.ecomail_emulator import Member
from tests.processes import ELLITY

SECRET = "e2e-worker-secret-key"
REDIS_DB = 11  # ours; each deployment also has a queue of its own
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


@dataclass
class Deployment:
    """One installation: a working folder, a database and a Redis queue. ``settings`` are
    ``ELLITY_*`` variables every command and process of the installation gets."""

    workdir: Path
    database_url: str
    queue: str = field(default_factory=lambda: f"ellity-e2e:{uuid.uuid4().hex}")
    settings: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """This environment without its ``ELLITY_*`` settings, then the installation's;
        ``extra`` on top (an empty value unsets the variable)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}
        env.pop("REDIS_URL", None)
        env.update(
            ELLITY_DATABASE_URL=self.database_url,
            ELLITY_SECRET_KEY=SECRET,
            ELLITY_QUEUE_NAME=self.queue,
            ELLITY_SMTP_ALLOW_PRIVATE="true",  # the tests' SMTP server is on 127.0.0.1
            REDIS_URL=REDIS_URL,
        )
        env.update(self.settings)
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """``ellity ARGS`` in the background, its output in ``<name>.log``."""
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [*ELLITY, *args],
            cwd=self.workdir,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    async def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``ellity ARGS`` to its end (at most a minute)."""
        return await asyncio.to_thread(
            subprocess.run,
            [*ELLITY, *args],
            cwd=self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    async def query(self, statement: Any) -> list[sa.Row[Any]]:
        """The rows of one statement, on a connection of its own."""
        database = create_database(self.database_url)
        try:
            async with database.engine.connect() as conn:
                return list(await conn.execute(statement))
        finally:
            await database.dispose()

    async def outbox_rows(self) -> list[tuple[int, str, int]]:
        """(id, status, attempts) of every item."""
        rows = await self.query(
            sa.select(outbox.c.id, outbox.c.status, outbox.c.attempts).order_by(outbox.c.id)
        )
        return [(row.id, row.status, row.attempts) for row in rows]


async def stored_fields(
    database_url: str, merchant_id: MerchantId, ids: Sequence[CustomerId]
) -> dict[str, dict[str, object]]:
    """The ``ellity_*`` fields the database gives those customers now, by lower-cased email
    (customers without an email are left out)."""
    database = create_database(database_url)
    try:
        snapshots = await contact_snapshots(
            merchant_id, ids, uow=SqlUnitOfWorkFactory(database)(), clock=SystemClock()
        )
    finally:
        await database.dispose()
    return {s.email.lower(): dict(s.fields) for s in snapshots if s.email}


def ellity_fields(members: Mapping[str, Member]) -> dict[str, dict[str, object]]:
    """The ``ellity_*`` fields of each member of an emulated list, by email."""
    return {
        email: {k: v for k, v in member.custom_fields.items() if k.startswith("ellity_")}
        for email, member in members.items()
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def forget_queue(queue: str) -> None:
    """Every Redis key of the queue (jobs, heartbeats, counters)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _shut_down(deployment: Deployment) -> None:
    for process in deployment.processes:
        stop(process)
    forget_queue(deployment.queue)


@asynccontextmanager
async def on_sqlite(workdir: Path) -> AsyncIterator[Deployment]:
    """An installation on a migrated SQLite file in ``workdir``; its processes are stopped
    and its queue forgotten afterwards."""
    url = f"sqlite+aiosqlite:///{workdir / 'ellity.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    deployment = Deployment(workdir, url)
    try:
        yield deployment
    finally:
        _shut_down(deployment)


@asynccontextmanager
async def on_postgres(workdir: Path) -> AsyncIterator[Deployment]:
    """An installation on a fresh, migrated PostgreSQL database of its own, dropped
    afterwards with everything else."""
    name = f"ellity_e2e_{os.getpid()}"
    url = await _recreate_postgres_database(name)
    await asyncio.to_thread(migrate.upgrade, url)
    deployment = Deployment(workdir, url)
    try:
        yield deployment
    finally:
        _shut_down(deployment)
        await admin_statements(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
