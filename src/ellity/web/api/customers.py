"""The customer calls of the e-shop API. Each handler parses, calls one use case, answers."""

from __future__ import annotations

from typing import Annotated

from litestar import get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Response

from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.services import customers, points
from ellity.domain.services.common import CustomerView
from ellity.domain.services.points import MAX_LEDGER_PAGE
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.api import schemas
from ellity.web.dependencies import Injected
from ellity.web.errors import ErrorBody
from ellity.web.params import MAX_ID

DEFAULT_LEDGER_PAGE = 100

ApiCustomerId = Annotated[
    int, PathParameter(ge=1, le=MAX_ID, description="The customer's id in Ellity.")
]

_ERRORS = {
    400: "The request does not fit the schema (not JSON, a wrong type, a missing or unknown"
    " field, a parameter out of range).",
    401: "No API token, or a wrong or revoked one.",
    404: "No such customer in this programme (another merchant's customers included).",
    409: "The request contradicts the customer's state.",
    413: "The body is larger than the API accepts.",
    422: "A value breaks a rule (e.g. not an email, points with three decimals).",
}


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(
            data_container=ErrorBody, description=_ERRORS[status], generate_examples=False
        )
        for status in statuses
    }


def _customer(view: CustomerView) -> schemas.Customer:
    return schemas.Customer.of(view)


@post(
    "/customers",
    operation_id="upsertCustomer",
    response_description="The new customer.",
    summary="Create or update a customer",
    description="Found by shop customer id first, then by email: 201 when created, 200 when"
    " updated. `referred_by` (a referral code) counts only for a new customer.",
    status_code=201,
    responses={
        200: ResponseSpec(schemas.Customer, description="An existing customer, updated."),
        **_errors(400, 401, 409, 413, 422),
    },
)
async def upsert_customer(
    merchant_id: NamedDependency[MerchantId],
    data: JSONBody[schemas.CustomerUpsert],
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    rng: Injected[RandomSource],
) -> Response[schemas.Customer]:
    result = await customers.upsert_customer(
        merchant_id, data.to_input(), uow=uow_factory(), clock=clock, rng=rng
    )
    return Response(_customer(result.view), status_code=201 if result.created else 200)


@get(
    "/customers/{customer_id:int}",
    operation_id="getCustomer",
    response_description="The customer.",
    summary="Read a customer",
    responses=_errors(400, 401, 404),
)
async def get_customer(
    merchant_id: NamedDependency[MerchantId],
    customer_id: ApiCustomerId,
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> schemas.Customer:
    view = await customers.get_customer(
        merchant_id, CustomerId(customer_id), uow=uow_factory(read_only=True), clock=clock
    )
    return _customer(view)


@get(
    "/customers",
    operation_id="findCustomers",
    response_description="The customer with this email, or no items.",
    summary="Find a customer by email",
    description="Compared case-insensitively; `items` holds the customer or nothing.",
    responses=_errors(400, 401, 422),
)
async def find_customers(
    merchant_id: NamedDependency[MerchantId],
    email: Annotated[str, QueryParameter(description="The email address to look for.")],
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> schemas.CustomerList:
    view = await customers.find_customer_by_email(
        merchant_id, email, uow=uow_factory(read_only=True), clock=clock
    )
    return schemas.CustomerList(items=[] if view is None else [_customer(view)])


@post(
    "/customers/{customer_id:int}/earn",
    operation_id="earnPoints",
    response_description="The customer after earning (or unchanged for a repeated order).",
    summary="Earn points for an order",
    description="The same `order_ref` again changes nothing and answers 200 with the customer;"
    " an `order_ref` already used for another customer is a 409.",
    status_code=200,
    responses=_errors(400, 401, 404, 409, 413, 422),
)
async def earn_points(
    merchant_id: NamedDependency[MerchantId],
    customer_id: ApiCustomerId,
    data: JSONBody[schemas.EarnPoints],
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> schemas.Customer:
    result = await points.earn_points(
        merchant_id,
        CustomerId(customer_id),
        Points.parse(data.points),
        order_ref=data.order_ref,
        note=data.note,
        uow=uow_factory(),
        clock=clock,
    )
    return _customer(result.view)


@post(
    "/customers/{customer_id:int}/spend",
    operation_id="spendPoints",
    response_description="The customer after spending.",
    summary="Spend points",
    description="Oldest points first. More than the balance is a 409 `insufficient_points`."
    " With an `order_ref`, the same redemption happens once.",
    status_code=200,
    responses=_errors(400, 401, 404, 409, 413, 422),
)
async def spend_points(
    merchant_id: NamedDependency[MerchantId],
    customer_id: ApiCustomerId,
    data: JSONBody[schemas.SpendPoints],
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> schemas.Customer:
    result = await points.spend_points(
        merchant_id,
        CustomerId(customer_id),
        Points.parse(data.points),
        order_ref=data.order_ref,
        note=data.note,
        uow=uow_factory(),
        clock=clock,
    )
    return _customer(result.view)


@post(
    "/customers/{customer_id:int}/adjust",
    operation_id="adjustPoints",
    response_description="The customer after the adjustment.",
    summary="Adjust points by hand",
    description="Positive points are added, negative ones taken (never below zero: 409).",
    status_code=200,
    responses=_errors(400, 401, 404, 409, 413, 422),
)
async def adjust_points(
    merchant_id: NamedDependency[MerchantId],
    customer_id: ApiCustomerId,
    data: JSONBody[schemas.AdjustPoints],
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> schemas.Customer:
    result = await points.adjust_points(
        merchant_id,
        CustomerId(customer_id),
        Points.parse(data.points),
        note=data.note,
        uow=uow_factory(),
        clock=clock,
    )
    return _customer(result.view)


@post(
    "/customers/{customer_id:int}/pin",
    operation_id="regeneratePin",
    response_description="The customer with the new PIN.",
    summary="Give an anonymous customer a new PIN",
    description="A registered customer has no PIN: 409 `registered_customer_has_no_pin`.",
    status_code=200,
    responses=_errors(400, 401, 404, 409),
)
async def regenerate_pin(
    merchant_id: NamedDependency[MerchantId],
    customer_id: ApiCustomerId,
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    rng: Injected[RandomSource],
) -> schemas.Customer:
    view = await customers.regenerate_pin(
        merchant_id, CustomerId(customer_id), uow=uow_factory(), clock=clock, rng=rng
    )
    return _customer(view)


@get(
    "/customers/{customer_id:int}/ledger",
    operation_id="readLedger",
    response_description="Entries, newest first, and the cursor for older ones.",
    summary="Read a customer's ledger, newest first",
    description="Pages of `limit` entries; pass `next_before` as `before` for the older ones.",
    responses=_errors(400, 401, 404),
)
async def read_ledger(
    merchant_id: NamedDependency[MerchantId],
    customer_id: ApiCustomerId,
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    limit: Annotated[
        int, QueryParameter(ge=1, le=MAX_LEDGER_PAGE, description="Entries per page.")
    ] = DEFAULT_LEDGER_PAGE,
    before: Annotated[
        int | None,
        QueryParameter(ge=1, le=MAX_ID, description="Only entries older than this cursor."),
    ] = None,
) -> schemas.LedgerPage:
    entries = await points.ledger_entries(
        merchant_id,
        CustomerId(customer_id),
        limit=limit,
        before_id=before,
        uow=uow_factory(read_only=True),
    )
    return schemas.LedgerPage.of(entries, limit=limit)


route_handlers = [
    upsert_customer,
    find_customers,
    get_customer,
    earn_points,
    spend_points,
    adjust_points,
    regenerate_pin,
    read_ledger,
]
