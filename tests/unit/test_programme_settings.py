"""The settings page's use cases beyond saving: the test email, and why emails do not go out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ellity.domain.model.errors import InvalidInput, SmtpTestFailed
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import MerchantSettings, SmtpSettings
from ellity.domain.model.outbox import OutboxStatus
from ellity.domain.model.system_email import EmailTemplate
from ellity.domain.services import programme_settings
from ellity.domain.services.merchants import create_merchant
from ellity.ports.mailer import MailerRejected, MailerUnavailable
from tests.fakes import FakeClock, FakeMailer, FakePasswordHasher, FakeSecretBox, InMemoryStore

SMTP = SmtpSettings(host="smtp.example.cz", port=587, sender="shop@example.cz", username="shop")


async def shop(store: InMemoryStore, clock: FakeClock, *, smtp: SmtpSettings = SMTP) -> MerchantId:
    merchant = await create_merchant(
        slug="kavarna",
        settings=MerchantSettings(name="Kavárna", locale="cs"),
        admin_email="admin@kavarna.example.cz",
        admin_password="a long password",
        uow=store.unit_of_work(),
        clock=clock,
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    async with store.unit_of_work() as uow:
        await uow.merchants.update_smtp(merchant.id, smtp)
        await uow.merchants.set_smtp_password(merchant.id, FakeSecretBox().encrypt("s3cret"))
        await uow.commit()
    return merchant.id


async def test_the_test_email_goes_out_at_once_through_the_saved_account() -> None:
    store, clock, mailer = InMemoryStore(), FakeClock(), FakeMailer()
    merchant_id = await shop(store, clock)
    sent_to = await programme_settings.send_test_email(
        merchant_id,
        "  Anna@Kavarna.cz ",
        uow_factory=store.unit_of_work,
        mailer=mailer,
        secret_box=FakeSecretBox(),
        clock=clock,
    )
    assert sent_to == "Anna@Kavarna.cz"
    [sent] = mailer.sent
    assert (sent.email.to, sent.email.template, sent.email.locale) == (
        "Anna@Kavarna.cz",
        EmailTemplate.TEST,
        "cs",
    )
    assert (sent.server, sent.password) == (SMTP, "s3cret")
    assert sent.email.values["programme"] == "Kavárna"
    assert store.state.outbox == {}  # nothing queued: it was sent, not recorded
    assert store.state.test_emails_sent == {merchant_id: clock.now()}  # the checklist's step


@pytest.mark.parametrize(
    "failure",
    [
        MailerUnavailable("The SMTP server smtp.example.cz:587 could not be reached."),
        MailerRejected("The SMTP server did not accept the user name and password (535)."),
    ],
)
async def test_a_refused_test_email_says_why_in_the_merchants_words(failure: Exception) -> None:
    store, clock, mailer = InMemoryStore(), FakeClock(), FakeMailer()
    merchant_id = await shop(store, clock)
    mailer.fail_next(failure)
    with pytest.raises(SmtpTestFailed) as refused:
        await programme_settings.send_test_email(
            merchant_id,
            "anna@kavarna.cz",
            uow_factory=store.unit_of_work,
            mailer=mailer,
            secret_box=FakeSecretBox(),
            clock=clock,
        )
    assert refused.value.message == f"The test email was not sent: {failure}"
    assert "s3cret" not in refused.value.message
    assert store.state.test_emails_sent == {}


@pytest.mark.parametrize(
    ("to", "smtp", "message"),
    [
        ("", SMTP, "Enter the address"),
        ("not an address", SMTP, "email"),
        ("anna@kavarna.cz", SmtpSettings(), "SMTP is not set up"),
    ],
)
async def test_a_test_email_that_cannot_be_sent_is_refused_before_any_connection(
    to: str, smtp: SmtpSettings, message: str
) -> None:
    store, clock, mailer = InMemoryStore(), FakeClock(), FakeMailer()
    merchant_id = await shop(store, clock, smtp=smtp)
    with pytest.raises(InvalidInput, match=message):
        await programme_settings.send_test_email(
            merchant_id,
            to,
            uow_factory=store.unit_of_work,
            mailer=mailer,
            secret_box=FakeSecretBox(),
            clock=clock,
        )
    assert mailer.attempts == 0


async def test_the_settings_say_why_emails_are_not_going_out_until_one_is_delivered() -> None:
    store, clock = InMemoryStore(), FakeClock()
    merchant_id = await shop(store, clock)
    view = await programme_settings.read_settings(merchant_id, uow=store.unit_of_work())
    assert view.email_problem is None
    async with store.unit_of_work() as uow:
        for n in range(3):
            await uow.outbox.add(
                merchant_id, "email.points_changed", {"n": n}, customer_id=None, at=clock.now()
            )
        await uow.outbox.add(merchant_id, "ecomail.event", {}, customer_id=None, at=clock.now())
        await uow.commit()
    rows = sorted(store.state.outbox.values(), key=lambda r: r.id)
    for row, status, error in [
        (rows[0], OutboxStatus.FAILED, "The SMTP server refused the email (550)."),
        (rows[1], OutboxStatus.PENDING, "The SMTP server smtp.example.cz could not be reached."),
        (rows[3], OutboxStatus.PENDING, "Ecomail answered 500."),  # not an email
    ]:
        row.status, row.last_error, row.attempts = status.value, error, 1
        row.last_attempt_at = clock.now()
        clock.advance(timedelta(minutes=1))
    view = await programme_settings.read_settings(merchant_id, uow=store.unit_of_work())
    assert view.email_problem is not None
    assert view.email_problem.error == "The SMTP server smtp.example.cz could not be reached."
    assert (view.email_problem.waiting, view.email_problem.failed) == (2, 1)

    rows[2].status, rows[2].delivered_at = OutboxStatus.DELIVERED.value, clock.now()
    view = await programme_settings.read_settings(merchant_id, uow=store.unit_of_work())
    assert view.email_problem is None  # one went out since: the server works again
