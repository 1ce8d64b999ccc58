"""What every page handler uses: who is logged in, rendering, redirects, flashes."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, cast

from jinja2 import pass_context
from jinja2.runtime import Context
from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.response import Redirect, Template

from ellity.domain.model.ids import MerchantId
from ellity.domain.model.ledger import Entry
from ellity.domain.model.money import Locale, Points
from ellity.domain.model.reason import Reason
from ellity.domain.model.staff import StaffIdentity
from ellity.web.dependencies import Injected
from ellity.web.i18n import (
    Gettext,
    Ngettext,
    browser_language,
    date_text,
    datetime_text,
    gettext_for,
    ngettext_for,
    number_text,
    reason_text,
    ui_language,
)

#: The template variable holding the page's language (``cs``, ``en``).
LANGUAGE = "ui_language"

#: Route option of the pages anyone may open (log-in, first run).
PUBLIC: dict[str, Any] = {"public": True}

AnyRequest = Request[Any, Any, State]


def staff_of(request: AnyRequest) -> StaffIdentity:
    """The logged-in staff user; every non-public page has one."""
    return cast(StaffIdentity, request.user)


def page_language(request: AnyRequest) -> Locale:
    """The logged-in staff user's language; before a log-in, the browser's."""
    user = request.scope.get("user")
    if isinstance(user, StaffIdentity):
        return ui_language(user.ui_language)
    return browser_language(request.headers.get("accept-language", ""))


def texts(request: AnyRequest) -> Gettext:
    """gettext in the page's language: ``_ = texts(request)``, then ``_("...")``."""
    return gettext_for(page_language(request))


def plural_texts(request: AnyRequest) -> Ngettext:
    return ngettext_for(page_language(request))


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


def session_of(request: AnyRequest) -> dict[str, Any] | None:
    session = request.scope.get("session")
    return session if isinstance(session, dict) else None


def flash(request: AnyRequest, message: str, *, kind: str = "ok", **extra: str) -> None:
    """A message shown once, on the next page rendered for this session."""
    session = session_of(request)
    if session is not None:
        session.setdefault("flash", []).append({"kind": kind, "message": message, **extra})


def _return_to(request: AnyRequest) -> str:
    """Where switching the language leads back to: this page (on a refused form's page, the
    form's address, which leads to the page the form is on)."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def render(
    request: AnyRequest, template: str, *, status_code: int = 200, **context: Any
) -> Template:
    session = session_of(request)
    flashes = session.pop("flash", []) if session else []
    return Template(
        template_name=template,
        context={
            "staff": request.scope.get("user"),
            "path": request.url.path,
            "return_to": _return_to(request),
            LANGUAGE: page_language(request),
            "flashes": flashes,
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


# -- template filters: formatting in the page's language ------------------------------------


def _language(context: Context) -> Locale:
    return ui_language(context.get(LANGUAGE))


def points_shown(value: Points, language: Locale) -> str:
    """Points on a page: ``Points.display``, its digit groups never broken over two lines."""
    return value.display(language).replace(" ", NBSP)


NBSP = "\u00a0"


@pass_context
def points_text(context: Context, value: Points) -> str:
    return points_shown(value, _language(context))


@pass_context
def signed_points(context: Context, value: Points) -> str:
    return ("+" if value.is_positive() else "") + points_shown(value, _language(context))


@pass_context
def local_time(context: Context, value: datetime, time_zone: str) -> str:
    return datetime_text(value, time_zone, _language(context))


@pass_context
def why(context: Context, value: Reason, time_zone: str) -> str:
    """A reason in the page's language, its instants in ``time_zone``."""
    return reason_text(value, _language(context), time_zone=time_zone)


@pass_context
def day_text(context: Context, value: date | None) -> str:
    return date_text(value, _language(context))


@pass_context
def count_text(context: Context, value: int) -> str:
    return number_text(value, _language(context))


#: The notes newsletter entries were stored with before the entry's kind said it all.
_OLD_KIND_NOTES = {
    "newsletter_reward": "Subscribed to the newsletter",
    "newsletter_deduction": "Unsubscribed from the newsletter",
}


def entry_note(entry: Entry) -> str:
    """What staff wrote on a ledger entry; nothing when the entry's kind already says it
    (older newsletter entries carry their reason as English text)."""
    if entry.note is None or _OLD_KIND_NOTES.get(entry.kind.value) == entry.note:
        return ""
    return entry.note


def compact_json(value: object) -> str:
    """A JSON value as Ecomail receives it: compact, keys in the order they were built."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


FILTERS = {
    "points": points_text,
    "signed": signed_points,
    "local_time": local_time,
    "why": why,
    "day": day_text,
    "number": count_text,
    "entry_note": entry_note,
    "json": compact_json,
}
