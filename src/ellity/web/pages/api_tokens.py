"""API tokens for the merchant's e-shop: create (the token is shown once), list, revoke."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Response, Template

from ellity.deps import Deps
from ellity.domain.model.errors import DomainError
from ellity.domain.model.ids import MerchantId
from ellity.domain.services import api_tokens
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.dependencies import Injected
from ellity.web.pages.common import AnyRequest, flash, render, see_other, staff_of
from ellity.web.pages.errors import confirmed_first, refused_form_page, status_for
from ellity.web.params import TokenPathId


@dataclass
class TokenForm:
    name: str = ""


async def _page(
    request: AnyRequest,
    uow_factory: UnitOfWorkFactory,
    *,
    name: str = "",
    error: str = "",
    status_code: int = 200,
) -> Template:
    tokens = await api_tokens.list_api_tokens(
        staff_of(request).merchant_id, uow=uow_factory(read_only=True)
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
async def tokens_page(request: AnyRequest, *, uow_factory: Injected[UnitOfWorkFactory]) -> Template:
    return await _page(request, uow_factory)


async def _tokens_again(
    request: AnyRequest, deps: Deps, form: TokenForm, error: DomainError
) -> Template:
    return await _page(
        request, deps.uow, name=form.name, error=error.message, status_code=status_for(error)
    )


@post("/api-tokens")
@refused_form_page(_tokens_again)
async def create_token(
    request: AnyRequest,
    data: URLEncodedBody[TokenForm],
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    rng: Injected[RandomSource],
) -> Response[Any]:
    stored, token = await api_tokens.create_api_token(
        merchant_id, data.name, uow=uow_factory(), clock=clock, rng=rng
    )
    # Kept in the server-side session only until the next page shows it, once.
    flash(request, f"The token '{stored.name}' is created.", kind="token", token=token)
    return see_other("/api-tokens")


@post("/api-tokens/{token_id:int}/revoke")
@confirmed_first(
    "Revoke the token? The e-shop calls made with it will be refused from now on; a revoked"
    " token cannot be used again.",
    "Revoke the token",
)
async def revoke_token(
    request: AnyRequest,
    token_id: TokenPathId,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Response[Any]:
    await api_tokens.revoke_api_token(merchant_id, token_id, uow=uow_factory(), clock=clock)
    flash(request, "The token is revoked; the e-shop can no longer use it.")
    return see_other("/api-tokens")
