"""Settings → Integrations → Ecomail: the key, the list, activation, who Ellity adds to the
list, and the sync's health.

The merchant's integration comes from the session (no ids in the paths). Every failure is
shown on the page with its own advice and its status from ``ellity.web.errors.DOMAIN_ERRORS``:
a wrong key, Ecomail down or rate-limiting, a list gone, fields Ecomail did not confirm.
The API key is never sent back to the browser, not even after a failed attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Response, Template

from ellity.deps import Deps
from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.errors import DomainError
from ellity.domain.model.ids import MerchantId
from ellity.domain.services import integration
from ellity.domain.services import newsletter_intake as newsletter
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.marketing import (
    ContactList,
    MarketingError,
    MarketingPlatforms,
    MarketingRateLimited,
    MarketingUnavailable,
)
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWorkFactory
from ellity.settings import Settings
from ellity.web.dependencies import Injected
from ellity.web.pages.common import AnyRequest, flash, render, see_other, staff_of
from ellity.web.pages.errors import (
    FORM_ERRORS,
    ShowAgain,
    confirmed_first,
    refused_form_page,
    status_for,
)

PAGE = "/integrations/ecomail"

#: What an Ecomail action can fail with, all shown on the page.
INTEGRATION_ERRORS = (*FORM_ERRORS, MarketingError)
Error: TypeAlias = DomainError | MarketingError


@dataclass
class KeyForm:
    api_key: str = ""


@dataclass
class ActivateForm:
    list_id: str = ""


@dataclass
class AddingForm:
    ecomail_add: str = ""


@dataclass(frozen=True, slots=True)
class AddingChoice:
    """One choice of ``ecomail_add`` as the page offers it."""

    title: str
    explanation: str


ADDING_CHOICES: dict[EcomailAdd, AddingChoice] = {
    EcomailAdd.CONSENTED: AddingChoice(
        "Customers who gave marketing consent",
        "Only customers who gave marketing consent (the e-shop sends it through the API, staff"
        " set it on the customer's page, or the person signed up through your Ecomail form).",
    ),
    EcomailAdd.CUSTOMERS: AddingChoice(
        "Every customer except refusals",
        "Every customer except those who refused. Choose this only if you rely on the"
        " existing-customer exception for your own similar products: whether it applies is"
        " yours to judge.",
    ),
    EcomailAdd.NONE: AddingChoice(
        "Nobody",
        "Ellity adds nobody; it only keeps the loyalty fields of people already in the list.",
    ),
}


def error_message(error: Error) -> str:
    """What went wrong and what to do about it, for the merchant."""
    if isinstance(error, DomainError):
        return error.message
    return integration.failure_message(error)


async def _lists(request: AnyRequest, deps: Deps) -> tuple[list[ContactList], Error | None]:
    """The account's lists, fetched now, or why they could not be."""
    try:
        lists = await integration.ecomail_lists(
            staff_of(request).merchant_id,
            uow_factory=deps.uow,
            platforms=deps.marketing,
            secret_box=deps.secret_box,
        )
    except INTEGRATION_ERRORS as error:
        return [], error
    return lists, None


async def _page(
    request: AnyRequest,
    deps: Deps,
    *,
    failed: Error | None = None,
    failed_form: str = "",
    list_id: str = "",
) -> Template:
    """The page in the integration's state; ``failed``: why the form ``failed_form`` (or,
    when empty, an action without a form) did not work."""
    merchant_id = staff_of(request).merchant_id
    page = await integration.integration_page(merchant_id, uow_factory=deps.uow)
    panel = None
    if page.integration is not None and page.integration.active:
        panel = await newsletter.newsletter_panel(
            merchant_id,
            uow_factory=deps.uow,
            secret_box=deps.secret_box,
            rng=deps.rng,
            clock=deps.clock,
            base_url=deps.settings.base_url,
        )
    lists: list[ContactList] = []
    lists_failed: Error | None = None
    choosing = page.integration is not None and not page.integration.active
    # Straight after Ecomail said "unavailable" or "slow down", asking again would only wait.
    if choosing and not isinstance(failed, MarketingUnavailable):
        lists, lists_failed = await _lists(request, deps)
    error = error_message(failed) if failed is not None else ""
    lists_error = error_message(lists_failed) if lists_failed is not None else ""
    shown = failed or lists_failed
    template = render(
        request,
        "integration.html",
        status_code=status_for(shown) if shown is not None else 200,
        page=page,
        newsletter=panel,
        lists=lists,
        lists_error="" if lists_error == error else lists_error,
        chosen=list_id or (page.integration.list_id if page.integration else None) or "",
        error=error,
        failed_form=failed_form,
        time_zone=staff_of(request).time_zone,
        where_the_key_is=integration.WHERE_THE_KEY_IS,
        adding_choices=ADDING_CHOICES,
    )
    if isinstance(shown, MarketingRateLimited):
        template.headers["Retry-After"] = str(integration.retry_wait(shown))
    return template


@get(PAGE)
async def integration_page(request: AnyRequest, *, deps: Injected[Deps]) -> Template:
    return await _page(request, deps)


def _page_again(failed_form: str = "") -> ShowAgain:
    """The page saying why the form ``failed_form`` (or, when empty, an action without a
    form) did not work; the list chosen on the activation form stays chosen."""

    async def show(request: AnyRequest, deps: Deps, form: Any, error: Error) -> Template:
        list_id = form.list_id if isinstance(form, ActivateForm) else ""
        return await _page(request, deps, failed=error, failed_form=failed_form, list_id=list_id)

    return show


@post(f"{PAGE}/key")
@refused_form_page(_page_again("key"), errors=INTEGRATION_ERRORS)
async def save_key(
    request: AnyRequest,
    data: URLEncodedBody[KeyForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    marketing: Injected[MarketingPlatforms],
    secret_box: Injected[SecretBox],
    clock: Injected[Clock],
) -> Response[Any]:
    await integration.connect_ecomail(
        merchant_id,
        data.api_key,
        uow_factory=uow_factory,
        platforms=marketing,
        secret_box=secret_box,
        clock=clock,
    )
    flash(request, "Key verified. Choose the Ecomail list for the loyalty fields and activate.")
    return see_other(PAGE)


@post(f"{PAGE}/activate")
@refused_form_page(_page_again("activate"), errors=INTEGRATION_ERRORS)
async def activate(
    request: AnyRequest,
    data: URLEncodedBody[ActivateForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    marketing: Injected[MarketingPlatforms],
    secret_box: Injected[SecretBox],
    clock: Injected[Clock],
) -> Response[Any]:
    activation = await integration.activate_ecomail(
        merchant_id,
        data.list_id,
        uow_factory=uow_factory,
        platforms=marketing,
        secret_box=secret_box,
        clock=clock,
    )
    if activation.fields_confirmed:
        flash(
            request,
            f"Active with the list {activation.list_name}. Fields confirmed; writing the"
            " customers' contacts to Ecomail… (the progress is below).",
        )
    else:
        flash(
            request,
            f"Active with the list {activation.list_name}. The Ellity fields will appear in"
            " Ecomail with the first customer Ellity writes to the list.",
        )
    return see_other(PAGE)


@post(f"{PAGE}/adding")
@refused_form_page(_page_again("adding"))
async def choose_adding(
    request: AnyRequest,
    data: URLEncodedBody[AddingForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    chosen = await integration.choose_ecomail_add(
        merchant_id, data.ecomail_add, uow_factory=uow_factory, clock=clock
    )
    saved = f"Saved: Ellity adds {ADDING_CHOICES[chosen.setting].title.lower()} to the list."
    if chosen.backfill:
        saved += (
            " Every contact is written again, so the customers this choice allows are added"
            " now (the progress is below)."
        )
    flash(request, saved)
    return see_other(PAGE)


@post(f"{PAGE}/retry")
@refused_form_page(_page_again())
async def retry_failed(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    count = await integration.retry_failed_sync(merchant_id, uow_factory=uow_factory, clock=clock)
    flash(
        request,
        f"{count} failed contacts and deliveries will be sent again."
        if count
        else "Nothing had failed; there is nothing to send again.",
    )
    return see_other(PAGE)


@post(f"{PAGE}/repush")
@refused_form_page(_page_again())
async def repush(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    await integration.repush_all(merchant_id, uow_factory=uow_factory, clock=clock)
    flash(request, "Every customer with an email will be pushed to Ecomail again.")
    return see_other(PAGE)


@post(f"{PAGE}/deactivate")
@refused_form_page(_page_again())
@confirmed_first(
    "Deactivate the Ecomail integration? Ellity sends nothing to Ecomail until you activate"
    " it again; the key stays stored.",
    "Deactivate",
)
async def deactivate(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    await integration.deactivate_ecomail(merchant_id, uow_factory=uow_factory, clock=clock)
    flash(
        request,
        "The integration is deactivated: Ellity sends nothing to Ecomail until you activate"
        " it again. The key stays stored.",
    )
    return see_other(PAGE)


@post(f"{PAGE}/webhook/rotate")
@refused_form_page(_page_again())
@confirmed_first(
    "Make a new webhook URL? The current one stops working at once: paste the new one into"
    " the Ecomail list's webhook setting, or sign-ups are not rewarded.",
    "Make a new webhook URL",
)
async def rotate_webhook(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    secret_box: Injected[SecretBox],
    rng: Injected[RandomSource],
    clock: Injected[Clock],
    settings: Injected[Settings],
) -> Response[Any]:
    await newsletter.rotate_webhook(
        merchant_id,
        uow_factory=uow_factory,
        secret_box=secret_box,
        rng=rng,
        clock=clock,
        base_url=settings.base_url,
    )
    flash(
        request,
        "There is a new webhook URL: paste it into the Ecomail list's settings (Webhook"
        " address). The old one no longer works.",
    )
    return see_other(PAGE)
