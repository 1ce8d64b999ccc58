"""API tokens for the merchant's e-shop: create (the token is shown once), list, revoke."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import get, post
from litestar.params import URLEncodedBody
from litestar.response import Response, Template

from ellity.domain.services import api_tokens
from ellity.web.pages.common import AnyRequest, deps_of, flash, render, see_other, staff_of
from ellity.web.pages.errors import FORM_ERRORS, status_for
from ellity.web.params import TokenPathId


@dataclass
class TokenForm:
    name: str = ""


async def _page(
    request: AnyRequest, *, name: str = "", error: str = "", status_code: int = 200
) -> Template:
    tokens = await api_tokens.list_api_tokens(
        staff_of(request).merchant_id, uow=deps_of(request).uow(read_only=True)
    )
    return render(
        request,
        "api_tokens.html",
        status_code=status_code,
        tokens=tokens,
        name=name,
        error=error,
        time_zone=staff_of(request).time_zone,
    )


@get("/api-tokens")
async def tokens_page(request: AnyRequest) -> Template:
    return await _page(request)


@post("/api-tokens")
async def create_token(request: AnyRequest, data: URLEncodedBody[TokenForm]) -> Response[Any]:
    deps = deps_of(request)
    try:
        stored, token = await api_tokens.create_api_token(
            staff_of(request).merchant_id, data.name, uow=deps.uow(), clock=deps.clock, rng=deps.rng
        )
    except FORM_ERRORS as error:
        return await _page(
            request, name=data.name, error=error.message, status_code=status_for(error)
        )
    # Kept in the server-side session only until the next page shows it, once.
    flash(request, f"The token '{stored.name}' is created.", kind="token", token=token)
    return see_other("/api-tokens")


@post("/api-tokens/{token_id:int}/revoke")
async def revoke_token(request: AnyRequest, token_id: TokenPathId) -> Response[Any]:
    deps = deps_of(request)
    await api_tokens.revoke_api_token(
        staff_of(request).merchant_id, token_id, uow=deps.uow(), clock=deps.clock
    )
    flash(request, "The token is revoked; the e-shop can no longer use it.")
    return see_other("/api-tokens")
