"""Basic settings: the programme, system emails and the SMTP account (with a test email),
the newsletter reward and the pre-expiry notification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Response, Template

from ellity.deps import Deps
from ellity.domain.model.errors import DomainError, InvalidInput, SmtpTestFailed
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import SMTP_SECURITY
from ellity.domain.model.money import LOCALES, Locale, Points
from ellity.domain.services import programme_settings
from ellity.domain.services.programme_settings import SettingsView, SmtpChange
from ellity.ports.clock import Clock
from ellity.ports.mailer import Mailer
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.dependencies import Injected
from ellity.web.pages.common import (
    AnyRequest,
    flash,
    page_language,
    render,
    see_other,
    staff_of,
    texts,
)
from ellity.web.pages.errors import error_text, refused_form_page, status_for

_CHECKBOXES = ("send_system_emails", "newsletter_take_back")
_ELSEWHERE = ("ecomail_add", "ecomail_reconcile")  # chosen on the Ecomail integration page
COMMON_ZONES = ("Europe/Prague", "Europe/Bratislava", "Europe/Vienna", "Europe/Berlin", "UTC")


@dataclass
class SettingsForm:
    name: str = ""
    shop_url: str = ""
    referral_link_template: str = ""
    referral_bonus: str = ""
    validity_months: str = ""
    locale: str = ""
    timezone: str = ""
    send_system_emails: str = ""  # a checkbox: "on" or absent
    newsletter_take_back: str = ""  # a checkbox
    # a field the form did not send keeps its stored value (None)
    newsletter_reward: str | None = None
    pre_expiry_notify: str | None = None  # "true" (Notify Ecomail) or "false" (Do not send)
    pre_expiry_days: str | None = None
    smtp_host: str = ""
    smtp_port: str = ""
    smtp_username: str = ""
    smtp_sender: str = ""
    smtp_security: str = ""
    smtp_password: str = ""
    smtp_remove_password: str = ""

    @classmethod
    def of(cls, view: SettingsView, language: Locale) -> SettingsForm:
        """The stored settings as the form shows them; points as the page's language writes
        a number in a box (``12,50`` in Czech, ``12.50`` in English; no digit groups)."""
        settings = view.merchant.settings
        values = settings.as_strings()
        for key, amount in (
            ("referral_bonus", settings.referral_bonus),
            ("newsletter_reward", settings.newsletter_reward),
        ):
            values[key] = points_typed(amount, language)
        smtp = view.merchant.smtp
        return cls(
            **{k: v for k, v in values.items() if k not in _CHECKBOXES + _ELSEWHERE},
            **{k: "on" if values[k] == "true" else "" for k in _CHECKBOXES},
            smtp_host=smtp.host,
            smtp_port=str(smtp.port),
            smtp_username=smtp.username,
            smtp_sender=smtp.sender,
            smtp_security=smtp.security,
        )

    def changes(self) -> dict[str, str]:
        changes = {
            "name": self.name,
            "shop_url": self.shop_url,
            "referral_link_template": self.referral_link_template,
            "referral_bonus": self.referral_bonus.strip().replace(",", "."),
            "validity_months": self.validity_months,
            "locale": self.locale,
            "timezone": self.timezone,
            "send_system_emails": "true" if self.send_system_emails else "false",
            "newsletter_take_back": "true" if self.newsletter_take_back else "false",
        }
        if self.newsletter_reward is not None:
            changes["newsletter_reward"] = self.newsletter_reward.strip().replace(",", ".")
        if self.pre_expiry_notify is not None:
            changes["pre_expiry_notify"] = self.pre_expiry_notify
        if self.pre_expiry_days is not None:
            changes["pre_expiry_days"] = self.pre_expiry_days
        return changes

    def smtp(self) -> SmtpChange:
        return SmtpChange(
            host=self.smtp_host,
            port=self.smtp_port,
            username=self.smtp_username,
            sender=self.smtp_sender,
            security=self.smtp_security,
            password=self.smtp_password,
            remove_password=bool(self.smtp_remove_password),
        )


def points_typed(amount: Points, language: Locale) -> str:
    """Points in an input box: ``50``, ``12,50`` (cs) or ``12.50`` (en); read back by
    ``SettingsForm.changes`` either way."""
    text = amount.decimal_string().removesuffix(".00")
    return text.replace(".", ",") if language == "cs" else text


def _page(
    request: AnyRequest,
    form: SettingsForm,
    view: programme_settings.SettingsView,
    *,
    error: str = "",
    status_code: int = 200,
) -> Template:
    form.smtp_password = ""  # never sent back, not even what was just typed
    return render(
        request,
        "settings.html",
        status_code=status_code,
        form=form,
        password_set=view.smtp_password_set,
        ecomail_active=view.ecomail_active,
        email_problem=view.email_problem,
        staff_email=staff_of(request).email,
        time_zone=view.merchant.settings.timezone,
        error=error,
        locales=LOCALES,
        securities=SMTP_SECURITY,
        zones=COMMON_ZONES,
    )


@get("/settings")
async def settings_page(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
) -> Template:
    view = await programme_settings.read_settings(merchant_id, uow=uow_factory(read_only=True))
    return _page(request, SettingsForm.of(view, page_language(request)), view)


@dataclass
class TestEmailForm:
    to: str = ""


@post("/settings/test-email")
async def send_test_email(
    request: AnyRequest,
    data: URLEncodedBody[TestEmailForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    mailer: Injected[Mailer],
    secret_box: Injected[SecretBox],
    clock: Injected[Clock],
) -> Response[Any]:
    """Sends at once and shows the outcome on the settings page: the address it went to, or
    the reason it did not go."""
    try:
        sent_to = await programme_settings.send_test_email(
            merchant_id,
            data.to,
            uow_factory=uow_factory,
            mailer=mailer,
            secret_box=secret_box,
            clock=clock,
        )
    except (InvalidInput, SmtpTestFailed) as error:
        flash(request, error_text(request, error), kind="error", id="test-email-result")
    else:
        _ = texts(request)
        flash(
            request,
            _(
                "The test email was sent to %(address)s. If it does not arrive, look into the"
                " spam folder and at the sender address.",
                address=sent_to,
            ),
            id="test-email-result",
        )
    return see_other("/settings#test-email")


async def _settings_again(
    request: AnyRequest, deps: Deps, form: SettingsForm, error: DomainError
) -> Template:
    merchant_id = staff_of(request).merchant_id
    view = await programme_settings.read_settings(merchant_id, uow=deps.uow(read_only=True))
    return _page(
        request, form, view, error=error_text(request, error), status_code=status_for(error)
    )


@post("/settings")
@refused_form_page(_settings_again)
async def save_settings(
    request: AnyRequest,
    data: URLEncodedBody[SettingsForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    secret_box: Injected[SecretBox],
    clock: Injected[Clock],
) -> Response[Any]:
    await programme_settings.save_settings(
        merchant_id,
        data.changes(),
        data.smtp(),
        uow=uow_factory(),
        secret_box=secret_box,
        clock=clock,
    )
    _ = texts(request)
    flash(request, _("The settings are saved."))
    return see_other("/settings")
