"""The log lines of ``ellity serve`` and ``ellity worker`` as an operator's log collector reads
them: their output is a pipe (not a terminal), so every line is one JSON object, and the lines
of a request, and of the deliveries it caused, carry the request's id.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.merchant import MerchantSettings, SmtpSettings
from ellity.domain.services.api_tokens import create_api_token
from ellity.domain.services.merchants import create_merchant
from tests.fakes import FakePasswordHasher
from tests.processes import (
    ELLITY,
    OutputLines,
    clean_env,
    first_answer,
    free_port,
    log_events,
    run_ellity,
    start_serve,
)
from tests.smtp_server import SmtpServer

REDIS_DB = 13  # ours; the test has a queue of its own too
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
GIVEN_ID = "shop-17:retry.2"


def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[str], output: OutputLines) -> list[dict[str, Any]]:
    """SIGTERM, then every line the process wrote, each parsed as JSON (or the test fails)."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return log_events(output.finish())


def access_line(events: list[dict[str, Any]], method: str, path: str) -> dict[str, Any]:
    [line] = [
        e
        for e in events
        if e["logger"] == "uvicorn.access" and f'"{method} {path} HTTP/1.1"' in e["event"]
    ]
    return line


def delivery_lines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["logger"] == "ellity.domain.services.delivery"]


def shop_with_an_api_token(workdir: Path) -> str:
    """Anna's shop (system emails on, no SMTP server yet) and an API token, by the commands."""
    made = run_ellity(
        workdir,
        "create-merchant",
        "--slug",
        "anna",
        "--name",
        "Anna",
        "--admin-email",
        "admin@anna.example.cz",
        "--admin-password",
        "a long password",
    )
    assert made.returncode == 0, made.stderr
    emails = run_ellity(workdir, "settings", "--merchant", "anna", "send_system_emails=true")
    assert emails.returncode == 0, emails.stderr
    token = run_ellity(workdir, "create-api-token", "--merchant", "anna")
    assert token.returncode == 0, token.stderr
    return token.stdout.strip()


def test_every_line_of_serve_is_json_and_the_lines_of_a_request_carry_its_id(
    tmp_path: Path,
) -> None:
    """The default single process (SQLite, the worker inside): the page, the API call, the 404
    and the request with an id of its own each get their access line with their id; the
    delivery of the email the API call recorded carries the API call's id."""
    token = shop_with_an_api_token(tmp_path)
    port = free_port()
    server = start_serve(tmp_path, port)
    output = OutputLines(server)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            page = first_answer(server, lambda: client.get("/login"))
            created = client.post(
                "/api/v1/customers",
                json={"email": "ann@example.cz"},  # a new customer: the PIN email is recorded
                headers={"Authorization": f"Bearer {token}"},
            )
            missing = client.get("/no-such-page")
            given = client.get("/health", headers={"X-Request-ID": GIVEN_ID})
        until(
            lambda: "outbox item 1 (email.pin_issued" in output.text(),
            within=30,
            what="the in-process worker's delivery of the PIN email",
        )
    finally:
        events = stop(server, output)

    assert (page.status_code, created.status_code, missing.status_code) == (200, 201, 404)
    assert given.headers["x-request-id"] == GIVEN_ID
    answered = {
        ("GET", "/login"): page,
        ("POST", "/api/v1/customers"): created,
        ("GET", "/no-such-page"): missing,
        ("GET", "/health"): given,
    }
    for (method, path), response in answered.items():
        request_id = response.headers["x-request-id"]
        assert access_line(events, method, path)["request_id"] == request_id, path
    ids = {response.headers["x-request-id"] for response in answered.values()}
    assert len(ids) == 4
    assert all(len(i) == 32 for i in ids - {GIVEN_ID})  # made: uuid4 hex
    [delivered, *_] = delivery_lines(events)
    assert delivered["request_id"] == created.headers["x-request-id"]
    # a line carries a request id only when it belongs to one of these requests or their work
    assert {e["request_id"] for e in events if "request_id" in e} == ids
    assert {e["logger"] for e in events} >= {"uvicorn.error", "uvicorn.access", "arq.worker"}
    assert all(e["timestamp"].endswith("Z") for e in events)
    assert token not in output.text()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"ellity-logs-e2e:{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{name}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def mailing_shop(database_url: str, smtp: SmtpServer) -> str:
    """Anna's shop with system emails on through the test's SMTP server; its API token."""
    await asyncio.to_thread(migrate.upgrade, database_url)
    database, clock = create_database(database_url), SystemClock()
    uow = SqlUnitOfWorkFactory(database)
    try:
        merchant = await create_merchant(
            slug="anna",
            settings=MerchantSettings(name="Anna", send_system_emails=True),
            admin_email="admin@anna.example.cz",
            admin_password="a long password",
            uow=uow(),
            clock=clock,
            hasher=FakePasswordHasher(),
        )
        assert merchant.id is not None
        async with uow() as unit:
            server = SmtpSettings(
                host="127.0.0.1", port=smtp.port, sender="body@anna.cz", security="none"
            )
            await unit.merchants.update_smtp(merchant.id, server)
            await unit.commit()
        _, token = await create_api_token(
            merchant.id, "e-shop", uow=uow(), clock=clock, rng=SecretsRandom()
        )
        return token
    finally:
        await database.dispose()


def test_every_line_of_a_worker_is_json_and_its_delivery_carries_the_requests_id(
    tmp_path: Path, smtp: SmtpServer, queue: str
) -> None:
    """``ellity serve`` and ``ellity worker`` on Redis: the email an API request recorded is
    sent by the worker, whose line about it carries the id the request came with."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'ellity.db'}"
    token = asyncio.run(mailing_shop(database_url, smtp))
    env = {
        "ELLITY_DATABASE_URL": database_url,
        "ELLITY_SECRET_KEY": "e2e-logs-secret-key",
        "ELLITY_QUEUE_NAME": queue,
        "ELLITY_SMTP_ALLOW_PRIVATE": "true",  # the test SMTP server is on 127.0.0.1
        "REDIS_URL": REDIS_URL,
    }
    port = free_port()
    server = start_serve(tmp_path, port, env=env)
    server_output = OutputLines(server)
    worker = subprocess.Popen(
        [*ELLITY, "worker"],
        cwd=tmp_path,
        env={**clean_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker_output = OutputLines(worker)
    try:
        until(lambda: "Starting worker" in worker_output.text(), within=30, what="the worker")
        created = first_answer(
            server,
            lambda: httpx.post(
                f"http://127.0.0.1:{port}/api/v1/customers",
                json={"email": "ann@example.cz"},  # a new customer: the PIN email is recorded
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": GIVEN_ID},
                timeout=10,
            ),
        )
        again = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert created.status_code == 201, created.text
        until(lambda: smtp.recorder.count() == 1, within=30, what="the PIN email")
        until(
            lambda: " delivered" in worker_output.text(),
            within=10,
            what="the worker's line about the delivery",
        )
    finally:
        worker_events = stop(worker, worker_output)
        server_events = stop(server, server_output)

    assert created.headers["x-request-id"] == GIVEN_ID
    [delivered] = [e for e in delivery_lines(worker_events) if e["event"].endswith(" delivered")]
    assert delivered["event"].startswith("outbox item 1 (email.pin_issued, merchant 1)")
    assert delivered["request_id"] == GIVEN_ID
    assert access_line(server_events, "POST", "/api/v1/customers")["request_id"] == GIVEN_ID
    assert (
        access_line(server_events, "GET", "/health")["request_id"]
        == (again.headers["x-request-id"])
    )
    worker_loggers = {e["logger"] for e in worker_events}
    assert {"arq.worker", "ellity.domain.services.delivery"} <= worker_loggers
    # the worker's own work (its start, its cron runs) belongs to no request
    assert [e for e in worker_events if "request_id" in e] == [delivered]
    assert token not in worker_output.text() + server_output.text()
