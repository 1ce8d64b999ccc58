"""Schemathesis over the OpenAPI schema the app serves: no request makes the API answer 5xx.

A real uvicorn server (in a thread, with its own event loop) serves the app on a migrated
SQLite file with one merchant, its API token and a customer holding points; every generated
request carries the token and names that customer, so the calls reach the use cases. The run
is bounded (``MAX_EXAMPLES`` per operation and phase) and deterministic (``SEED``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from schemathesis.checks import not_a_server_error

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.bootstrap import build_deps
from ellity.deps import Deps
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import customers, points
from ellity.domain.services.api_tokens import create_api_token
from ellity.domain.services.merchants import create_merchant
from ellity.settings import load_settings
from ellity.web.app import create_app
from tests.fakes import FakePasswordHasher
from tests.processes import free_port

SEED = 20240310
MAX_EXAMPLES = 25


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    token: str
    customer_id: int


async def seed(url: str) -> tuple[str, int]:
    """A merchant with an API token and a customer with 100 points."""
    database = create_database(url)
    uow, clock, rng = SqlUnitOfWorkFactory(database), SystemClock(), SecretsRandom()
    try:
        merchant = await create_merchant(
            slug="shop",
            settings=MerchantSettings(
                name="Shop", shop_url="https://shop.example.cz", referral_bonus=Points(500)
            ),
            admin_email="admin@shop.example.cz",
            admin_password="a long password",
            uow=uow(),
            clock=clock,
            hasher=FakePasswordHasher(),
        )
        assert merchant.id is not None
        _, token = await create_api_token(
            merchant.id, "schema test", uow=uow(), clock=clock, rng=rng
        )
        created = await customers.upsert_customer(
            merchant.id,
            customers.CustomerInput(email="ann@example.cz", shop_customer_id="c-1"),
            uow=uow(),
            clock=clock,
            rng=rng,
        )
        customer_id = created.view.customer.id
        assert customer_id is not None
        await points.earn_points(
            merchant.id, customer_id, Points(10_000), order_ref="o-1", uow=uow(), clock=clock
        )
        return token, customer_id
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    folder: Path = tmp_path_factory.mktemp("schema")
    url = f"sqlite+aiosqlite:///{folder / 'ellity.db'}"
    settings = load_settings(
        {
            "ELLITY_DATABASE_URL": url,
            "ELLITY_SECRET_KEY": "schema-test",
            "ELLITY_VAR_DIR": str(folder),
        },
        dotenv=folder / "no.env",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(lambda: build_deps(settings)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    seeded: list[tuple[str, int]] = []
    failures: list[BaseException] = []

    async def run() -> None:
        await asyncio.to_thread(migrate.upgrade, url)
        seeded.append(await seed(url))
        await server.serve()

    def thread_main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - raised again by the fixture below
            failures.append(exc)

    thread = threading.Thread(target=thread_main, name="schema-test-server", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    if failures or not server.started:
        raise RuntimeError("the API server did not start") from (failures or [None])[0]
    token, customer_id = seeded[0]
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", token, customer_id)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def served_schema_of_a_fresh_app() -> dict[str, Any]:
    """The schema document the app serves; the fixture checks the live server serves it too.

    Schemathesis' fixture-based loader does not work with pytest 9 (it sets ``_nodeid``), so
    the document is built at import, from an app that is never started.
    """

    @asynccontextmanager
    async def never_started() -> AsyncIterator[Deps]:
        raise RuntimeError("this app only describes itself")
        yield  # pragma: no cover

    return create_app(never_started).openapi_schema.to_schema()


SERVED = served_schema_of_a_fresh_app()
schema = schemathesis.openapi.from_dict(
    SERVED,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "mode": "all"},
        }
    ),
).include(path_regex=r"^/api/v1/")


def test_the_live_server_serves_the_schema_under_test(live_api: LiveApi) -> None:
    served = httpx.get(f"{live_api.base_url}/schema/openapi.json", timeout=10)
    assert served.json() == json.loads(json.dumps(SERVED))


@schema.parametrize()
def test_no_generated_request_makes_the_api_answer_with_a_server_error(
    case: schemathesis.Case[Any], live_api: LiveApi
) -> None:
    # Name the seeded customer wherever a valid id was generated; invalid ids stay invalid.
    if isinstance((case.path_parameters or {}).get("customer_id"), int):
        case.path_parameters["customer_id"] = live_api.customer_id
    case.call_and_validate(
        base_url=live_api.base_url,
        headers={"Authorization": f"Bearer {live_api.token}"},
        checks=[not_a_server_error],
        timeout=10,
    )
