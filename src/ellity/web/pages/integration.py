"""Settings → Integrations → Ecomail: the key, the list, activation, who Ellity adds to the
list, and the sync's health.

The merchant's integration comes from the session (no ids in the paths). Every failure is
shown on the page with its own advice and its status from ``ellity.web.errors.DOMAIN_ERRORS``:
a wrong key, Ecomail down or rate-limiting, a list gone, fields Ecomail did not confirm.
The API key is never sent back to the browser, not even after a failed attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Response, Template

from ellity.deps import Deps
from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES
from ellity.domain.model.errors import DomainError
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.integration import EVENT_ACTION, EVENT_CATEGORY, EventLabel, EventValue
from ellity.domain.model.reconciliation import RepairKind, Schedule
from ellity.domain.services import ecomail_fields, integration, reconciliation
from ellity.domain.services import newsletter_intake as newsletter
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.marketing import (
    ContactList,
    InvalidApiKey,
    ListNotFound,
    MarketingError,
    MarketingPlatforms,
    MarketingRateLimited,
    MarketingUnavailable,
)
from ellity.ports.queue import JobQueue
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWorkFactory
from ellity.ports.storage.reconciliation import Trigger
from ellity.settings import Settings
from ellity.web.dependencies import Injected
from ellity.web.i18n import N_, gettext_for, ngettext_for
from ellity.web.pages.common import (
    AnyRequest,
    flash,
    page_language,
    plural_texts,
    render,
    see_other,
    staff_of,
    texts,
)
from ellity.web.pages.errors import (
    FORM_ERRORS,
    ShowAgain,
    confirmed_first,
    refused_form_page,
    status_for,
    translated_error,
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


@dataclass
class ScheduleForm:
    ecomail_reconcile: str = ""


#: The reconciliation schedule's choices (msgids, translated on the page).
RECONCILE_CHOICES: tuple[tuple[str, str], ...] = (
    (Schedule.WEEKLY.value, N_("Every week")),
    (Schedule.DAILY.value, N_("Every day")),
    (Schedule.OFF.value, N_("Never (only when I ask)")),
)
TRIGGER_TEXTS: dict[str, str] = {
    Trigger.SCHEDULE.value: N_("scheduled"),
    Trigger.MERCHANT.value: N_("you asked"),
    Trigger.COMMAND.value: N_("command line"),
}
REPAIR_TEXTS: dict[str, str] = {
    RepairKind.FIELDS.value: N_("fields written again"),
    RepairKind.ADDED.value: N_("added to the list"),
    RepairKind.UNSUBSCRIBED.value: N_("unsubscription recorded"),
    RepairKind.CONFIRMED.value: N_("double opt-in recorded"),
    RepairKind.SIGNUP.value: N_("sign-up recorded"),
    RepairKind.CLEARED.value: N_("Ellity fields cleared"),
}


@dataclass(frozen=True, slots=True)
class AddingChoice:
    """One choice of ``ecomail_add`` as the page offers it."""

    title: str
    explanation: str
    saved: str  # the message after choosing it


#: The texts are msgids, translated on the page.
ADDING_CHOICES: dict[EcomailAdd, AddingChoice] = {
    EcomailAdd.CONSENTED: AddingChoice(
        N_("Customers who gave marketing consent"),
        N_(
            "Only customers who gave marketing consent (the e-shop sends it through the API,"
            " staff set it on the customer's page, or the person signed up through your Ecomail"
            " form)."
        ),
        N_("Saved: Ellity adds customers who gave marketing consent to the list."),
    ),
    EcomailAdd.CUSTOMERS: AddingChoice(
        N_("Every customer except refusals"),
        N_(
            "Every customer except those who refused. Choose this only if you rely on the"
            " existing-customer exception for your own similar products: whether it applies is"
            " yours to judge."
        ),
        N_("Saved: Ellity adds every customer except refusals to the list."),
    ),
    EcomailAdd.NONE: AddingChoice(
        N_("Nobody"),
        N_("Ellity adds nobody; it only keeps the loyalty fields of people already in the list."),
        N_("Saved: Ellity adds nobody to the list."),
    ),
}

#: What each ``ellity_*`` field holds (msgids, translated on the page), in field order.
FIELD_MEANINGS: dict[str, str] = {
    "ellity_credit": N_(
        "The balance as text, written as your customers read numbers (e.g. 1 250,50 in Czech)."
    ),
    "ellity_credit_num": N_("The balance as a whole number, rounded down."),
    "ellity_pin": N_("The PIN of a customer who has not registered; empty once registered."),
    "ellity_registered": N_("“registered” or “anonymous”."),
    "ellity_next_expiration_date": N_(
        "The next day points expire (YYYY-MM-DD); empty when nothing expires."
    ),
    "ellity_next_expiration_value": N_("The points that expire on that day, as text."),
    "ellity_next_expiration_value_num": N_("The same points as a whole number."),
    "ellity_last_change_date": N_("The day of the last change of the balance."),
    "ellity_last_change_value": N_("The last change, with its sign, as text (e.g. -120)."),
    "ellity_referral_code": N_("The customer's referral code."),
    "ellity_referral_link": N_("The customer's referral link to your shop."),
}


@dataclass(frozen=True, slots=True)
class EventText:
    meaning: str
    keys: tuple[str, ...]  # the keys of the event's JSON value


#: The tracker events' labels: what each means and what its JSON ``value`` carries.
EVENT_TEXTS: dict[EventLabel, EventText] = {
    EventLabel.CREDIT: EventText(
        N_(
            "The balance changed (points added, spent, expired, taken back). Sent after the"
            " contact's fields, so they already hold the new balance."
        ),
        (
            "change",
            "balance",
            "reason",
            "note",
            "order_ref",
            "at",
            "next_expiration_date",
            "next_expiration_points",
        ),
    ),
    EventLabel.EXPIRY: EventText(
        N_(
            "Points are about to expire (sent by the nightly run when “Points about to"
            " expire” is on in Settings, once per customer and expiry day)."
        ),
        ("points", "expiration_date", "balance"),
    ),
    EventLabel.PIN: EventText(
        N_("The customer got a new PIN; the PIN itself is in the ellity_pin field."),
        ("reason", "at"),
    ),
}

#: Where Ecomail shows the API key, in the page's language.
WHERE_THE_KEY_IS = N_("Ecomail → account management → For developers")


def error_message(error: Error, language: str = "en") -> str:
    """What went wrong and what to do about it, for the merchant, in ``language``."""
    if isinstance(error, DomainError):
        return translated_error(error, language)
    _ = gettext_for(language)
    if isinstance(error, InvalidApiKey):
        return _(
            "Ecomail did not accept this API key: copy it again from %(where)s.",
            where=_(WHERE_THE_KEY_IS),
        )
    if isinstance(error, MarketingRateLimited):
        wait = integration.retry_wait(error)
        ngettext = ngettext_for(language)
        return ngettext(
            "Ecomail is rate-limiting requests; try again in %(num)d second.",
            "Ecomail is rate-limiting requests; try again in %(num)d seconds.",
            wait,
        )
    if isinstance(error, MarketingUnavailable):
        # the adapter's reason without its advice for background jobs ("…; Ellity will try
        # again."): here the merchant is the one who tries again
        reason = str(error).split(";", 1)[0].strip().rstrip(".") or _("no answer")
        return _(
            "Ecomail cannot be reached right now (%(reason)s); try again in a few minutes.",
            reason=reason,
        )
    if isinstance(error, ListNotFound):
        return _("The list no longer exists in Ecomail: refresh the lists and choose another.")
    return integration.failure_message(error)  # Ecomail's own words


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
    customer: str = "",
) -> Template:
    """The page in the integration's state; ``failed``: why the form ``failed_form`` (or,
    when empty, an action without a form) did not work; ``customer``: whose values the
    fields panel shows (an id or an email)."""
    merchant_id = staff_of(request).merchant_id
    page = await integration.integration_page(merchant_id, uow_factory=deps.uow)
    fields = await ecomail_fields.fields_panel(
        merchant_id, customer, uow=deps.uow(read_only=True), clock=deps.clock
    )
    panel = reconcile = None
    if page.integration is not None and page.integration.active:
        reconcile = await reconciliation.reconciliation_panel(merchant_id, uow_factory=deps.uow)
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
    language = page_language(request)
    error = error_message(failed, language) if failed is not None else ""
    lists_error = error_message(lists_failed, language) if lists_failed is not None else ""
    shown = failed or lists_failed
    template = render(
        request,
        "integration.html",
        status_code=status_for(shown) if shown is not None else 200,
        page=page,
        newsletter=panel,
        reconcile=reconcile,
        reconcile_choices=RECONCILE_CHOICES,
        trigger_texts=TRIGGER_TEXTS,
        repair_texts=REPAIR_TEXTS,
        lists=lists,
        lists_error="" if lists_error == error else lists_error,
        chosen=list_id or (page.integration.list_id if page.integration else None) or "",
        error=error,
        failed_form=failed_form,
        time_zone=staff_of(request).time_zone,
        where_the_key_is=texts(request)(WHERE_THE_KEY_IS),
        adding_choices=ADDING_CHOICES,
        fields=fields,
        field_names=FIELD_NAMES,
        field_types=FIELD_TYPES,
        field_meanings=FIELD_MEANINGS,
        event_texts=EVENT_TEXTS,
        event_category=EVENT_CATEGORY,
        event_action=EVENT_ACTION,
        event_json=event_json,
        events_shown=integration.EVENTS_SHOWN,
        url_problem=error_message(panel.url_problem, language)
        if panel is not None and panel.url_problem is not None
        else "",
    )
    if isinstance(shown, MarketingRateLimited):
        template.headers["Retry-After"] = str(integration.retry_wait(shown))
    return template


def event_json(value: EventValue) -> str:
    """An event's value as Ecomail receives it: JSON, keys in the order they are built."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@get(PAGE)
async def integration_page(
    request: AnyRequest, customer: FromQuery[str] = "", *, deps: Injected[Deps]
) -> Template:
    return await _page(request, deps, customer=customer)


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
    _ = texts(request)
    flash(request, _("Key verified. Choose the Ecomail list for the loyalty fields and activate."))
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
    _ = texts(request)
    if activation.fields_confirmed:
        message = _(
            "Active with the list %(list)s. Fields confirmed; writing the customers' contacts"
            " to Ecomail… (the progress is below).",
            list=activation.list_name,
        )
    else:
        message = _(
            "Active with the list %(list)s. The Ellity fields will appear in Ecomail with the"
            " first customer Ellity writes to the list.",
            list=activation.list_name,
        )
    flash(request, message)
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
    _ = texts(request)
    saved = _(ADDING_CHOICES[chosen.setting].saved)
    if chosen.backfill:
        saved += " " + _(
            "Every contact is written again, so the customers this choice allows are added"
            " now (the progress is below)."
        )
    flash(request, saved)
    return see_other(PAGE)


@post(f"{PAGE}/reconcile")
@refused_form_page(_page_again())
async def reconcile_now(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    queue: Injected[JobQueue],
) -> Response[Any]:
    requested = await reconciliation.request_run(
        merchant_id, trigger=Trigger.MERCHANT, uow_factory=uow_factory, clock=clock, queue=queue
    )
    _ = texts(request)
    flash(
        request,
        _("The reconciliation has started; its progress is shown below.")
        if requested.created
        else _("A reconciliation is running already; its progress is shown below."),
    )
    return see_other(f"{PAGE}#reconciliation")


@post(f"{PAGE}/reconcile/schedule")
@refused_form_page(_page_again("schedule"))
async def choose_reconcile_schedule(
    request: AnyRequest,
    data: URLEncodedBody[ScheduleForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
) -> Response[Any]:
    schedule = await reconciliation.choose_schedule(
        merchant_id, data.ecomail_reconcile, uow_factory=uow_factory
    )
    _ = texts(request)
    flash(
        request,
        {
            Schedule.WEEKLY: _("Saved: the list is reconciled every week."),
            Schedule.DAILY: _("Saved: the list is reconciled every day."),
            Schedule.OFF: _("Saved: the list is reconciled only when you ask."),
        }[schedule],
    )
    return see_other(f"{PAGE}#reconciliation")


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
    _, ngettext = texts(request), plural_texts(request)
    flash(
        request,
        ngettext(
            "%(num)d failed contact or delivery will be sent again.",
            "%(num)d failed contacts and deliveries will be sent again.",
            count,
        )
        if count
        else _("Nothing had failed; there is nothing to send again."),
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
    _ = texts(request)
    flash(request, _("Every customer with an email will be pushed to Ecomail again."))
    return see_other(PAGE)


@post(f"{PAGE}/deactivate")
@refused_form_page(_page_again())
@confirmed_first(
    N_(
        "Deactivate the Ecomail integration? Ellity sends nothing to Ecomail until you activate"
        " it again; the key stays stored."
    ),
    N_("Deactivate"),
)
async def deactivate(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    await integration.deactivate_ecomail(merchant_id, uow_factory=uow_factory, clock=clock)
    _ = texts(request)
    flash(
        request,
        _(
            "The integration is deactivated: Ellity sends nothing to Ecomail until you activate"
            " it again. The key stays stored."
        ),
    )
    return see_other(PAGE)


@post(f"{PAGE}/webhook/rotate")
@refused_form_page(_page_again())
@confirmed_first(
    N_(
        "Make a new webhook URL? The current one stops working at once: paste the new one into"
        " the Ecomail list's webhook setting, or sign-ups are not rewarded."
    ),
    N_("Make a new webhook URL"),
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
    _ = texts(request)
    flash(
        request,
        _(
            "There is a new webhook URL: paste it into the Ecomail list's settings (Webhook"
            " address). The old one no longer works.",
        ),
    )
    return see_other(PAGE)
