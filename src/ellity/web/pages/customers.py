"""The customer list (search, keyset paging, export), creating a customer, and the customer
page with its forms. Every id from a URL is looked up within the logged-in staff user's
merchant: another merchant's customer is simply not found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import get, post
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Response, Stream, Template

from ellity.domain.model.errors import DomainError
from ellity.domain.model.expiry import local_date
from ellity.domain.model.money import Points
from ellity.domain.services import customers, points
from ellity.domain.services.customer_pages import (
    create_customer,
    customer_detail,
    search_customers,
)
from ellity.domain.services.customers import CustomerInput
from ellity.domain.services.export import export_customers
from ellity.web.pages.common import (
    AnyRequest,
    deps_of,
    flash,
    render,
    see_other,
    staff_of,
)
from ellity.web.pages.errors import FORM_ERRORS, status_for
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
    request: AnyRequest, q: FromQuery[str] = "", after: Cursor = None
) -> Template:
    deps = deps_of(request)
    page = await search_customers(
        staff_of(request).merchant_id,
        q,
        after_id=after,
        uow=deps.uow(read_only=True),
        clock=deps.clock,
    )
    return render(
        request,
        "customers/list.html",
        page=page,
        q=page.query.text,
        locale=page.merchant.settings.locale,
        deeper=after is not None,
    )


@get("/customers/export.csv")
async def export_points(request: AnyRequest) -> Stream:
    """All the merchant's customers with their ``ellity_*`` values, streamed."""
    deps, me = deps_of(request), staff_of(request)
    today = local_date(deps.clock.now(), me.time_zone)
    encoder = deps.export_encoder
    filename = f"ellity-{me.merchant_slug}-{today.isoformat()}.{encoder.file_extension}"
    return Stream(
        export_customers(
            me.merchant_id,
            uow_factory=deps.uow,
            encoder=encoder,
            clock=deps.clock,
            rows=deps.export_rows,
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


@post("/customers/new")
async def add_customer(request: AnyRequest, data: URLEncodedBody[NewCustomerForm]) -> Response[Any]:
    deps = deps_of(request)
    fields = CustomerInput(
        email=data.email,
        first_name=data.first_name,
        last_name=data.last_name,
        shop_customer_id=data.shop_customer_id,
        registered=bool(data.registered),
        referred_by=data.referred_by or None,
    )
    try:
        view = await create_customer(
            staff_of(request).merchant_id,
            fields,
            uow_factory=deps.uow,
            clock=deps.clock,
            rng=deps.rng,
        )
    except FORM_ERRORS as error:
        return render(
            request,
            "customers/new.html",
            status_code=status_for(error),
            form=data,
            error=error.message,
        )
    flash(request, "The customer has been created.")
    return see_other(f"/customers/{view.customer.id}")


# -- one customer -------------------------------------------------------------------------------


async def _customer_page(
    request: AnyRequest,
    customer_id: int,
    *,
    before: int | None = None,
    form: str = "",
    values: Any = None,
    error: DomainError | None = None,
) -> Template:
    deps = deps_of(request)
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
        locale=detail.merchant.settings.locale,
        time_zone=detail.merchant.settings.timezone,
        forms=forms,
        failed_form=form if error else "",
        error=error.message if error else "",
        before=before,
    )


@get("/customers/{customer_id:int}")
async def customer_page(
    request: AnyRequest, customer_id: CustomerPathId, before: Cursor = None
) -> Template:
    return await _customer_page(request, customer_id, before=before)


@post("/customers/{customer_id:int}/earn")
async def earn(
    request: AnyRequest, customer_id: CustomerPathId, data: URLEncodedBody[PointsForm]
) -> Response[Any]:
    deps = deps_of(request)
    try:
        await points.earn_points(
            staff_of(request).merchant_id,
            customer_id,
            parse_points(data.points),
            order_ref=data.order_ref,
            note=data.note or None,
            uow=deps.uow(),
            clock=deps.clock,
        )
    except FORM_ERRORS as error:
        return await _customer_page(request, customer_id, form="earn", values=data, error=error)
    flash(request, "The points have been added.")
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/spend")
async def spend(
    request: AnyRequest, customer_id: CustomerPathId, data: URLEncodedBody[PointsForm]
) -> Response[Any]:
    deps = deps_of(request)
    try:
        await points.spend_points(
            staff_of(request).merchant_id,
            customer_id,
            parse_points(data.points),
            order_ref=data.order_ref or None,
            note=data.note or None,
            uow=deps.uow(),
            clock=deps.clock,
        )
    except FORM_ERRORS as error:
        return await _customer_page(request, customer_id, form="spend", values=data, error=error)
    flash(request, "The points have been spent.")
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/adjust")
async def adjust(
    request: AnyRequest, customer_id: CustomerPathId, data: URLEncodedBody[PointsForm]
) -> Response[Any]:
    deps = deps_of(request)
    try:
        await points.adjust_points(
            staff_of(request).merchant_id,
            customer_id,
            parse_points(data.points),
            note=data.note or None,
            uow=deps.uow(),
            clock=deps.clock,
        )
    except FORM_ERRORS as error:
        return await _customer_page(request, customer_id, form="adjust", values=data, error=error)
    flash(request, "The balance has been adjusted.")
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/pin")
async def new_pin(request: AnyRequest, customer_id: CustomerPathId) -> Response[Any]:
    deps = deps_of(request)
    try:
        await customers.regenerate_pin(
            staff_of(request).merchant_id,
            customer_id,
            uow=deps.uow(),
            clock=deps.clock,
            rng=deps.rng,
        )
    except FORM_ERRORS as error:
        return await _customer_page(request, customer_id, form="pin", error=error)
    flash(request, "The customer has a new PIN.")
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/register")
async def register(request: AnyRequest, customer_id: CustomerPathId) -> Response[Any]:
    deps = deps_of(request)
    await customers.register_customer(
        staff_of(request).merchant_id, customer_id, uow=deps.uow(), clock=deps.clock
    )
    flash(request, "The customer is now a registered member.")
    return see_other(f"/customers/{customer_id}")


@post("/customers/{customer_id:int}/edit")
async def edit(
    request: AnyRequest, customer_id: CustomerPathId, data: URLEncodedBody[EditForm]
) -> Response[Any]:
    deps = deps_of(request)
    try:
        await customers.update_customer(
            staff_of(request).merchant_id,
            customer_id,
            CustomerInput(email=data.email, first_name=data.first_name, last_name=data.last_name),
            uow=deps.uow(),
            clock=deps.clock,
            rng=deps.rng,
        )
    except FORM_ERRORS as error:
        return await _customer_page(request, customer_id, form="edit", values=data, error=error)
    flash(request, "The customer's details are saved.")
    return see_other(f"/customers/{customer_id}")
