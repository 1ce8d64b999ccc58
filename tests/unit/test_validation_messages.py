"""Litestar's refusals said plainly, on the messages msgspec really writes.

Every case sends a request to a small app whose handlers take the API's own body types and
parameters the way the API and the pages declare them, so the messages rewritten are the ones
Litestar and msgspec produce, not copies of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import msgspec
import pytest
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import JSONBody, PathParameter, QueryParameter, URLEncodedBody

from ellity.web.api import schemas
from ellity.web.params import MAX_ID
from ellity.web.validation_messages import refusal_message
from tests.asgi import asgi_transport

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
BASE_URL = "http://testserver.local"


def test_the_rewriting_was_checked_against_the_pinned_msgspec() -> None:
    """The patterns match this version's messages; after an upgrade, check the cases below
    and then the pin."""
    pinned = re.search(r"^msgspec==(\S+)$", CONSTRAINTS.read_text(), re.MULTILINE)
    assert pinned is not None, "constraints.txt pins no msgspec version"
    assert msgspec.__version__ == pinned[1]


class Coded(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(max_length=3)]


class Picked(msgspec.Struct):
    colour: Literal["red", "blue"] | None = None


@dataclass
class PointsForm:
    points: str = ""


@post("/customers", status_code=200, request_max_body_size=2048)
async def upsert(data: JSONBody[schemas.CustomerUpsert]) -> None:
    return None


@post("/customers/{customer_id:int}/earn", status_code=200)
async def earn(
    customer_id: Annotated[int, PathParameter(ge=1, le=MAX_ID)],
    data: JSONBody[schemas.EarnPoints],
) -> None:
    return None


@post("/adjust", status_code=200, request_max_body_size=1000)
async def adjust(data: JSONBody[schemas.AdjustPoints]) -> None:
    return None


@post("/coded", status_code=200)
async def coded(data: JSONBody[Coded]) -> None:
    return None


@post("/picked", status_code=200)
async def picked(data: JSONBody[Picked]) -> None:
    return None


@post("/form", status_code=200)
async def form(data: URLEncodedBody[PointsForm]) -> None:
    return None


@get("/ledger")
async def ledger(
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    before: Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)] = None,
    code: Annotated[str | None, QueryParameter(max_length=3)] = None,
) -> None:
    return None


@get("/find")
async def find(email: Annotated[str, QueryParameter()]) -> None:
    return None


def said(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    return Response(refusal_message(request, exc), status_code=exc.status_code)


APP = Litestar(
    [upsert, earn, adjust, coded, picked, form, ledger, find],
    exception_handlers={HTTPException: said},
)


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    form: dict[str, Any] | None = None


CASES: dict[str, tuple[Sent, int, str]] = {
    "points-as-a-fraction": (
        Sent("POST", "/customers/1/earn", json={"points": 12.5, "order_ref": "o"}),
        400,
        "The field 'points' must be a decimal string such as \"12.50\"; points are never sent"
        " as JSON numbers.",
    ),
    "signed-points-as-a-number": (
        Sent("POST", "/adjust", json={"points": -3, "note": "x"}),
        400,
        "The field 'points' must be a decimal string such as \"12.50\"; points are never sent"
        " as JSON numbers.",
    ),
    "truncated-json": (
        Sent("POST", "/customers/1/earn", content=b'{"points": "1", '),
        400,
        "The body is not valid JSON (Input data was truncated).",
    ),
    "an-array-body": (
        Sent("POST", "/customers", content=b'["ann@example.cz"]'),
        400,
        "The body must be a JSON object, not an array.",
    ),
    "a-null-body": (
        Sent("POST", "/customers/1/earn", content=b"null"),
        400,
        "The body must be a JSON object, not null.",
    ),
    "a-number-body": (
        Sent("POST", "/customers", content=b"5"),
        400,
        "The body must be a JSON object, not a whole number.",
    ),
    "an-empty-body": (
        Sent("POST", "/customers/1/earn", content=b""),
        400,
        "The request needs a JSON object as its body.",
    ),
    "a-number-for-a-string": (
        Sent("POST", "/customers", json={"email": 5}),
        400,
        "The field 'email' must be a string or null, not a whole number.",
    ),
    "a-string-for-a-boolean": (
        Sent("POST", "/customers", json={"email": "a@b.cz", "registered": "yes"}),
        400,
        "The field 'registered' must be true or false or null, not a string.",
    ),
    "an-array-for-a-string": (
        Sent("POST", "/customers", json={"email": [1]}),
        400,
        "The field 'email' must be a string or null, not an array.",
    ),
    "a-value-not-among-an-enums-values": (
        Sent("POST", "/customers", json={"email": "a@b.cz", "marketing_consent": "Yes"}),
        400,
        "The field 'marketing_consent' must be one of: granted, refused, unknown; not 'Yes'.",
    ),
    "a-value-not-among-a-literals-values": (
        Sent("POST", "/picked", json={"colour": "green"}),
        400,
        "The field 'colour' must be one of: blue, red; not 'green'.",
    ),
    "a-missing-field": (
        Sent("POST", "/customers/1/earn", json={"points": "1"}),
        400,
        "The field 'order_ref' is required.",
    ),
    "an-unknown-field": (
        Sent("POST", "/customers/1/earn", json={"points": "1", "order_ref": "o", "pts": 1}),
        400,
        "The field 'pts' is not part of this call; check its spelling.",
    ),
    "a-field-breaking-a-constraint": (
        Sent("POST", "/coded", json={"code": "abcd"}),
        400,
        "The field 'code' is not valid: Expected `str` of length <= 3.",
    ),
    "a-form-field-sent-twice": (
        Sent("POST", "/form", form={"points": ["1", "2"]}),
        400,
        "The field 'points' must be a string, not an array.",
    ),
    "a-query-parameter-below-its-range": (
        Sent("GET", "/ledger?limit=0"),
        400,
        "The query parameter 'limit' must be a whole number >= 1.",
    ),
    "a-query-parameter-above-its-range": (
        Sent("GET", "/ledger?limit=501"),
        400,
        "The query parameter 'limit' must be a whole number <= 500.",
    ),
    "a-cursor-above-2^63": (
        Sent("GET", f"/ledger?before={2**63}"),
        400,
        "The query parameter 'before' must be a whole number <= 9223372036854775807.",
    ),
    "a-word-for-a-number": (
        Sent("GET", "/ledger?limit=ten"),
        400,
        "The query parameter 'limit' must be a whole number, not a string.",
    ),
    "a-query-parameter-breaking-a-constraint": (
        Sent("GET", "/ledger?code=abcd"),
        400,
        "The query parameter 'code' is not valid: Expected `str` of length <= 3.",
    ),
    "a-missing-query-parameter": (
        Sent("GET", "/find"),
        400,
        "Missing required query parameter 'email' for path /find",
    ),
    "a-path-id-of-zero": (
        Sent("POST", "/customers/0/earn", json={"points": "1", "order_ref": "o"}),
        400,
        "The path parameter 'customer_id' must be a whole number >= 1.",
    ),
    "a-path-id-above-2^63": (
        Sent("POST", f"/customers/{2**63}/earn", json={"points": "1", "order_ref": "o"}),
        400,
        "The path parameter 'customer_id' must be a whole number <= 9223372036854775807.",
    ),
    "a-body-over-a-whole-kib-limit": (
        Sent("POST", "/customers", json={"email": "x" * 3000}),
        413,
        "The request body is larger than the API accepts (at most 2 KiB).",
    ),
    "a-body-over-a-byte-limit": (
        Sent("POST", "/adjust", json={"points": "1", "note": "x" * 2000}),
        413,
        "The request body is larger than the API accepts (at most 1000 bytes).",
    ),
    "no-such-path": (
        Sent("GET", "/nowhere"),
        404,
        "There is no GET /nowhere in the API.",
    ),
    "a-wrong-method": (
        Sent("GET", "/customers/1/earn"),
        405,
        "GET is not allowed on /customers/1/earn; use POST, OPTIONS.",
    ),
}


@pytest.mark.parametrize(("sent", "status", "message"), CASES.values(), ids=CASES.keys())
async def test_a_refusal_says_plainly_what_is_wrong(sent: Sent, status: int, message: str) -> None:
    transport = asgi_transport(APP)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        if sent.content is not None:
            headers = {"Content-Type": "application/json"}
            response = await client.request(
                sent.method, sent.path, content=sent.content, headers=headers
            )
        else:
            response = await client.request(sent.method, sent.path, json=sent.json, data=sent.form)

    assert (response.status_code, response.text) == (status, message)
