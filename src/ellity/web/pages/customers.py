"""The customer list (search, keyset paging, export), creating a customer, and the customer
page with its forms. Every id from a URL is looked up within the logged-in staff user's
merchant: another merchant's customer is simply not found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Response, Stream, Template

from ellity.deps import Deps
from ellity.domain.model.consent import MarketingConsent, parse_consent
from ellity.domain.model.contact_state import STATUS_TERMS
from ellity.domain.model.errors import DomainError, InvalidInput
from ellity.domain.model.expiry import local_date
from ellity.domain.model.ids import CustomerId, MerchantId, optional_customer_id
from ellity.domain.model.money import Points
from ellity.domain.model.staff import StaffIdentity
from ellity.domain.services import customer_consent, customers, points
from ellity.domain.services.customer_pages import (
    CONSENT_HISTORY_SIZE,
    create_customer,
    customer_detail,
    search_customers,
)
from ellity.domain.services.customers import CustomerInput
from ellity.domain.services.export import export_customers
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.export import CustomerRowSource, TableEncoder
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.dependencies import Injected
from ellity.web.i18n import N_
from ellity.web.pages.common import AnyRequest, flash, render, see_other, staff_of, texts
from ellity.web.pages.errors import (
    ShowAgain,
    confirmed_first,
    error_text,
    refused_form_page,
    status_for,
)
from ellity.web.params import Cursor, CustomerPathId


def parse_points(text: str) -> Points:
    """Staff may type a decimal comma (``12,50``)."""
    text = text.strip()
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    return Points.parse(text)


@dataclass
class PointsForm:
    points: str = ""
    order_ref: str = ""
    note: str = ""


@dataclass
class EditForm:
    email: str = ""
    first_name: str = ""
    last_name: str = ""


@dataclass
class ConsentForm:
    marketing_consent: str = ""  # a radio button: "granted" or "refused"


def parse_staff_consent(text: str) -> MarketingConsent:
    """Staff record a consent the customer gave or refused; "unknown" is never chosen."""
    try:
        return parse_consent(text, allow_unknown=False)
    except InvalidInput:
        raise InvalidInput("Choose whether the customer granted or refused consent.") from None


@dataclass
class NewCustomerForm:
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    shop_customer_id: str = ""
    registered: str = ""  # a checkbox: "on" or absent
    referred_by: str = ""


# -- the list ---------------------------------------------------------------------------------


@get("/customers")
async def customer_list(
    request: AnyRequest,
    q: FromQuery[str] = "",
    after: Cursor = None,
    before: Cursor = None,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Template:
    page = await search_customers(
        merchant_id,
        q,
        after_id=optional_customer_id(after),
        before_id=optional_customer_id(before),
        uow=uow_factory(read_only=True),
        clock=clock,
    )
    return render(
        request,
        "customers/list.html",
        page=page,
        q=page.query.text,
    )


@get("/customers/export.csv")
async def export_points(
    *,
    staff: Injected[StaffIdentity],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    export_encoder: Injected[TableEncoder],
    export_rows: Injected[CustomerRowSource],
) -> Stream:
    """All the merchant's customers with their ``ellity_*`` values, streamed: the file for
    Ecomail's import (its rows written by the database)."""
    return _download(staff, uow_factory, clock, export_encoder, rows=export_rows, suffix="")


@get("/customers/export-excel.csv")
async def export_for_excel(
    *,
    staff: Injected[StaffIdentity],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    excel_encoder: Injected[TableEncoder],
) -> Stream:
    """The same table as a file Excel opens with a double-click (``ExcelCsvEncoder``)."""
    return _download(staff, uow_factory, clock, excel_encoder, rows=None, suffix="-excel")


def _download(
    staff: StaffIdentity,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    encoder: TableEncoder,
    *,
    rows: CustomerRowSource | None,
    suffix: str,
) -> Stream:
    today = local_date(clock.now(), staff.time_zone)
    filename = f"ellity-{staff.merchant_slug}-{today.isoformat()}{suffix}.{encoder.file_extension}"
    return Stream(
        export_customers(
            staff.merchant_id, uow_factory=uow_factory, encoder=encoder, clock=clock, rows=rows
        ),
        media_type=encoder.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


# -- a new customer -----------------------------------------------------------------------------


@get("/customers/new")
async def new_customer_page(request: AnyRequest) -> Template:
    return render(request, "customers/new.html", form=NewCustomerForm())


async def _new_customer_again(
    request: AnyRequest, deps: Deps, form: NewCustomerForm, error: DomainError
) -> Template:
    return render(
        request,
        "customers/new.html",
        status_code=status_for(error),
        form=form,
        error=error_text(request, error),
    )


@post("/customers/new")
@refused_form_page(_new_customer_again)
async def add_customer(
    request: AnyRequest,
    data: URLEncodedBody[NewCustomerForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    rng: Injected[RandomSource],
) -> Response[Any]:
    fields = CustomerInput(
        email=data.email,
        first_name=data.first_name,
        last_name=data.last_name,
        shop_customer_id=data.shop_customer_id,
        registered=bool(data.registered),
        referred_by=data.referred_by or None,
    )
    view = await create_customer(merchant_id, fields, uow_factory=uow_factory, clock=clock, rng=rng)
    _ = texts(request)
    flash(request, _("The customer has been created."))
    return see_other(f"/customers/{view.customer.id}")


# -- one customer -------------------------------------------------------------------------------


async def _customer_page(
    request: AnyRequest,
    deps: Deps,
    customer_id: CustomerId,
    *,
    before: int | None = None,
    form: str = "",
    values: Any = None,
    error: DomainError | None = None,
) -> Template:
    detail = await customer_detail(
        staff_of(request).merchant_id,
        customer_id,
        before_id=before,
        uow=deps.uow(read_only=True),
        clock=deps.clock,
    )
    customer = detail.view.customer
    forms: dict[str, Any] = {
        "earn": PointsForm(),
        "spend": PointsForm(),
        "adjust": PointsForm(),
        "edit": EditForm(customer.email or "", customer.first_name, customer.last_name),
        "consent": ConsentForm(customer.marketing_consent.value),
    }
    if form and values is not None:
        forms[form] = values
    return render(
        request,
        "customers/detail.html",
        status_code=status_for(error) if error else 200,
        detail=detail,
        customer=customer,
        summary=detail.view.summary,
        time_zone=detail.merchant.settings.timezone,
        forms=forms,
        failed_form=form if error else "",
        error=error_text(request, error) if error else "",
        before=before,
        consent_history_size=CONSENT_HISTORY_SIZE,
        status_terms=STATUS_TERMS,
    )


@get("/customers/{customer_id:int}")
async def customer_page(
    request: AnyRequest,
    customer_id: CustomerPathId,
    before: Cursor = None,
    *,
    deps: Injected[Deps],
) -> Template:
    return await _customer_page(request, deps, CustomerId(customer_id), before=before)


def _detail_again(form: str) -> ShowAgain:
    """The customer page with the refused ``form`` showing what was typed and why."""

    async def show(request: AnyRequest, deps: Deps, values: Any, error: DomainError) -> Template:
        customer_id = CustomerId(request.path_params["customer_id"])
        return await _customer_page(
            request, deps, customer_id, form=form, values=values, error=error
        )

    return show


@post("/customers/{customer_id:int}/earn")
@refused_form_page(_detail_again("earn"))
async def earn(
    request: AnyRequest,
    customer_id: CustomerPathId,
    data: URLEncodedBody[PointsForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    earned = await points.earn_points(
        merchant_id,
        CustomerId(customer_id),
        parse_points(data.points),
        order_ref=data.order_ref,
        note=data.note or None,
        uow=uow_factory(),
        clock=clock,
    )
    _ = texts(request)
    if earned.entry is None:  # the order earned before: the same order never earns twice
        flash(
            request,
            _(
                "Nothing was added: the order '%(order)s' has already earned this customer points.",
                order=data.order_ref.strip(),
            ),
            kind="notice",
        )
    else:
        flash(request, _("The points have been added."))
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/spend")
@refused_form_page(_detail_again("spend"))
async def spend(
    request: AnyRequest,
    customer_id: CustomerPathId,
    data: URLEncodedBody[PointsForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    await points.spend_points(
        merchant_id,
        CustomerId(customer_id),
        parse_points(data.points),
        order_ref=data.order_ref or None,
        note=data.note or None,
        uow=uow_factory(),
        clock=clock,
    )
    _ = texts(request)
    flash(request, _("The points have been spent."))
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/adjust")
@refused_form_page(_detail_again("adjust"))
async def adjust(
    request: AnyRequest,
    customer_id: CustomerPathId,
    data: URLEncodedBody[PointsForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    await points.adjust_points(
        merchant_id,
        CustomerId(customer_id),
        parse_points(data.points),
        note=data.note or None,
        uow=uow_factory(),
        clock=clock,
    )
    _ = texts(request)
    flash(request, _("The balance has been adjusted."))
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/pin")
@refused_form_page(_detail_again("pin"))
@confirmed_first(
    N_("Give the customer a new PIN? The old PIN stops working at once."),
    N_("Give a new PIN"),
)
async def new_pin(
    request: AnyRequest,
    customer_id: CustomerPathId,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    rng: Injected[RandomSource],
) -> Response[Any]:
    await customers.regenerate_pin(
        merchant_id,
        CustomerId(customer_id),
        uow=uow_factory(),
        clock=clock,
        rng=rng,
    )
    _ = texts(request)
    flash(request, _("The customer has a new PIN."))
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/register")
@confirmed_first(
    N_(
        "Mark the customer as a registered member? Their PIN is dropped; this cannot be undone"
        " here."
    ),
    N_("Mark as registered"),
)
async def register(
    request: AnyRequest,
    customer_id: CustomerPathId,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    await customers.register_customer(
        merchant_id, CustomerId(customer_id), uow=uow_factory(), clock=clock
    )
    _ = texts(request)
    flash(request, _("The customer is now a registered member."))
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/edit")
@refused_form_page(_detail_again("edit"))
async def edit(
    request: AnyRequest,
    customer_id: CustomerPathId,
    data: URLEncodedBody[EditForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    rng: Injected[RandomSource],
) -> Response[Any]:
    await customers.update_customer(
        merchant_id,
        CustomerId(customer_id),
        CustomerInput(email=data.email, first_name=data.first_name, last_name=data.last_name),
        uow=uow_factory(),
        clock=clock,
        rng=rng,
    )
    _ = texts(request)
    flash(request, _("The customer's details are saved."))
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/consent")
@refused_form_page(_detail_again("consent"))
async def consent(
    request: AnyRequest,
    customer_id: CustomerPathId,
    data: URLEncodedBody[ConsentForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    wanted = parse_staff_consent(data.marketing_consent)
    change = await customer_consent.set_consent(
        merchant_id, CustomerId(customer_id), wanted, uow=uow_factory(), clock=clock
    )
    _ = texts(request)
    if change is None:
        flash(
            request,
            _("The marketing consent was granted already; nothing changed.")
            if wanted is MarketingConsent.GRANTED
            else _("The marketing consent was refused already; nothing changed."),
        )
    else:
        flash(
            request,
            _("The marketing consent is now granted.")
            if wanted is MarketingConsent.GRANTED
            else _("The marketing consent is now refused."),
        )
    return see_other(f"/customers/{customer_id}")
