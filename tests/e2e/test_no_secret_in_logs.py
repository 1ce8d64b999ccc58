"""No secret in any log record, on SQLite and on PostgreSQL.

Every logger of the process is turned to DEBUG (the SQL engine, aiosqlite, httpx, httpcore,
Litestar, uvicorn, Ellity, ...) and every record is kept, from the loggers that propagate to
the root and from those that do not. The app runs under uvicorn (access log on, Litestar in
debug mode, which logs every uncaught exception with its path), the worker's delivery runs
against the Ecomail emulator and an SMTP server. Then the failure paths: the database refuses
every write to customers (create, update, a new PIN, registering) and every stored webhook
notification (a trigger on SQLite, a constraint on PostgreSQL), Ecomail answers 500, 429 and
"wrong key", the SMTP server refuses the password.
No record (message, arguments, any text attribute, the formatted traceback, the exception as
raised) may show the API token, the Ecomail key, the SMTP password (also as the AUTH exchange
encodes it), a PIN or the webhook token. Nor may any JSON line ``ellity serve`` and ``ellity
worker`` would write of them (``ellity.logs``: the exception formatted anew, the request id).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from litestar import Litestar

from ellity.adapters.sql.database import Database
from ellity.bootstrap import build_deps
from ellity.deps import Deps
from ellity.domain.model.merchant import MerchantSettings, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.pin import PIN_DIGITS
from ellity.domain.services import integration, merchants, newsletter_intake
from ellity.domain.services.api_tokens import create_api_token
from ellity.logs import log_formatter
from ellity.settings import load_settings
from ellity.web.app import create_app
from ellity.worker import deliver_once
from tests.e2e.conftest import deps_on
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.fakes import FakeClock, FakePasswordHasher, FakeRandom
from tests.processes import first_answer, free_port, logged, start_serve
from tests.smtp_server import SmtpServer

ECOMAIL_KEY = "ecomail-key-Qw7tZ3vB9xLm"
SMTP_USER = "anna"
SMTP_PASSWORD = "smtp-pass-Vr7kq2Wn"  # what Ellity sends; the server expects another one
PINS = ("924683", "570218")  # every PIN the app draws, in turn
ANN = "ann@anna-customers.cz"

#: The test's own servers log what they receive (aiosmtpd logs the AUTH exchange): they
#: stand for the outside world, not for Ellity.
OUTSIDE = ("mail.log",)


class PinsInTurn(FakeRandom):
    """A seeded ``randbelow`` whose PINs are ``PINS`` in turn, so the test knows them."""

    def __init__(self) -> None:
        super().__init__(seed=11)
        self._drawn = 0

    def randbelow(self, n: int) -> int:
        if n != 10**PIN_DIGITS:
            return super().randbelow(n)
        pin = PINS[self._drawn % len(PINS)]
        self._drawn += 1
        return int(pin)


class EveryRecord(logging.Handler):
    """Keeps each record, and the JSON line Ellity's processes write of it (rendered as it is
    emitted: the request id is the one bound then)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.json_lines: list[str] = []
        self._json = log_formatter("json")
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = "" if record.name.startswith(OUTSIDE) else self._json.format(record)
        with self._lock_records:
            self.records.append(record)
            if line:
                self.json_lines.append(line)


@contextmanager
def every_logger_at_debug() -> Iterator[EveryRecord]:
    """All loggers at DEBUG, every record kept (also from loggers that do not propagate)."""
    handler = EveryRecord()
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]  # fmt: skip
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    attached = [logger for logger in loggers if logger is logging.root or not logger.propagate]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    for logger in attached:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in attached:
            logger.removeHandler(handler)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


def everything_shown(record: logging.LogRecord) -> str:
    """All a handler could write of the record, and the exception as it was raised."""
    parts = [logging.Formatter().format(record), repr(record.args)]
    parts += [str(value) for value in vars(record).values() if isinstance(value, str)]
    if record.exc_info and record.exc_info[1] is not None:
        parts += traceback.format_exception(record.exc_info[1])
    return "\n".join(parts)


@contextmanager
def served(app: Litestar, port: int) -> Iterator[str]:
    """The app under uvicorn in a thread (lifespan on, access log on)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None,
        log_level="debug", access_log=True, timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ellity-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


# -- the database refuses some writes --------------------------------------------------

_REFUSED = ("customers", "newsletter_notifications")


async def refuse_writes(database: Database) -> None:
    """SQLite: triggers that raise. PostgreSQL: a constraint no new row meets, whose error
    details the failing row (PIN included) unless Ellity drops the detail."""
    async with database.write_engine.begin() as conn:
        for table in _REFUSED:
            if database.is_sqlite:
                for op in ("INSERT", "UPDATE"):
                    await conn.execute(
                        sa.text(
                            f"CREATE TRIGGER refuse_{op.lower()}_{table} BEFORE {op} ON {table}"
                            " BEGIN SELECT RAISE(ABORT, 'writes are refused'); END"
                        )
                    )
            else:
                await conn.execute(
                    sa.text(
                        f"ALTER TABLE {table} ADD CONSTRAINT refuse_writes CHECK (false) NOT VALID"
                    )
                )


async def allow_writes(database: Database) -> None:
    async with database.write_engine.begin() as conn:
        for table in _REFUSED:
            if database.is_sqlite:
                for op in ("insert", "update"):
                    await conn.execute(sa.text(f"DROP TRIGGER IF EXISTS refuse_{op}_{table}"))
            else:
                await conn.execute(
                    sa.text(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS refuse_writes")
                )


# -- the shop ------------------------------------------------------------------------------


@dataclasses.dataclass
class Shop:
    merchant_id: int
    api_token: str
    webhook_token: str
    list_id: int


async def open_shop(deps: Deps, smtp: SmtpServer, clock: FakeClock, base_url: str) -> Shop:
    """Emails from Ellity on (SMTP with a password), Ecomail active, a webhook, an API token."""
    merchant = await merchants.create_merchant(
        slug="anna",
        settings=MerchantSettings(
            name="Anna",
            shop_url="https://anna.example.cz",
            send_system_emails=True,
            newsletter_reward=Points.parse("50"),
        ),
        admin_email="admin@anna.example.cz",
        admin_password="a long password",
        uow=deps.uow(),
        clock=clock,
        hasher=deps.hasher,
    )
    assert merchant.id is not None
    smtp_settings = SmtpSettings(
        host="127.0.0.1",
        port=smtp.port,
        username=SMTP_USER,
        sender="body@anna.example.cz",
        security="none",
    )
    async with deps.uow() as uow:
        await uow.merchants.update_smtp(merchant.id, smtp_settings)
        await uow.merchants.set_smtp_password(merchant.id, deps.secret_box.encrypt(SMTP_PASSWORD))
        await uow.commit()
    _, api_token = await create_api_token(
        merchant.id, "e-shop", uow=deps.uow(), clock=clock, rng=deps.rng
    )
    common: dict[str, Any] = {
        "uow_factory": deps.uow,
        "platforms": deps.marketing,
        "secret_box": deps.secret_box,
        "clock": clock,
    }
    [contact_list] = await integration.connect_ecomail(merchant.id, ECOMAIL_KEY, **common)
    await integration.activate_ecomail(merchant.id, contact_list.id, **common)
    webhook = await newsletter_intake.webhook_address(
        merchant.id,
        uow_factory=deps.uow,
        secret_box=deps.secret_box,
        rng=deps.rng,
        clock=clock,
        base_url=base_url,
    )
    return Shop(merchant.id, api_token, webhook.rsplit("/", 1)[1], int(contact_list.id))


@asynccontextmanager
async def app_on(
    database: Database, var_dir: Path, clock: FakeClock, ecomail_url: str
) -> AsyncIterator[tuple[Litestar, str]]:
    """The app as ``ellity serve`` builds it (debug on), its PINs known to the test."""
    port = free_port()
    app_settings = load_settings(
        {
            "ELLITY_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
            "ELLITY_SECRET_KEY": "e2e-secret-key",
            "ELLITY_VAR_DIR": str(var_dir),
            "ELLITY_BASE_URL": f"http://127.0.0.1:{port}",
            "ELLITY_ECOMAIL_API_URL": ecomail_url,
            "ELLITY_SMTP_ALLOW_PRIVATE": "true",
        },
        dotenv=var_dir / "no.env",
    )

    @asynccontextmanager
    async def provide() -> AsyncIterator[Deps]:
        async with build_deps(app_settings) as built:
            yield dataclasses.replace(
                built, clock=clock, rng=PinsInTurn(), hasher=FakePasswordHasher()
            )

    yield create_app(provide, debug=True), f"http://127.0.0.1:{port}"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(logins={SMTP_USER: "the password the server knows"}).start()
    yield server
    server.stop()


def secrets_in(text: str, shop: Shop) -> list[str]:
    plain_auth = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()
    login_auth = base64.b64encode(SMTP_PASSWORD.encode()).decode()
    named = {
        "the API token": shop.api_token,
        "the Ecomail key": ECOMAIL_KEY,
        "the SMTP password": SMTP_PASSWORD,
        "the SMTP password in AUTH PLAIN": plain_auth,
        "the SMTP password in AUTH LOGIN": login_auth,
        "the webhook token": shop.webhook_token,
        **{f"the PIN {pin}": pin for pin in PINS},
    }
    return [name for name, secret in named.items() if secret in text]


async def test_no_log_record_shows_a_secret_when_the_database_ecomail_and_smtp_fail(
    sql_database: Database, tmp_path: Path, smtp: SmtpServer
) -> None:
    clock = FakeClock()
    with (
        Emulator(clock=clock.now) as emu,
        EmulatorServer(emu, port=0) as ecomail,
    ):
        emu.add_account(ECOMAIL_KEY).add_list("Newsletter")
        async with (
            app_on(sql_database, tmp_path, clock, ecomail.url) as (app, base_url),
            deps_on(sql_database, tmp_path, clock, ecomail_api_url=ecomail.url) as worker_deps,
        ):
            with every_logger_at_debug() as logged:
                try:
                    shop = await _drive_the_failures(
                        app,
                        base_url,
                        database=sql_database,
                        worker_deps=worker_deps,
                        smtp=smtp,
                        emu=emu,
                        clock=clock,
                    )
                finally:
                    await allow_writes(sql_database)

    records = [r for r in logged.records if not r.name.startswith(OUTSIDE)]
    by_logger = {r.name for r in records}
    # the failure paths were logged, libraries included
    assert sum(1 for r in records if r.name == "ellity.web.errors" and r.exc_info) == 5
    assert any(r.name == "litestar" and r.exc_info for r in records)
    assert any(
        r.name == "uvicorn.access" and "/webhooks/ecomail/" in r.getMessage() for r in records
    )
    assert {"sqlalchemy.engine.Engine", "httpx", "httpcore.http11"} <= by_logger
    assert ("aiosqlite" in by_logger) == sql_database.is_sqlite
    assert any("did not accept the user name and password" in r.getMessage() for r in records)
    assert any("Ecomail" in r.getMessage() and r.levelno >= logging.WARNING for r in records)
    leaks = {
        f"{r.name}: {r.getMessage()[:120]}": found
        for r in records
        if (found := secrets_in(everything_shown(r), shop))
    }
    assert leaks == {}

    # the JSON lines: one object each, the failures' tracebacks in them, no secret either
    events = [json.loads(line) for line in logged.json_lines]
    assert len(events) == len(records)
    failures = [e for e in events if e["logger"] == "ellity.web.errors" and "exception" in e]
    assert len(failures) == 5
    assert all(e["exception"].startswith("Traceback") and e.get("request_id") for e in failures)
    assert any(e["logger"] == "litestar" and "exception" in e for e in events)
    # the Ecomail event an API request recorded fails under that request's id
    assert any(
        e["logger"] == "ellity.adapters.ecomail.client"
        and e["level"] == "warning"
        and "/tracker/events" in e["event"]
        and e.get("request_id")
        for e in events
    )
    json_leaks = {
        f"{e['logger']}: {str(e['event'])[:120]}": found
        for line, e in zip(logged.json_lines, events, strict=True)
        if (found := secrets_in(line, shop))
    }
    assert json_leaks == {}


async def _drive_the_failures(
    app: Litestar,
    base_url: str,
    *,
    database: Database,
    worker_deps: Deps,
    smtp: SmtpServer,
    emu: Emulator,
    clock: FakeClock,
) -> Shop:
    shop = await open_shop(worker_deps, smtp, clock, base_url)
    auth = {"Authorization": f"Bearer {shop.api_token}"}
    with served(app, int(base_url.rsplit(":", 1)[1])):
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as client:
            created = await client.post(
                "/api/v1/customers", json={"email": ANN, "first_name": "Ann"}, headers=auth
            )
            assert created.status_code == 201
            ann = created.json()
            assert ann["pin"] == PINS[0]

            # Ecomail answers 500, 429 and "wrong key"; the SMTP server refuses the password
            faults: list[Callable[[], object]] = [
                lambda: emu.faults.fail_next(1, 500),
                emu.faults.rate_limit_next,
                lambda: emu.faults.fail_next(1, 401),
            ]
            for fault in faults:
                fault()
                await deliver_once(worker_deps, "log-test", limit=100)
                clock.advance(minutes=10)

            await refuse_writes(database)
            refused = [
                await client.post(
                    "/api/v1/customers", json={"email": "bob@example.cz"}, headers=auth
                ),
                await client.post(
                    "/api/v1/customers", json={"email": ANN, "first_name": "Anna"}, headers=auth
                ),
                await client.post(f"/api/v1/customers/{ann['id']}/pin", headers=auth),
                await client.post(
                    "/api/v1/customers", json={"email": ANN, "registered": True}, headers=auth
                ),
                await client.post(
                    f"/webhooks/ecomail/{shop.webhook_token}",
                    json={
                        "payload": {
                            "email": ANN,
                            "status": "SUBSCRIBED",
                            "listId": shop.list_id,
                            "campaignId": None,
                        }
                    },
                ),
            ]
            assert [r.status_code for r in refused] == [500] * 5
            wrong = await client.post(f"/webhooks/ecomail/{shop.webhook_token[::-1]}", json={})
            assert wrong.status_code == 404
    return shop


def test_the_served_app_logs_webhook_paths_with_the_token_masked(tmp_path: Path) -> None:
    """``ellity serve`` as operators run it: uvicorn and Litestar configure logging their
    own way, and the access log still never shows a token."""
    token = "sc5hQATgpJIJpJPHZf8vIt7-fa_t1FTzzcTCf5lsuVE"
    port = free_port()
    server = start_serve(tmp_path, port)
    try:
        answer = first_answer(
            server,
            lambda: httpx.post(
                f"http://127.0.0.1:{port}/webhooks/ecomail/{token}", json={}, timeout=2
            ),
        )
        assert answer.status_code == 404
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert '"POST /webhooks/ecomail/… HTTP/1.1" 404' in logged(output)
    assert token not in output
