"""One table gives every domain error its status on the API and on the merchant pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from litestar import Litestar, Router, post

from ellity.domain.model.errors import (
    CustomerNotFound,
    DomainError,
    InsufficientPoints,
    InvalidApiToken,
    InvalidInput,
    OrderAlreadyUsed,
)
from ellity.domain.model.money import Points
from ellity.domain.model.staff import InvalidCredentials, LoginThrottled
from ellity.ports.storage import TransientConflict
from ellity.web.errors import api_exception_handlers, page_status_of, status_of
from tests.asgi import asgi_transport

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("error", "api", "page"),
    [
        (InvalidInput("bad"), 422, 400),
        (CustomerNotFound(7), 404, 404),
        (InsufficientPoints(available=Points(100), wanted=Points(200)), 409, 409),
        (OrderAlreadyUsed("o-1"), 409, 409),
        (InvalidApiToken("no token"), 401, 401),
        (InvalidCredentials(), 401, 400),
        (LoginThrottled(retry_at=LATER, now=NOW), 429, 429),
        (DomainError("other"), 422, 400),
    ],
)
def test_each_domain_error_has_one_status_per_edge(error: DomainError, api: int, page: int) -> None:
    assert (status_of(error), page_status_of(error)) == (api, page)


async def test_an_api_change_still_in_conflict_after_its_retries_answers_503() -> None:
    @post("/api/v1/customers/1/earn", status_code=200)
    async def earn() -> None:
        raise TransientConflict("deadlock detected")

    api = Router("/", route_handlers=[earn], exception_handlers=api_exception_handlers())
    transport = asgi_transport(Litestar([api]))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
        response = await client.post("/api/v1/customers/1/earn")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == "busy"
