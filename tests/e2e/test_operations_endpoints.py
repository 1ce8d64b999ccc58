"""``/ready`` and ``/metrics`` of the real app, on SQLite and PostgreSQL, with the real Redis
at 127.0.0.1:6379 (``ELLITY_TEST_REDIS_URL``; a namespace of its own per test), and with
each dependency gone: a database or Redis at a closed port, no worker, an old schema."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from prometheus_client.parser import text_string_to_metric_families

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import Database
from ellity.bootstrap import build_deps
from ellity.deps import Deps
from ellity.domain.model.newsletter import Notification, SubscriptionChange
from ellity.ports.operations import INTERRUPTED
from ellity.settings import load_settings
from ellity.web.app import create_app
from ellity.worker import running_in_process
from tests.asgi import asgi_transport
from tests.conftest import _recreate_postgres_database, admin_statements
from tests.e2e.conftest import BASE_URL, deps_on, new_shop, running
from tests.fakes import FakeClock
from tests.processes import free_port

REDIS_URL = os.environ.get("ELLITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ALL_OK = {"database": "ok", "migrations": "ok", "redis": "ok", "worker": "ok"}


def redis_env(redis_url: str = REDIS_URL, **more: str) -> dict[str, str]:
    queue = f"ellity-test-ops:{uuid.uuid4().hex}"
    return {"REDIS_URL": redis_url, "ELLITY_QUEUE_NAME": queue, **more}


def closed_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@asynccontextmanager
async def app_on(
    provide: Callable[[], AbstractAsyncContextManager[Deps]],
) -> AsyncIterator[tuple[httpx.AsyncClient, Deps]]:
    """The app with the ``Deps`` ``provide`` gives, and a client; the bundle too."""
    given: list[Deps] = []

    @asynccontextmanager
    async def provide_deps() -> AsyncIterator[Deps]:
        async with provide() as deps:
            given.append(deps)
            yield deps

    app = create_app(provide_deps, debug=True)
    async with (
        running(app),
        httpx.AsyncClient(transport=asgi_transport(app), base_url=BASE_URL) as client,
    ):
        yield client, given[0]


def built_on(database_url: str, var_dir: Path, env: Mapping[str, str]) -> Callable[[], Any]:
    """``Deps`` exactly as ``ellity serve`` builds them for ``database_url``."""
    settings = load_settings(
        {
            "ELLITY_DATABASE_URL": database_url,
            "ELLITY_SECRET_KEY": "e2e-secret-key",
            "ELLITY_VAR_DIR": str(var_dir),
            **env,
        },
        dotenv=var_dir / "no.env",
    )
    return lambda: build_deps(settings)


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/ready")
    return response.status_code, response.json()


async def test_ready_when_a_worker_beats_and_not_once_it_stops(
    sql_database: Database, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with app_on(lambda: deps_on(sql_database, tmp_path, clock, env=redis_env())) as (
        client,
        deps,
    ):
        async with running_in_process(deps):  # the worker `ellity serve` runs in-process
            for _ in range(50):  # its first beat is on its way
                status, body = await readiness(client)
                if status == 200:
                    break
                await asyncio.sleep(0.05)
            assert (status, body) == (200, {"status": "ready", "checks": ALL_OK})
        status, body = await readiness(client)  # a worker that stops is forgotten at once
        assert status == 503
        assert body["failed"] == ["worker"]


async def test_not_ready_without_a_worker_heartbeat(sql_database: Database, tmp_path: Path) -> None:
    clock = FakeClock()
    async with app_on(lambda: deps_on(sql_database, tmp_path, clock, env=redis_env())) as (
        client,
        _,
    ):
        status, body = await readiness(client)
    assert status == 503
    assert body == {
        "status": "unavailable",
        "checks": ALL_OK | {"worker": "no worker heartbeat in the last 60 s"},
        "failed": ["worker"],
    }


async def test_not_ready_when_redis_does_not_answer(sql_database: Database, tmp_path: Path) -> None:
    clock = FakeClock()
    redis_url = closed_redis()
    async with app_on(lambda: deps_on(sql_database, tmp_path, clock, env=redis_env(redis_url))) as (
        client,
        _,
    ):
        status, body = await readiness(client)
    assert status == 503
    assert body["failed"] == ["redis", "worker"]
    assert body["checks"]["redis"].startswith("Redis did not answer")
    assert redis_url.rsplit(":", 1)[1] not in str(body)  # no URL, not even its port


@pytest.fixture(params=["sqlite", "postgres"])
def unreachable_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}"  # a folder: SQLite cannot open it
    return f"postgresql+asyncpg://postgres:pw-never-shown@127.0.0.1:{free_port()}/gone"


async def test_not_ready_when_the_database_does_not_answer(
    unreachable_database: str, tmp_path: Path
) -> None:
    provide = built_on(unreachable_database, tmp_path / "var", redis_env())
    async with app_on(provide) as (client, deps):
        await deps.heartbeats.beat("test-worker")
        status, body = await readiness(client)
        health = await client.get("/health")
    assert status == 503
    assert body["failed"] == ["database", "migrations"]
    assert body["checks"]["database"].startswith("unreachable (")
    assert "pw-never-shown" not in str(body)
    assert health.status_code == 503  # liveness, as before, pings the database too


@pytest.fixture(params=["sqlite", "postgres"])
async def old_schema(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database the migrations brought only to the revision before the newest."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        url = await _recreate_postgres_database(f"ellity_test_old_{os.getpid()}")
    code = migrate.code_revision()
    config = migrate.alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, f"{code}-1")
    yield url
    if request.param == "postgres":
        await admin_statements(
            f'DROP DATABASE IF EXISTS "ellity_test_old_{os.getpid()}" WITH (FORCE)'
        )


async def test_not_ready_when_the_database_is_at_an_older_revision(
    old_schema: str, tmp_path: Path
) -> None:
    async with app_on(built_on(old_schema, tmp_path / "var", redis_env())) as (client, deps):
        await deps.heartbeats.beat("test-worker")
        status, body = await readiness(client)
    assert status == 503
    assert body["failed"] == ["migrations"]
    code = migrate.code_revision()
    assert body["checks"]["migrations"].endswith(f"the code at {code}: run `ellity migrate`")
    assert "the database is at revision 0" in body["checks"]["migrations"]


# -- /metrics -----------------------------------------------------------------------------


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the Prometheus text, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_show_the_queues_the_sources_and_each_route_s_latency(
    sql_database: Database, tmp_path: Path
) -> None:
    clock = FakeClock()
    now = clock.now()
    minute = timedelta(minutes=1)
    async with app_on(lambda: deps_on(sql_database, tmp_path, clock, env=redis_env())) as (
        client,
        deps,
    ):
        shop = await new_shop(deps, "anna")
        async with deps.uow() as uow:
            for minutes in (10, 5, 1):
                await uow.outbox.add(
                    shop.id, "email.test", {"n": minutes}, at=now - minutes * minute
                )
            await uow.newsletter.enqueue(
                shop.id,
                Notification("ann@example.cz", SubscriptionChange.SUBSCRIBED, "7", None),
                received_at=now - 2 * minute,
                at=now - 2 * minute,
            )
            await uow.commit()
        async with deps.uow() as uow:  # a worker claimed the oldest for a minute, then died
            await uow.outbox.claim(token="dead", now=now - 3 * minute, lease=minute, limit=1)
            await uow.commit()
        missing = await client.get("/api/v1/customers/987654", headers=shop.auth)
        assert missing.status_code == 404
        deps.counters.add(INTERRUPTED, kind="ecomail.event")  # as a worker counts one
        await deps.counters.flush()  # what the app counted is written within a second anyway
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = scraped(response.text)

    def value(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    expected = {
        "outbox": (3, 600.0, 1),
        "ecomail_contacts": (0, 0.0, 0),
        "newsletter_notifications": (1, 120.0, 0),
    }
    for queue, (depth, age, dead) in expected.items():
        assert value("ellity_queue_depth", queue=queue) == depth
        assert value("ellity_queue_oldest_age_seconds", queue=queue) == age
        assert value("ellity_queue_held_by_dead_workers", queue=queue) == dead
    for source in ("database", "counters", "budget", "heartbeats"):
        assert value("ellity_metrics_source_up", source=source) == 1
    assert value("ellity_workers_seen") == 0
    assert value("ellity_ecomail_budget_limit") == 950
    assert value("ellity_ecomail_rate_limited_total") == 0
    assert value("ellity_interrupted_deliveries_total", kind="ecomail.event") == 1
    route = {"method": "GET", "route": "/api/v1/customers/{customer_id}"}
    assert value("ellity_http_request_duration_seconds_count", **route) == 1
    assert value("ellity_http_request_duration_seconds_bucket", **route, le="+Inf") == 1
    assert value("ellity_http_request_duration_seconds_sum", **route) > 0
    assert "987654" not in response.text  # the route's template, never the path
    assert shop.token not in response.text


async def test_metrics_can_be_turned_off(sql_database: Database, tmp_path: Path) -> None:
    clock = FakeClock()
    env = redis_env(ELLITY_METRICS="off")
    async with app_on(lambda: deps_on(sql_database, tmp_path, clock, env=env)) as (client, _):
        response = await client.get("/metrics")
    assert response.status_code == 404


async def test_metrics_still_show_the_queues_when_redis_does_not_answer(
    sql_database: Database, tmp_path: Path
) -> None:
    clock = FakeClock()
    env = redis_env(closed_redis())
    async with app_on(lambda: deps_on(sql_database, tmp_path, clock, env=env)) as (client, _):
        response = await client.get("/metrics")
    assert response.status_code == 200
    samples = scraped(response.text)
    assert samples["ellity_queue_depth", (("queue", "outbox"),)] == 0
    assert samples["ellity_metrics_source_up", (("source", "database"),)] == 1
    assert samples["ellity_metrics_source_up", (("source", "counters"),)] == 0
    assert samples["ellity_metrics_source_up", (("source", "heartbeats"),)] == 0
