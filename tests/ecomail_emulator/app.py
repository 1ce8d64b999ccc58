"""The HTTP face: one Litestar handler per Ecomail endpoint, behind the ``Gate``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from tests.ecomail_emulator import shapes, writes
from tests.ecomail_emulator.control_app import control_app
from tests.ecomail_emulator.gate import ACCOUNT, Gate
from tests.ecomail_emulator.model import Account, MailingList
from tests.ecomail_emulator.payload import Invalid, write_body

if TYPE_CHECKING:
    from litestar.types import ASGIApp

    from tests.ecomail_emulator.emulator import Emulator

PER_PAGE_MAX = 5000
#: ``status`` filter of GET /lists/{id}/subscribers -> the statuses it covers
STATUS_FILTERS = {
    "subscribed": (1,),
    "unsubscribed": (2,),
    "not_confirmed": (6,),
    "bounced": (3, 4),
    "complained": (5,),
}
Json = Response[Any]


# --- helpers for the handlers ------------------------------------------------------------


def _account(request: Request[Any, Any, Any]) -> Account:
    account: Account = request.scope[ACCOUNT]  # type: ignore[literal-required]
    return account


def _list(request: Request[Any, Any, Any], list_id: int) -> MailingList:
    lst = _account(request).lists.get(list_id)
    if lst is None:  # 404 for an unknown list is an assumption (§4)
        raise writes.NotFound("List not found")
    return lst


async def _body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError:
        raise Invalid("body", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise Invalid("body", "The request body must be a JSON object.")
    return body


def _int_query(request: Request[Any, Any, Any], name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise Invalid(name, f"The {name} field must be an integer.") from None


# --- endpoints ---------------------------------------------------------------------------


@get("/account")
async def account_info(request: Request[Any, Any, Any]) -> Json:
    account = _account(request)  # the real shape is unconfirmed: kept minimal
    return Response({"id": account.id, "name": account.name})


@get("/lists")
async def all_lists(request: Request[Any, Any, Any]) -> Json:
    account = _account(request)
    with account.emulator.lock:
        return Response([shapes.list_summary(lst) for lst in account.lists.values()])


@post("/lists", status_code=200)
async def create_list(request: Request[Any, Any, Any]) -> Json:
    body = await _body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Invalid("name", "The name field is required.")
    account = _account(request)
    from_email = body.get("from_email") or "newsletter@example.com"
    list_id = account.add_list(
        name,
        from_name=body.get("from_name") or name,
        from_email=from_email,
        reply_to=body.get("reply_to") or from_email,
    )
    return Response(shapes.list_summary(account.lists[list_id]))


@get("/lists/{list_id:int}")
async def list_detail(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    lst = _list(request, list_id)
    with lst.emulator.lock:
        return Response(shapes.list_detail(lst))


@put("/lists/{list_id:int}")
async def update_list(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    """Omitted fields are kept (unconfirmed)."""
    lst = _list(request, list_id)
    body = await _body(request)
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise Invalid("name", "The name field is required.")
    with lst.emulator.lock:
        for name in ("name", "from_name", "from_email", "reply_to"):
            if name in body:
                setattr(lst, name, body[name])
        if "double_optin" in body:
            lst.double_optin = bool(body["double_optin"])
        lst.settings.update({k: body[k] for k in shapes.LIST_SETTINGS if k in body})
        return Response(shapes.list_flat(lst))


@post("/lists/{list_id:int}/subscribe", status_code=200)
async def subscribe(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    return await _write(request, list_id, writes.subscribe)


@post("/lists/{list_id:int}/subscribe-bulk", status_code=200)
async def subscribe_bulk(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    return await _write(request, list_id, writes.subscribe_bulk)


@put("/lists/{list_id:int}/update-subscriber")
async def update_subscriber(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    return await _write(request, list_id, writes.update_subscriber)


@put("/lists/{list_id:int}/update-subscriber-bulk")
async def update_bulk(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    return await _write(request, list_id, writes.update_subscriber_bulk)


@delete("/lists/{list_id:int}/unsubscribe", status_code=200)
async def unsubscribe(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    return await _write(request, list_id, writes.unsubscribe)


async def _write(request: Request[Any, Any, Any], list_id: int, write: Any) -> Json:
    lst = _list(request, list_id)
    body = write_body(await request.body())
    with lst.emulator.lock:
        if lst.id not in lst.account.lists:  # deleted while the body was read
            raise writes.NotFound("List not found")
        return Response(write(lst, body))


@get("/lists/{list_id:int}/subscriber/{email:str}")
async def member(
    request: Request[Any, Any, Any], list_id: FromPath[int], email: FromPath[str]
) -> Json:
    lst = _list(request, list_id)
    with lst.emulator.lock:
        found = lst.members.get(unquote(email).strip().lower())
        if found is None:  # 404 per a community script (unconfirmed)
            raise writes.NotFound("Subscriber not found")
        return Response(shapes.member_detail(found, lst))


@get("/lists/{list_id:int}/subscribers")
async def members(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    lst = _list(request, list_id)
    page = max(_int_query(request, "page", 1), 1)
    # per_page above 5000 is clamped (assumption: the docs only state the maximum)
    per_page = min(max(_int_query(request, "per_page", 20), 1), PER_PAGE_MAX)
    status = request.query_params.get("status") or "subscribed"
    if status not in STATUS_FILTERS:
        raise Invalid("status", "The selected status is invalid.")
    with lst.emulator.lock:
        total, chosen = lst.index.page(STATUS_FILTERS[status], (page - 1) * per_page, per_page)
        items = [shapes.page_item(m, lst) for m in chosen]
    path = f"{str(request.base_url).rstrip('/')}{request.url.path}"
    return Response(shapes.paginator(items, page=page, per_page=per_page, total=total, path=path))


@get("/subscribers/{email:str}")
async def subscriber(request: Request[Any, Any, Any], email: FromPath[str]) -> Json:
    account = _account(request)
    with account.emulator.lock:
        address = unquote(email).strip().lower()
        if not account.has_contact(address):  # unconfirmed: 404 like the other lookups
            raise writes.NotFound("Subscriber not found")
        return Response(shapes.subscriber_everywhere(account, account.contacts[address]))


@post("/tracker/events", status_code=200)
async def tracker_event(request: Request[Any, Any, Any]) -> Json:
    account = _account(request)
    body = await _body(request)
    with account.emulator.lock:
        return Response(writes.track_event(account, body))


# --- errors ------------------------------------------------------------------------------


def _invalid(_: Request[Any, Any, Any], exc: Invalid) -> Json:
    return Response(exc.body(), status_code=422)


def _not_found(_: Request[Any, Any, Any], exc: writes.NotFound) -> Json:
    return Response({"message": str(exc)}, status_code=404)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Json:
    return Response({"message": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(emulator: Emulator) -> ASGIApp:
    inner = Litestar(
        route_handlers=[
            account_info,
            all_lists,
            create_list,
            list_detail,
            update_list,
            subscribe,
            subscribe_bulk,
            update_subscriber,
            update_bulk,
            unsubscribe,
            member,
            members,
            subscriber,
            tracker_event,
        ],
        exception_handlers={
            Invalid: _invalid,
            writes.NotFound: _not_found,
            HTTPException: _http_error,
        },
        openapi_config=None,
        request_max_body_size=64 * 1024 * 1024,
    )
    return Gate(emulator, inner, control_app(emulator))
