"""The basic settings page: the programme's settings and the SMTP account, saved together,
a test email through that account, and why emails are not going out, when they are not.

The SMTP password is stored encrypted and never read back for display: staff only learn
whether one is set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import cast

from ellity.domain.model.customer import clean_email
from ellity.domain.model.errors import InvalidInput, SmtpTestFailed
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant, SmtpSecurity, SmtpSettings
from ellity.domain.model.outbox import EmailProblem
from ellity.domain.model.system_email import EmailTemplate, OutgoingEmail
from ellity.domain.model.text import has_control_characters
from ellity.domain.services import notifications
from ellity.domain.services.common import load_merchant
from ellity.ports.clock import Clock
from ellity.ports.mailer import Mailer, MailerRejected, MailerUnavailable
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

MAX_SMTP_PASSWORD = 256


@dataclass(frozen=True, slots=True)
class SettingsView:
    merchant: Merchant
    smtp_password_set: bool
    ecomail_active: bool = False  # with system emails on, the page warns about double emails
    email_problem: EmailProblem | None = None  # why emails are not going out


@dataclass(frozen=True, slots=True)
class SmtpChange:
    """The SMTP part of the form, as typed. An empty ``password`` keeps the stored one."""

    host: str = ""
    port: str = "587"
    username: str = ""
    sender: str = ""
    security: str = "starttls"
    password: str = ""
    remove_password: bool = False

    def settings(self) -> SmtpSettings:
        try:
            port = int(self.port.strip())
        except ValueError:
            raise InvalidInput(
                "The SMTP port must be a whole number, not '%(value)s'.", value=self.port[:20]
            ) from None
        return SmtpSettings(
            host=self.host,
            port=port,
            username=self.username.strip(),
            sender=self.sender,
            security=cast(SmtpSecurity, self.security.strip()),
        )

    def new_password(self) -> str | None:
        if len(self.password) > MAX_SMTP_PASSWORD:
            raise InvalidInput(
                "The SMTP password may have at most %(max)s characters.", max=MAX_SMTP_PASSWORD
            )
        if has_control_characters(self.password):
            raise InvalidInput("The SMTP password must not contain control characters.")
        return self.password or None


async def read_settings(merchant_id: MerchantId, *, uow: UnitOfWork) -> SettingsView:
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        password = await uow.merchants.smtp_password(merchant_id)
        ecomail_active = await uow.ecomail.active_list(merchant_id) is not None
        problem = await uow.views.email_problem(merchant_id)
    return SettingsView(
        merchant,
        smtp_password_set=password is not None,
        ecomail_active=ecomail_active,
        email_problem=problem,
    )


async def send_test_email(
    merchant_id: MerchantId,
    to: str,
    *,
    uow_factory: UnitOfWorkFactory,
    mailer: Mailer,
    secret_box: SecretBox,
    clock: Clock,
) -> str:
    """Send the test email to ``to`` now, through the saved SMTP account, and return the
    address it went to. Raises ``SmtpTestFailed`` with the server's answer in the merchant's
    words when it does not go out (the same words a customer's email would have failed
    with). Only a test email that went out is recorded (the first-run checklist's last
    step), after it went out: the SMTP call is never made inside a transaction."""
    address = clean_email(to)
    if address is None:
        raise InvalidInput("Enter the address to send the test email to.")
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        encrypted = await uow.merchants.smtp_password(merchant_id)
    if not merchant.smtp.is_configured:
        raise InvalidInput(
            "SMTP is not set up: enter the SMTP server and the sender address, save the"
            " settings, then send a test email."
        )
    try:
        password = None if encrypted is None else secret_box.decrypt(encrypted)
    except SecretUnreadable:
        raise SmtpTestFailed(
            "The stored SMTP password cannot be decrypted (was ELLITY_SECRET_KEY changed?);"
            " enter the password again and save."
        ) from None
    settings = merchant.settings
    email = OutgoingEmail(
        to=address,
        sender_name=settings.name,
        template=EmailTemplate.TEST,
        locale=settings.locale,
        message_id=f"ellity.test.{merchant_id}.{int(clock.now().timestamp() * 1000)}",
        values={
            "programme": settings.name,
            "shop_url": settings.shop_url,
            "smtp_server": f"{merchant.smtp.host}:{merchant.smtp.port}",
        },
    )
    try:
        await mailer.send(email, server=merchant.smtp, password=password)
    except (MailerUnavailable, MailerRejected) as exc:
        raise SmtpTestFailed("The test email was not sent: %(reason)s", reason=str(exc)) from None
    async with uow_factory() as uow:
        await uow.merchants.record_test_email(merchant_id, at=clock.now())
        await uow.commit()
    return address


async def save_settings(
    merchant_id: MerchantId,
    changes: dict[str, str],
    smtp: SmtpChange,
    *,
    uow: UnitOfWork,
    secret_box: SecretBox,
    clock: Clock,
) -> SettingsView:
    """Everything is validated before anything is stored: one bad value changes nothing."""
    smtp_settings = smtp.settings()
    password = smtp.new_password()
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        before = dataclasses.replace(merchant)
        merchant.settings = merchant.settings.with_changes(changes)
        merchant.smtp = smtp_settings
        await uow.merchants.update_settings(merchant_id, merchant.settings)
        await uow.merchants.update_smtp(merchant_id, smtp_settings)
        if smtp.remove_password:
            await uow.merchants.set_smtp_password(merchant_id, None)
        elif password is not None:
            await uow.merchants.set_smtp_password(merchant_id, secret_box.encrypt(password))
        password_set = await uow.merchants.smtp_password(merchant_id) is not None
        await notifications.settings_changed(uow, merchant, before, at=clock.now())
        ecomail_active = await uow.ecomail.active_list(merchant_id) is not None
        await uow.commit()
    return SettingsView(merchant, smtp_password_set=password_set, ecomail_active=ecomail_active)
