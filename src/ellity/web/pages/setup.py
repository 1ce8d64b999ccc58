"""The first-run page: creates the first merchant and its admin while there is none."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from litestar import get, post
from litestar.params import URLEncodedBody
from litestar.response import Response, Template

from ellity.deps import Deps
from ellity.domain.model.errors import DomainError
from ellity.domain.model.staff import AlreadySetUp
from ellity.domain.services import staff
from ellity.ports.clock import Clock, PasswordHasher
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.dependencies import Injected
from ellity.web.pages.common import PUBLIC, AnyRequest, flash, render, see_other, texts
from ellity.web.pages.errors import error_text, refused_form_page, status_for


@dataclass
class SetupForm:
    name: str = ""
    slug: str = ""
    shop_url: str = ""
    email: str = ""
    password: str = ""
    password_again: str = ""


@get("/setup", opt=PUBLIC)
async def setup_page(request: AnyRequest, *, uow_factory: Injected[UnitOfWorkFactory]) -> Template:
    if not await staff.needs_setup(uow=uow_factory(read_only=True)):
        raise AlreadySetUp()
    return render(request, "setup.html", form=SetupForm())


async def _setup_again(
    request: AnyRequest, deps: Deps, form: SetupForm, error: DomainError
) -> Template:
    kept = dataclasses.replace(form, password="", password_again="")
    return render(
        request,
        "setup.html",
        status_code=status_for(error),
        form=kept,
        error=error_text(request, error),
    )


@post("/setup", opt=PUBLIC)
@refused_form_page(_setup_again)
async def set_up(
    request: AnyRequest,
    data: URLEncodedBody[SetupForm],
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
    hasher: Injected[PasswordHasher],
) -> Response[Any]:
    if not await staff.needs_setup(uow=uow_factory(read_only=True)):
        raise AlreadySetUp()  # whatever the form says; set_up_first_merchant also checks
    await staff.set_up_first_merchant(
        name=data.name,
        slug=data.slug,
        shop_url=data.shop_url,
        admin_email=data.email,
        admin_password=data.password,
        password_again=data.password_again,
        uow=uow_factory(),
        clock=clock,
        hasher=hasher,
    )
    _ = texts(request)
    flash(request, _("Your loyalty programme is ready. Log in as its admin."))
    return see_other("/login")
