"""System emails end to end in one process: the use cases on SQLite record them, the delivery
use case sends them through the SMTP mailer to a real SMTP server (aiosmtpd).

The test servers listen on 127.0.0.1, so the mailers here allow private addresses, as a
deployment with ``ELLITY_SMTP_ALLOW_PRIVATE=true`` does; the last tests check what a default
deployment refuses."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ellity.adapters.email_templates import JinjaEmailTemplates
from ellity.adapters.public_address import Resolver
from ellity.adapters.secret_box import FernetSecretBox
from ellity.adapters.smtp_mailer import SmtpMailer
from ellity.adapters.sql.database import Database
from ellity.adapters.sql.tables.outbox import outbox
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.bootstrap import build_deps
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings, SmtpSecurity, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import DeliveryHealth
from ellity.domain.services import delivery, delivery_status, nightly
from ellity.domain.services.customers import CustomerInput, upsert_customer
from ellity.domain.services.merchants import create_merchant
from ellity.domain.services.points import earn_points
from ellity.ports.mailer import Mailer
from ellity.settings import load_settings
from tests.fakes import FakeClock, FakePasswordHasher, FakeRandom
from tests.processes import free_port
from tests.smtp_server import SmtpServer, private_tls

BOX = FernetSecretBox("integration-test-secret-key")


@dataclass
class Shop:
    merchant_id: MerchantId
    uow: SqlUnitOfWorkFactory
    clock: FakeClock
    mailer: Mailer

    async def deliver(self) -> int:
        return await delivery.deliver_pending(
            uow_factory=self.uow,
            mailer=self.mailer,
            secret_box=BOX,
            clock=self.clock,
            worker_token="integration",
            limit=50,
            delivery_timeout=5,
        )

    async def customer(self, email: str, *, registered: bool = True) -> CustomerId:
        data = CustomerInput(email=email, first_name="Anna", registered=registered)
        result = await upsert_customer(
            self.merchant_id, data, uow=self.uow(), clock=self.clock, rng=FakeRandom(7)
        )
        customer_id = result.view.customer.id
        assert customer_id is not None
        return customer_id

    async def earn(self, customer_id: CustomerId, points: str, order_ref: str) -> None:
        await earn_points(
            self.merchant_id,
            customer_id,
            Points.parse(points),
            order_ref=order_ref,
            uow=self.uow(),
            clock=self.clock,
        )

    async def health(self) -> DeliveryHealth:
        return await delivery_status.delivery_health(self.merchant_id, uow=self.uow())


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(logins={"anna": "s3cret pass"}).start()
    yield server
    server.stop()


async def open_shop(
    database: Database,
    server: SmtpServer,
    *,
    emails: bool = True,
    locale: str = "cs",
    security: SmtpSecurity = "none",
    password: str = "s3cret pass",  # noqa: S107 - a test server's password
    mailer: Mailer | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> Shop:
    uow = SqlUnitOfWorkFactory(database)
    clock = FakeClock()
    merchant = await create_merchant(
        slug="anna",
        settings=MerchantSettings(
            name="Kavárna U Anny",
            shop_url="https://anna.example.cz",
            locale=locale,  # type: ignore[arg-type]
            send_system_emails=emails,
        ),
        admin_email="admin@anna.example.cz",
        admin_password="a long password",
        uow=uow(),
        clock=clock,
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    smtp = SmtpSettings(
        host=host,
        port=server.port if port is None else port,
        username="anna",
        sender="body@anna.example.cz",
        security=security,
    )
    async with uow() as unit:
        await unit.merchants.update_smtp(merchant.id, smtp)
        await unit.merchants.set_smtp_password(merchant.id, BOX.encrypt(password))
        await unit.commit()
    return Shop(merchant.id, uow, clock, mailer or local_mailer())


def local_mailer(**options: Any) -> SmtpMailer:
    """A mailer of a deployment that relays through local servers (the test servers)."""
    return SmtpMailer(JinjaEmailTemplates(), **{"timeout": 5, "allow_private": True, **options})


async def test_earning_points_sends_a_czech_email_through_the_merchants_smtp_server(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    shop = await open_shop(clean_sqlite, smtp)
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "1250.50", "o-1")
    assert await shop.deliver() == 1
    [got] = smtp.recorder.received
    message = got.message
    assert (got.mail_from, got.rcpt_tos, got.login, got.tls) == (
        "body@anna.example.cz",
        ["ann@example.cz"],
        "anna",
        False,
    )
    assert message["Subject"] == "Změna stavu bodů – Kavárna U Anny"
    assert message["From"].addresses == (
        Address("Kavárna U Anny", addr_spec="body@anna.example.cz"),
    )
    assert message["To"] == "ann@example.cz"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@anna.example.cz>")
    assert message.get_content_type() == "multipart/alternative"
    for body in (got.text(), got.html()):
        assert "Dobrý den, Anno," in body  # the vocative
        assert "děkujeme za nákup" in body
        assert "+1 250,50" in body
        assert "10. 3. 2025" in body
    assert "Nový zůstatek: 1 250,50" in got.text()
    health = await shop.health()
    assert (health.pending, health.failed, health.last_delivered_at) == (0, 0, shop.clock.now())


async def test_an_english_programme_sends_english_text(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    shop = await open_shop(clean_sqlite, smtp, locale="en")
    ann = await shop.customer("ann@example.com")
    await shop.earn(ann, "1250.50", "o-1")
    await shop.deliver()
    [got] = smtp.recorder.received
    assert got.message["Subject"] == "Your points balance changed – Kavárna U Anny"
    assert "New balance: 1,250.50 points" in got.text()
    assert "Expiring next: 1,250.50 points on 10 March 2025" in got.text()


async def test_with_the_switch_off_nothing_is_recorded_or_sent(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    shop = await open_shop(clean_sqlite, smtp, emails=False)
    ann = await shop.customer("ann@example.cz", registered=False)  # would get a PIN email
    await shop.earn(ann, "10", "o-1")
    assert await shop.deliver() == 0
    assert smtp.recorder.received == []
    health = await shop.health()
    assert (health.pending, health.failed) == (0, 0)


async def test_while_the_server_is_down_the_email_waits_and_is_delivered_once_it_is_back(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    shop = await open_shop(clean_sqlite, smtp)
    ann = await shop.customer("ann@example.cz")
    smtp.stop()
    await shop.earn(ann, "10", "o-1")
    await shop.earn(ann, "20", "o-2")
    assert await shop.deliver() == 0
    async with shop.uow(read_only=True) as uow:
        retry_at = await uow.outbox.next_due()
    health = await shop.health()
    assert health.pending == 2
    assert retry_at is not None and retry_at > shop.clock.now()
    smtp.start()
    assert await shop.deliver() == 0  # not due yet: no waiting in real time, no hammering
    shop.clock.advance(minutes=1)  # past both first retries (30 s + at most 25 %)
    assert await shop.deliver() == 2
    assert (
        sorted(r.message["Subject"] for r in smtp.recorder.received)
        == ["Změna stavu bodů – Kavárna U Anny"] * 2
    )
    assert sorted("+10" in r.text() for r in smtp.recorder.received) == [False, True]
    health = await shop.health()
    assert (health.pending, health.failed) == (0, 0)


async def test_a_wrong_smtp_password_fails_the_email_with_a_short_reason_and_the_reply_code(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    shop = await open_shop(clean_sqlite, smtp, password="not the password")
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "10", "o-1")
    assert await shop.deliver() == 0
    [failed] = await delivery_status.failed_deliveries(shop.merchant_id, uow=shop.uow())
    assert failed.last_error == (
        f"The SMTP server 127.0.0.1:{smtp.port} did not accept the user name and password (535)."
    )  # aiosmtpd's own words ("Authentication credentials invalid") stay out
    assert smtp.recorder.received == []


async def test_a_pin_is_emailed_but_never_written_to_the_log(
    clean_sqlite: Database, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    shop = await open_shop(clean_sqlite, smtp)
    smtp.stop()  # a failed attempt first: its warning must not carry the PIN either
    ann = await shop.customer("ann@example.cz", registered=False)
    caplog.set_level(logging.DEBUG)  # everything the delivery logs, libraries included
    await shop.deliver()
    smtp.start()
    shop.clock.advance(hours=1)
    assert await shop.deliver() == 1
    async with shop.uow(read_only=True) as uow:
        customer = await uow.customers.get(shop.merchant_id, ann)
    assert customer is not None and customer.pin is not None
    [got] = smtp.recorder.received
    assert got.message["Subject"] == "Váš PIN – Kavárna U Anny"
    assert customer.pin in got.text() and customer.pin in got.html()
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # not the server's
    assert any("delivered" in r.getMessage() for r in ours)
    assert any("retry at" in r.getMessage() for r in ours)
    logged = "\n".join(r.getMessage() + repr(r.args) + str(r.exc_text) for r in ours)
    assert customer.pin not in logged


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_and_starttls_servers_with_a_trusted_certificate_get_the_email_encrypted(
    clean_sqlite: Database, tmp_path: Path, security: SmtpSecurity
) -> None:
    server_tls, client_tls = private_tls(tmp_path)
    kind = "starttls" if security == "starttls" else "implicit_tls"
    server = SmtpServer(logins={"anna": "s3cret pass"}, **{kind: server_tls}).start()
    try:
        mailer = local_mailer(tls_context=client_tls)
        shop = await open_shop(clean_sqlite, server, security=security, mailer=mailer)
        ann = await shop.customer("ann@example.cz")
        await shop.earn(ann, "10", "o-1")
        assert await shop.deliver() == 1
        [got] = server.recorder.received
        assert (got.tls or security == "tls", got.login) == (True, "anna")
    finally:
        server.stop()


async def test_an_untrusted_certificate_is_not_sent_to_and_is_retried(
    clean_sqlite: Database, tmp_path: Path
) -> None:
    server_tls, _ = private_tls(tmp_path)
    server = SmtpServer(starttls=server_tls).start()
    try:
        shop = await open_shop(clean_sqlite, server, security="starttls")
        ann = await shop.customer("ann@example.cz")
        await shop.earn(ann, "10", "o-1")
        assert await shop.deliver() == 0
        assert server.recorder.received == []
        assert (await shop.health()).pending == 1
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("locale", "subject", "lines"),
    [
        (
            "cs",
            "Vaše body brzy vyprší – Kavárna U Anny",
            ["(1 250,50) platí do 10. 3. 2025", "Váš zůstatek: 1 250,50"],
        ),
        (
            "en",
            "Your points expire soon – Kavárna U Anny",
            ["1,250.50 of your points", "valid until 10 March 2025", "Your balance: 1,250.50"],
        ),
    ],
)
async def test_the_nightly_sends_the_expiring_points_email_then_the_expired_points_email(
    clean_sqlite: Database, smtp: SmtpServer, locale: str, subject: str, lines: list[str]
) -> None:
    shop = await open_shop(clean_sqlite, smtp, locale=locale)
    async with shop.uow() as uow:
        merchant = await uow.merchants.get(shop.merchant_id)
        assert merchant is not None
        settings = dataclasses.replace(merchant.settings, pre_expiry_notify=True)
        await uow.merchants.update_settings(shop.merchant_id, settings)
        await uow.commit()
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "1250.50", "o-1")  # 10 March 2024: valid through 10 March 2025
    await shop.deliver()

    shop.clock.set(datetime(2025, 3, 1, 2, 0, tzinfo=UTC))
    await nightly.run_nightly(shop.merchant_id, uow_factory=shop.uow, clock=shop.clock)
    assert await shop.deliver() == 1
    got = smtp.recorder.received[-1]
    assert got.message["Subject"] == subject
    for body in (got.text(), got.html()):
        assert ("Dobrý den, Anno," if locale == "cs" else "Anna") in body  # cs: the vocative
    for line in lines:
        assert line in got.text()

    shop.clock.set(datetime(2025, 3, 11, 2, 0, tzinfo=UTC))
    await nightly.run_nightly(shop.merchant_id, uow_factory=shop.uow, clock=shop.clock)
    assert await shop.deliver() == 1
    expired = smtp.recorder.received[-1].text()
    assert ("-1 250,50" if locale == "cs" else "-1,250.50") in expired
    assert ("skončila platnost" if locale == "cs" else "end of their validity") in expired


# -- what a merchant's SMTP settings can reach, and what they can learn -----------------------

REFUSED = (
    "is on a local or private network; Ellity sends only through servers on the public internet."
)


class Listener:
    """A TCP service on 127.0.0.1 that counts connections and greets with ``greeting`` (then
    waits for the client to hang up); ``None`` closes each connection at once."""

    def __init__(self, greeting: bytes | None) -> None:
        self.greeting = greeting
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.greeting is not None:
            writer.write(self.greeting)
            await writer.drain()
            await reader.read()  # until the client hangs up
        writer.close()


def resolver(answers: dict[str, list[str]]) -> Resolver:
    """Names of the tests' own; any other name resolves to nothing."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


async def stored_errors(database: Database) -> list[str | None]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(sa.select(outbox.c.last_error).order_by(outbox.c.id))
        return [row.last_error for row in rows]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.20",
        "169.254.169.254",
        "::1",
        "fc00::25",
        "fd12:3456::1",
        "::ffff:127.0.0.1",
        "localhost",
        "127.1",  # the resolver's answer is checked, not the name as typed
        "2130706433",
    ],
)
async def test_a_default_deployment_refuses_a_loopback_or_private_smtp_server_without_connecting(
    clean_sqlite: Database, smtp: SmtpServer, host: str
) -> None:
    async with Listener(b"220 relay.corp.internal ESMTP\r\n") as listener:
        mailer = SmtpMailer(JinjaEmailTemplates(), timeout=1)  # the production default
        shop = await open_shop(clean_sqlite, smtp, host=host, port=listener.port, mailer=mailer)
        ann = await shop.customer("ann@example.cz")
        await shop.earn(ann, "10", "o-1")
        assert await shop.deliver() == 0
        assert listener.connections == 0
    [failed] = await delivery_status.failed_deliveries(shop.merchant_id, uow=shop.uow())
    assert failed.last_error == f"The SMTP server {host}:{listener.port} {REFUSED}"
    assert failed.attempts == 1  # failed at once: trying again cannot help


async def test_a_name_with_a_private_address_among_public_ones_is_refused(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    answers = {"mail.anna.test": ["93.184.216.34", "10.0.0.7"]}
    mailer = SmtpMailer(JinjaEmailTemplates(), timeout=1, resolve=resolver(answers))
    shop = await open_shop(clean_sqlite, smtp, host="mail.anna.test", port=25, mailer=mailer)
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "10", "o-1")
    assert await shop.deliver() == 0
    assert await stored_errors(clean_sqlite) == [f"The SMTP server mail.anna.test:25 {REFUSED}"]


async def test_an_smtp_server_name_that_resolves_to_nothing_waits_with_a_short_reason(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    mailer = SmtpMailer(JinjaEmailTemplates(), timeout=1)
    shop = await open_shop(clean_sqlite, smtp, host="mail.nothing-here.invalid", mailer=mailer)
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "10", "o-1")
    assert await shop.deliver() == 0
    assert (await shop.health()).pending == 1  # DNS may be back later
    assert await stored_errors(clean_sqlite) == [
        "The SMTP server name mail.nothing-here.invalid could not be found."
    ]


async def test_the_email_goes_to_the_address_that_was_checked_not_to_a_second_lookup(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    mailer = local_mailer(resolve=resolver({"mail.anna.test": ["127.0.0.1"]}))
    shop = await open_shop(clean_sqlite, smtp, host="mail.anna.test", mailer=mailer)
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "10", "o-1")
    assert await shop.deliver() == 1  # the system's resolver knows no mail.anna.test
    assert [r.rcpt_tos for r in smtp.recorder.received] == [["ann@example.cz"]]


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize(("host", "delivered"), [("localhost", 1), ("mail.anna.test", 0)])
async def test_tls_checks_the_certificate_against_the_name_typed_not_the_address_connected_to(
    clean_sqlite: Database, tmp_path: Path, security: SmtpSecurity, host: str, delivered: int
) -> None:
    server_tls, client_tls = private_tls(tmp_path)  # for localhost and 127.0.0.1
    kind = "starttls" if security == "starttls" else "implicit_tls"
    server = SmtpServer(logins={"anna": "s3cret pass"}, **{kind: server_tls}).start()
    try:
        both = resolver({"localhost": ["127.0.0.1"], "mail.anna.test": ["127.0.0.1"]})
        mailer = local_mailer(tls_context=client_tls, resolve=both)
        shop = await open_shop(clean_sqlite, server, security=security, mailer=mailer, host=host)
        ann = await shop.customer("ann@example.cz")
        await shop.earn(ann, "10", "o-1")
        assert await shop.deliver() == delivered
        assert server.recorder.count() == delivered
        if not delivered:
            assert await stored_errors(clean_sqlite) == [
                f"The SMTP server {host}:{server.port} did not show a valid certificate for {host}."
            ]
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("greeting", "error", "pending"),
    [
        (
            b"SSH-2.0-OpenSSH_9.2p1 bastion.corp.internal\r\n",
            "did not answer as an SMTP server.",
            0,
        ),
        (
            b"554 5.3.2 bastion.corp.internal runs no mail service\r\n",
            "did not accept the connection (554).",
            0,
        ),
        (b"220-relay.corp.internal v1.2\r\n", "did not answer in time.", 1),
        (None, "closed the connection.", 1),
    ],
)
async def test_what_the_remote_service_says_never_reaches_the_merchant(
    clean_sqlite: Database,
    smtp: SmtpServer,
    greeting: bytes | None,
    error: str,
    pending: int,
) -> None:
    async with Listener(greeting) as listener:
        shop = await open_shop(
            clean_sqlite, smtp, port=listener.port, mailer=local_mailer(timeout=0.5)
        )
        ann = await shop.customer("ann@example.cz")
        await shop.earn(ann, "10", "o-1")
        assert await shop.deliver() == 0
    assert await stored_errors(clean_sqlite) == [
        f"The SMTP server 127.0.0.1:{listener.port} {error}"
    ]
    assert (await shop.health()).pending == pending


async def test_a_closed_port_reads_like_any_server_that_cannot_be_reached(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    closed = free_port()
    shop = await open_shop(clean_sqlite, smtp, port=closed)
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "10", "o-1")
    assert await shop.deliver() == 0
    assert await stored_errors(clean_sqlite) == [
        f"The SMTP server 127.0.0.1:{closed} could not be reached."
    ]


@pytest.mark.parametrize(("flag", "delivered"), [(None, 0), ("false", 0), ("true", 1)])
async def test_only_a_deployment_that_allows_private_addresses_sends_through_a_local_relay(
    clean_sqlite: Database, smtp: SmtpServer, tmp_path: Path, flag: str | None, delivered: int
) -> None:
    environ = {
        "ELLITY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        "ELLITY_SECRET_KEY": "integration-test-secret-key",
        "ELLITY_VAR_DIR": str(tmp_path),
    }
    if flag is not None:
        environ["ELLITY_SMTP_ALLOW_PRIVATE"] = flag
    async with build_deps(load_settings(environ, dotenv=tmp_path / "no.env")) as deps:
        shop = await open_shop(clean_sqlite, smtp, mailer=deps.mailer)
        ann = await shop.customer("ann@example.cz")
        await shop.earn(ann, "10", "o-1")
        assert await shop.deliver() == delivered
    assert smtp.recorder.count() == delivered
