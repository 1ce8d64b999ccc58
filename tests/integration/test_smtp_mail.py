"""System emails end to end in one process: the use cases on SQLite record them, the delivery
use case sends them through the SMTP mailer to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from pathlib import Path

import pytest

from ellity.adapters.email_templates import JinjaEmailTemplates
from ellity.adapters.secret_box import FernetSecretBox
from ellity.adapters.smtp_mailer import SmtpMailer
from ellity.adapters.sql.database import Database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.merchant import MerchantSettings, SmtpSecurity, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import DeliveryHealth
from ellity.domain.services import delivery, delivery_status, nightly
from ellity.domain.services.customers import CustomerInput, upsert_customer
from ellity.domain.services.merchants import create_merchant
from ellity.domain.services.points import earn_points
from tests.fakes import FakeClock, FakePasswordHasher, FakeRandom
from tests.smtp_server import SmtpServer, private_tls

BOX = FernetSecretBox("integration-test-secret-key")


@dataclass
class Shop:
    merchant_id: int
    uow: SqlUnitOfWorkFactory
    clock: FakeClock
    mailer: SmtpMailer

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

    async def customer(self, email: str, *, registered: bool = True) -> int:
        data = CustomerInput(email=email, first_name="Anna", registered=registered)
        result = await upsert_customer(
            self.merchant_id, data, uow=self.uow(), clock=self.clock, rng=FakeRandom(7)
        )
        customer_id = result.view.customer.id
        assert customer_id is not None
        return customer_id

    async def earn(self, customer_id: int, points: str, order_ref: str) -> None:
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
    mailer: SmtpMailer | None = None,
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
        host="127.0.0.1",
        port=server.port,
        username="anna",
        sender="body@anna.example.cz",
        security=security,
    )
    async with uow() as unit:
        await unit.merchants.update_smtp(merchant.id, smtp)
        await unit.merchants.set_smtp_password(merchant.id, BOX.encrypt(password))
        await unit.commit()
    return Shop(merchant.id, uow, clock, mailer or SmtpMailer(JinjaEmailTemplates(), timeout=5))


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
        assert "Dobrý den, Anna," in body
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


async def test_a_wrong_smtp_password_fails_the_email_with_the_servers_answer(
    clean_sqlite: Database, smtp: SmtpServer
) -> None:
    shop = await open_shop(clean_sqlite, smtp, password="not the password")
    ann = await shop.customer("ann@example.cz")
    await shop.earn(ann, "10", "o-1")
    assert await shop.deliver() == 0
    [failed] = await delivery_status.failed_deliveries(shop.merchant_id, uow=shop.uow())
    assert failed.last_error.startswith(
        f"The SMTP server 127.0.0.1:{smtp.port} did not accept the user name and password: 535"
    )
    assert "not the password" not in failed.last_error
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
    server = SmtpServer(logins={"anna": "s3cret pass"}, **{kind: server_tls}).start()  # type: ignore[arg-type]
    try:
        mailer = SmtpMailer(JinjaEmailTemplates(), timeout=5, tls_context=client_tls)
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
        assert "Anna" in body
    for line in lines:
        assert line in got.text()

    shop.clock.set(datetime(2025, 3, 11, 2, 0, tzinfo=UTC))
    await nightly.run_nightly(shop.merchant_id, uow_factory=shop.uow, clock=shop.clock)
    assert await shop.deliver() == 1
    expired = smtp.recorder.received[-1].text()
    assert ("-1 250,50" if locale == "cs" else "-1,250.50") in expired
    assert ("skončila platnost" if locale == "cs" else "end of their validity") in expired
