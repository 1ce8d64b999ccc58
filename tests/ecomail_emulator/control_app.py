"""The controls of ``controls.py`` over HTTP, under ``CONTROL_PREFIX`` (``/_emulator``), for an
emulator started in another process. No key is needed; these requests are neither logged nor
counted against the rate limit, and they pass no fault. JSON in, JSON out:

    POST   /_emulator/lists/{id}/members                  {"email", "status"?, "custom_fields"?}
    POST   /_emulator/lists/{id}/seed                     {"rows": [[email, status, fields], ...]}
                                                          or {"count", "email": "m{n}@x.cz",
                                                              "start"?, "status"?, "custom_fields"?}
    GET    /_emulator/lists/{id}/members/{email}
    PUT    /_emulator/lists/{id}/members/{email}/fields   {"key": value, ...}  (null empties it)
    PUT    /_emulator/lists/{id}/members/{email}/status   {"status": 4}
    POST   /_emulator/lists/{id}/members/{email}/unsubscribe
    POST   /_emulator/lists/{id}/members/{email}/confirm
    DELETE /_emulator/lists/{id}/members/{email}
    GET    /_emulator/keys/{key}/requests                 {"total", "max_per_minute"}

A member is answered as ``{"email", "status", "custom_fields", "subscribed_at",
"unsubscribed_at"}``; an unknown list or member is a 404, a bad value a 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
from litestar import Litestar, Request, Response, Router, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from tests.ecomail_emulator.controls import CONTROL_PREFIX, SeedRow
from tests.ecomail_emulator.model import SUBSCRIBED, Member
from tests.ecomail_emulator.shapes import iso

if TYPE_CHECKING:
    from litestar.types import ASGIApp

    from tests.ecomail_emulator.emulator import Emulator

Json = Response[Any]


def _emulator(request: Request[Any, Any, Any]) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


async def _body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError:
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _shown(member: Member) -> dict[str, Any]:
    return {
        "email": member.email,
        "status": member.status,
        "custom_fields": dict(member.custom_fields),
        "subscribed_at": iso(member.subscribed_at),
        "unsubscribed_at": iso(member.unsubscribed_at),
    }


def _status(value: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"status must be a number, not {value!r}")
    return value


@post("/lists/{list_id:int}/members", status_code=200)
async def add_member(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    body = await _body(request)
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise ValueError("email is required")
    member = _emulator(request).add_member(
        list_id,
        email,
        status=_status(body.get("status", SUBSCRIBED)),
        custom_fields=body.get("custom_fields") or {},
        name=body.get("name"),
        surname=body.get("surname"),
    )
    return Response(_shown(member))


@post("/lists/{list_id:int}/seed", status_code=200)
async def seed(request: Request[Any, Any, Any], list_id: FromPath[int]) -> Json:
    body = await _body(request)
    emulator = _emulator(request)
    emulator.find_list(list_id)  # 404 before anything else
    rows: Iterator[SeedRow]
    if "rows" in body:
        rows = (
            (str(email), _status(status), fields or None) for email, status, fields in body["rows"]
        )
    else:
        count, start = body.get("count"), body.get("start", 0)
        pattern = body.get("email", "member{n}@example.com")
        if type(count) is not int or type(start) is not int or "{n}" not in pattern:
            raise ValueError('give "rows", or a "count" and an "email" pattern with {n}')
        status, fields = _status(body.get("status", SUBSCRIBED)), body.get("custom_fields")
        rows = (
            (pattern.replace("{n}", str(n)), status, fields) for n in range(start, start + count)
        )
    return Response({"added": emulator.seed_members(list_id, rows)})


@get("/lists/{list_id:int}/members/{email:str}")
async def show_member(
    request: Request[Any, Any, Any], list_id: FromPath[int], email: FromPath[str]
) -> Json:
    return Response(_shown(_emulator(request).find_member(list_id, unquote(email))))


@put("/lists/{list_id:int}/members/{email:str}/fields")
async def edit_fields(
    request: Request[Any, Any, Any], list_id: FromPath[int], email: FromPath[str]
) -> Json:
    emulator = _emulator(request)
    member = emulator.find_member(list_id, unquote(email))
    for key, value in (await _body(request)).items():
        if value is not None and type(value) not in (str, int):
            raise ValueError(f"{key}: a value is a string, a whole number or null")
        member = emulator.edit_field(list_id, member.email, key, value)
    return Response(_shown(member))


@put("/lists/{list_id:int}/members/{email:str}/status")
async def change_status(
    request: Request[Any, Any, Any], list_id: FromPath[int], email: FromPath[str]
) -> Json:
    status = _status((await _body(request)).get("status"))
    member = _emulator(request).set_status(list_id, unquote(email), status)
    return Response(_shown(member))


@post("/lists/{list_id:int}/members/{email:str}/unsubscribe", status_code=200)
async def unsubscribe(
    request: Request[Any, Any, Any], list_id: FromPath[int], email: FromPath[str]
) -> Json:
    return Response(_shown(_emulator(request).unsubscribe(list_id, unquote(email))))


@post("/lists/{list_id:int}/members/{email:str}/confirm", status_code=200)
async def confirm(
    request: Request[Any, Any, Any], list_id: FromPath[int], email: FromPath[str]
) -> Json:
    return Response(_shown(_emulator(request).confirm_double_optin(list_id, unquote(email))))


@delete("/lists/{list_id:int}/members/{email:str}", status_code=200)
async def delete_member(
    request: Request[Any, Any, Any], list_id: FromPath[int], email: FromPath[str]
) -> Json:
    _emulator(request).delete_member(list_id, unquote(email))
    return Response({"deleted": True})


@get("/keys/{key:str}/requests")
async def requests_of(request: Request[Any, Any, Any], key: FromPath[str]) -> Json:
    emulator = _emulator(request)
    total = sum(1 for r in list(emulator.requests) if r.key == key)
    return Response({"total": total, "max_per_minute": emulator.max_requests_per_minute(key)})


def _not_found(_: Request[Any, Any, Any], exc: KeyError) -> Json:
    return Response({"message": str(exc.args[0]) if exc.args else "not found"}, status_code=404)


def _invalid(_: Request[Any, Any, Any], exc: ValueError) -> Json:
    return Response({"message": str(exc)}, status_code=422)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Json:
    # Litestar's own errors (an unknown path: 404) are ValueErrors too; they keep their status
    return Response({"message": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def control_app(emulator: Emulator) -> ASGIApp:
    router = Router(
        path=CONTROL_PREFIX,
        route_handlers=[
            add_member,
            seed,
            show_member,
            edit_fields,
            change_status,
            unsubscribe,
            confirm,
            delete_member,
            requests_of,
        ],
    )
    app = Litestar(
        route_handlers=[router],
        exception_handlers={
            KeyError: _not_found,
            ValueError: _invalid,
            HTTPException: _http_error,
        },
        openapi_config=None,
        request_max_body_size=256 * 1024 * 1024,
    )
    app.state.emulator = emulator
    return app
