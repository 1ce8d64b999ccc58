"""Who is calling the API: the merchant whose token is in ``Authorization: Bearer <token>``.

The guard runs before the body is read, so a caller without a valid token learns nothing
about what its request would have done. Handlers receive the merchant as the ``merchant_id``
dependency.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from ellity.domain.model.ids import MerchantId
from ellity.domain.services.api_tokens import authenticate_api_token
from ellity.web.dependencies import app_deps

#: The OpenAPI security scheme the API's operations require.
BEARER_SCHEME = "apiToken"
_STATE_KEY = "api_merchant_id"


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; empty when there is none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def require_api_token(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: refuse the request unless it carries an active token (``InvalidApiToken``)."""
    deps = app_deps(connection.app.state)
    merchant_id = await authenticate_api_token(
        bearer_token(connection.headers.get("authorization")),
        uow_factory=deps.uow,
        clock=deps.clock,
    )
    connection.state[_STATE_KEY] = merchant_id


def api_merchant_id(request: Request[Any, Any, Any]) -> MerchantId:
    """The ``merchant_id`` dependency: the merchant the guard authenticated."""
    merchant_id: MerchantId = request.state[_STATE_KEY]
    return merchant_id
