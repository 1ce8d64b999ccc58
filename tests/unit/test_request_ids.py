"""The request id: the client's when it is sane, else a new one; bound while the request is
handled, answered in ``X-Request-ID``, gone afterwards."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send

from ellity.logs import log_formatter
from ellity.ports.request_context import current_request_id
from ellity.web.request_ids import RequestIds, request_id_from
from tests.asgi import asgi_transport

NEW = re.compile(r"[0-9a-f]{32}")
API_TOKEN = "ell_" + "Ab3" * 13 + "Z"


@pytest.mark.parametrize(
    "given",
    [
        "abc-123",
        "a" * 64,
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "edge.lb-01:2026-12-07T09:00:00_17",
    ],
)
def test_a_sane_incoming_id_is_kept(given: str) -> None:
    assert request_id_from(given) == given


@pytest.mark.parametrize(
    "given",
    [
        None,
        "",
        "a" * 65,  # too long
        "has space",
        'quote"d',
        "new\nline",
        "slash/ed",
        "ünïcode",
        "<script>",
        API_TOKEN,  # the logs would mask it: it could never be found there
    ],
)
def test_anything_else_is_replaced_by_a_new_id(given: str | None) -> None:
    made = request_id_from(given)
    assert NEW.fullmatch(made)
    assert made != request_id_from(given)  # a new one each time


class Recorded:
    """An app that logs one line and remembers the request id it saw."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(current_request_id())
        logging.getLogger("ellity.web.test").info("handling %s", scope["path"])
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log_formatter("json"))
    logger = logging.getLogger("ellity.web.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)


async def test_the_id_is_bound_while_the_app_handles_the_request_and_answered(
    json_lines: io.StringIO,
) -> None:
    app = Recorded()
    async with httpx.AsyncClient(
        transport=asgi_transport(RequestIds(app)), base_url="http://test"
    ) as client:
        given = await client.get("/a", headers={"X-Request-ID": "shop-order-17"})
        made = await client.get("/b")
        refused = await client.get("/c", headers={"X-Request-ID": "not sane"})
    assert given.headers["x-request-id"] == "shop-order-17"
    assert NEW.fullmatch(made.headers["x-request-id"])
    assert NEW.fullmatch(refused.headers["x-request-id"])
    answered = [r.headers["x-request-id"] for r in (given, made, refused)]
    assert app.seen == answered
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert [(e["event"], e["request_id"]) for e in lines] == [
        ("handling /a", answered[0]),
        ("handling /b", answered[1]),
        ("handling /c", answered[2]),
    ]
    assert current_request_id() is None  # nothing is left bound


async def test_an_id_the_app_answered_itself_is_replaced_by_the_requests() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 204,
            "headers": [(b"x-request-id", b"from-the-app")],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with httpx.AsyncClient(
        transport=asgi_transport(RequestIds(app)), base_url="http://test"
    ) as client:
        answer = await client.get("/", headers={"X-Request-ID": "mine"})
    assert answer.headers.get_list("x-request-id") == ["mine"]
