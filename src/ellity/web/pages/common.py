"""What every page handler uses: who is logged in, rendering, redirects, flashes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.response import Redirect, Template

from ellity.domain.model.ids import MerchantId
from ellity.domain.model.money import Locale, Points
from ellity.domain.model.staff import StaffIdentity
from ellity.web.dependencies import Injected

#: Route option of the pages anyone may open (log-in, first run).
PUBLIC: dict[str, Any] = {"public": True}

AnyRequest = Request[Any, Any, State]


def staff_of(request: AnyRequest) -> StaffIdentity:
    """The logged-in staff user; every non-public page has one."""
    return cast(StaffIdentity, request.user)


def _merchant_id(staff: Injected[StaffIdentity]) -> MerchantId:
    return staff.merchant_id


#: The dependencies of the pages: the logged-in ``staff`` user and their ``merchant_id``
#: (which every page's use case is limited to).
PAGE_DEPENDENCIES = {
    "staff": Provide(staff_of, sync_to_thread=False),
    "merchant_id": Provide(_merchant_id, sync_to_thread=False),
}


def see_other(path: str) -> Redirect:
    """The redirect after a successful form: POST, redirect, GET."""
    return Redirect(path, status_code=303)


def _session(request: AnyRequest) -> dict[str, Any] | None:
    session = request.scope.get("session")
    return session if isinstance(session, dict) else None


def flash(request: AnyRequest, message: str, *, kind: str = "ok", **extra: str) -> None:
    """A message shown once, on the next page rendered for this session."""
    session = _session(request)
    if session is not None:
        session.setdefault("flash", []).append({"kind": kind, "message": message, **extra})


def render(
    request: AnyRequest, template: str, *, status_code: int = 200, **context: Any
) -> Template:
    session = _session(request)
    flashes = session.pop("flash", []) if session else []
    return Template(
        template_name=template,
        context={
            "staff": request.scope.get("user"),
            "path": request.url.path,
            "flashes": flashes,
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


# -- template filters -----------------------------------------------------------------------


def points_text(value: Points, locale: Locale = "en") -> str:
    return value.display(locale)


def number_text(value: int, locale: Locale = "en") -> str:
    """A whole number grouped by thousands as points are (``10 000`` cs, ``10,000`` en)."""
    return Points(value * 100).display(locale)


def signed_points(value: Points, locale: Locale = "en") -> str:
    return ("+" if value.is_positive() else "") + value.display(locale)


def local_time(value: datetime, time_zone: str) -> str:
    return value.astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M")


def day_text(value: date | None) -> str:
    return "" if value is None else value.isoformat()


FILTERS = {
    "points": points_text,
    "number": number_text,
    "signed": signed_points,
    "local_time": local_time,
    "day": day_text,
}
