"""The whole app over HTTP, on the real SQLite and PostgreSQL databases.

``deps_on(database)`` builds the bundle the way ``bootstrap.build_deps`` does, then points
storage at the test database and makes time, randomness and password hashing test doubles:
the clock stands still (dates in answers are exact) and hashing is instant.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from litestar import Litestar

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.bootstrap import build_deps
from ellity.deps import Deps
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services.api_tokens import create_api_token
from ellity.domain.services.merchants import create_merchant
from ellity.settings import load_settings
from ellity.web.app import create_app
from tests.asgi import asgi_transport
from tests.fakes import FakeClock, FakePasswordHasher, FakeRandom

BASE_URL = "http://testserver.local"


@asynccontextmanager
async def deps_on(
    database: Database,
    var_dir: Path,
    clock: FakeClock,
    *,
    ecomail_api_url: str = "",
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Deps]:
    """``ecomail_api_url`` points the app's Ecomail client at an emulator; ``env`` adds
    settings (``REDIS_URL``, ``ELLITY_QUEUE_NAME`` ...)."""
    url = database.engine.url.render_as_string(hide_password=False)
    settings = load_settings(
        {
            "ELLITY_DATABASE_URL": url,
            "ELLITY_SECRET_KEY": "e2e-secret-key",
            "ELLITY_VAR_DIR": str(var_dir),
            "ELLITY_BASE_URL": BASE_URL,
            "ELLITY_ECOMAIL_API_URL": ecomail_api_url,
            "ELLITY_SMTP_ALLOW_PRIVATE": "true",  # the tests' SMTP server is on 127.0.0.1
            **(env or {}),
        },
        dotenv=var_dir / "no.env",
    )
    async with build_deps(settings) as built:
        yield dataclasses.replace(
            built,
            uow=SqlUnitOfWorkFactory(database),
            clock=clock,
            rng=FakeRandom(seed=20240310),
            hasher=FakePasswordHasher(),
            ping_database=database.ping,
        )


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """``app.lifespan()`` held open by a task of its own.

    The lifespan must end in the task that began it, and a fixture's setup and teardown run
    in different tasks.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        await task  # the startup failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await task


@dataclass(frozen=True)
class Shop:
    """A merchant as its e-shop sees it: its id and an API token."""

    id: MerchantId
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class ApiClient:
    client: httpx.AsyncClient
    deps: Deps
    database: Database
    clock: FakeClock
    anna: Shop
    bob: Shop

    async def rows(self, table: str) -> int:
        async with self.database.engine.connect() as conn:
            return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())

    async def stored(self) -> dict[str, int]:
        """How many customers, ledger entries and lots are stored."""
        return {t: await self.rows(t) for t in ("customers", "ledger_entries", "point_lots")}


async def new_shop(deps: Deps, slug: str, *, referral_bonus: str = "0") -> Shop:
    merchant = await create_merchant(
        slug=slug,
        settings=MerchantSettings(
            name=slug.title(),
            shop_url=f"https://{slug}.example.cz",
            referral_bonus=Points.parse(referral_bonus),
        ),
        admin_email=f"admin@{slug}.example.cz",
        admin_password="a long password",
        uow=deps.uow(),
        clock=deps.clock,
        hasher=deps.hasher,
    )
    assert merchant.id is not None
    _, token = await create_api_token(
        merchant.id, "e-shop", uow=deps.uow(), clock=deps.clock, rng=deps.rng
    )
    return Shop(id=merchant.id, token=token)


@pytest.fixture
async def api(sql_database: Database, tmp_path: Path) -> AsyncIterator[ApiClient]:
    """The app on SQLite, then on PostgreSQL; two merchants (Anna's and Bob's) with tokens."""
    clock = FakeClock()  # 2024-03-10 09:00 UTC
    deps_holder: list[Deps] = []

    @asynccontextmanager
    async def provide_deps() -> AsyncIterator[Deps]:
        async with deps_on(sql_database, tmp_path, clock) as deps:
            deps_holder.append(deps)
            yield deps

    app = create_app(provide_deps, debug=True)
    async with (
        running(app),
        httpx.AsyncClient(transport=asgi_transport(app), base_url=BASE_URL) as client,
    ):
        deps = deps_holder[0]
        anna = await new_shop(deps, "anna", referral_bonus="50")
        bob = await new_shop(deps, "bob")
        yield ApiClient(
            client=client, deps=deps, database=sql_database, clock=clock, anna=anna, bob=bob
        )
