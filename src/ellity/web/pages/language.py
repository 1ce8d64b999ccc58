"""The language switch in the navigation: each staff user's pages in Czech or English,
remembered for the user (a plain form, so it works without JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import post
from litestar.params import URLEncodedBody
from litestar.response import Redirect

from ellity.domain.model.staff import StaffIdentity
from ellity.domain.services import staff as staff_users
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.auth import safe_next
from ellity.web.dependencies import Injected
from ellity.web.pages.common import see_other


@dataclass
class LanguageForm:
    language: str = ""
    next: str = "/"


@post("/language")
async def choose_language(
    data: URLEncodedBody[LanguageForm],
    *,
    staff: Injected[StaffIdentity],
    uow_factory: Injected[UnitOfWorkFactory],
) -> Redirect:
    await staff_users.choose_ui_language(staff.staff_id, data.language, uow=uow_factory())
    return see_other(safe_next(data.next))
