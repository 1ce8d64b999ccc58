"""Errors on the merchant pages.

A domain error from a form is shown on that form, with what the user typed kept, under its
page status in ``ellity.web.errors.DOMAIN_ERRORS``: a form's handler declares its page with
``refused_form_page``. The browser is sent back to the page's own address to see it (POST,
redirect, GET), so Back and Reload never send the form again. Any other domain error, a
missing page, a failed CSRF check or a missing log-in becomes a page of its own. A path
parameter that cannot name anything (``/customers/0``, an id above 2^63 - 1) is a missing
page; a query parameter or form Litestar cannot read is a 400 page saying which one and
why. Requests that do not ask for HTML (the e-shop API) keep getting JSON.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import urlencode

from litestar import Litestar, MediaType, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.exceptions.responses import create_exception_response
from litestar.response import Redirect
from litestar.routes import BaseRoute
from litestar.types import ExceptionHandlersMap

from ellity.deps import Deps
from ellity.domain.model.errors import Conflict, DomainError, InvalidInput
from ellity.ports.marketing import MarketingError
from ellity.ports.storage import TransientConflict
from ellity.web.dependencies import app_deps
from ellity.web.errors import page_status_of
from ellity.web.i18n import translated
from ellity.web.pages.common import AnyRequest, page_language, render, session_of, texts
from ellity.web.validation_messages import english, refusal_message

logger = logging.getLogger(__name__)

#: What the user can correct on the form they sent.
FORM_ERRORS = (InvalidInput, Conflict)


#: Shows a form's page again after its use case refused what was sent; given the request, the
#: app's ``Deps``, the form as the handler read it (``None`` for a form without fields) and
#: the error, whose message the page shows under its ``status_for``.
ShowAgain: TypeAlias = Callable[[AnyRequest, Deps, Any, Any], Awaitable[Response[Any]]]
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def error_text(request: AnyRequest, error: DomainError) -> str:
    """A domain error in the page's language."""
    return translated_error(error, page_language(request))


def translated_error(error: DomainError, language: str) -> str:
    """A domain error in ``language``: its template translated, its points formatted for
    the reader (the API keeps ``error.message``, in English)."""
    return translated(error.template, error.params, language)


def status_for(error: DomainError | MarketingError) -> int:
    """The page status of a domain error, from the one table in ``ellity.web.errors``."""
    return page_status_of(error)


def refused_form_page(
    show_again: ShowAgain, *, errors: tuple[type[Exception], ...] = FORM_ERRORS
) -> Callable[[Handler], Handler]:
    """Declares a form handler's page for its refusals (put it under the route decorator).

    When the use case refuses the form with one of ``errors``, ``show_again`` answers with the
    form's page; any other error reaches the exception handlers. The handler takes
    ``request`` and, for a form with fields, ``data``.
    """

    def declare(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(**kwargs: Any) -> Any:
            try:
                return await handler(**kwargs)
            except errors as error:
                request: AnyRequest = kwargs["request"]
                deps = app_deps(request.app.state)
                shown = await show_again(request, deps, kwargs.get("data"), error)
                return _at_its_page(request, shown)

        return cast(Handler, handle)

    return declare


#: The session's slot for a refused form's page until the browser asks for it.
REFUSED_PAGE = "refused_page"


def _at_its_page(request: AnyRequest, shown: Response[Any]) -> Response[Any]:
    """``shown``, rendered now (what was typed, why it was refused), kept in the session
    and answered with a redirect to the page the form is on, which shows it once. Without a
    session (a client that keeps no cookies) it is the answer itself."""
    session = session_of(request)
    if session is None:
        return shown
    page = page_of(request.app, request.url.path)
    rendered = shown.to_asgi_response(app=None, request=request)
    session[REFUSED_PAGE] = {
        "page": page,
        "status": rendered.status_code,
        "media_type": shown.media_type or MediaType.HTML,
        "headers": {k: v for k, v in shown.headers.items() if k.lower() != "content-length"},
        "body": rendered.body.decode("utf-8"),
    }
    return Redirect(page, status_code=303)


def refused_page_kept(request: AnyRequest) -> Response[Any] | None:
    """Before a GET: the refused form's page kept for this address, once (a later GET or
    Reload shows the page as it is)."""
    if request.method != "GET":
        return None
    session = session_of(request) or {}
    kept = session.get(REFUSED_PAGE)
    if not isinstance(kept, dict) or kept.get("page") != request.url.path:
        return None
    del session[REFUSED_PAGE]
    return Response(
        kept["body"],
        status_code=kept["status"],
        media_type=kept["media_type"],
        headers=kept["headers"],
    )


def confirmed_first(question: str, button: str) -> Callable[[Handler], Handler]:
    """Declares a destructive action (put it under the route decorator): unless the form
    says ``confirmed=yes``, the answer is a page that asks ``question`` with a ``button``
    that sends the form again, confirmed, and a way back. Needs no JavaScript."""

    def declare(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(**kwargs: Any) -> Any:
            request: AnyRequest = kwargs["request"]
            form = await request.form()
            if form.get("confirmed") == "yes":
                return await handler(**kwargs)
            path = request.url.path
            return render(
                request,
                "confirm.html",
                question=question,
                button=button,
                action=path,
                cancel=page_of(request.app, path.rsplit("/", 1)[0] or "/"),
            )

        return cast(Handler, handle)

    return declare


def wants_html(request: AnyRequest) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def _json(code: str, message: str, status: int) -> Response[Any]:
    return Response(
        {"error": code, "message": message}, status_code=status, media_type=MediaType.JSON
    )


def _page(request: AnyRequest, message: str, status: int) -> Response[Any]:
    """An error page, with the navigation even where no staff user is known (an address no
    route answers is refused before the session is read): its links lead on, or to log in."""
    return render(
        request, "error.html", status_code=status, message=message, status=status, show_nav=True
    )


def domain_error(request: AnyRequest, exc: DomainError) -> Response[Any]:
    return _page(request, error_text(request, exc), status_for(exc))


def not_logged_in(request: AnyRequest, exc: NotAuthorizedException) -> Response[Any]:
    if not wants_html(request):
        return _json("unauthorized", "Log in first.", 401)
    target = "/login"
    if request.method == "GET" and request.url.path != "/":
        query = f"?{request.url.query}" if request.url.query else ""
        target += "?" + urlencode({"next": request.url.path + query})
    return Redirect(target, status_code=303)


def forbidden(request: AnyRequest, exc: PermissionDeniedException) -> Response[Any]:
    if not wants_html(request):
        return _json("forbidden", str(exc.detail), 403)
    _ = texts(request)
    message = _(
        "This form has expired or did not come from an Ellity page. Go back, reload the page"
        " and send the form again."
    )
    return _page(request, message, 403)


def not_found(request: AnyRequest, exc: Exception) -> Response[Any]:
    if not wants_html(request):
        return _json("not_found", "No such page.", 404)
    _ = texts(request)
    return _page(request, _("There is no such page here."), 404)


def page_of(app: Litestar, path: str) -> str:
    """The page a form's address belongs to: the nearest address at or above it that shows
    a page (``/customers/5/earn`` → ``/customers/5``, ``/api-tokens/3/revoke`` →
    ``/api-tokens``), the dashboard at worst."""
    parts = [part for part in path.split("/") if part]
    while parts:
        if any(_shows(route, parts) for route in app.routes):
            return "/" + "/".join(parts)
        parts = parts[:-1]
    return "/"


def _shows(route: BaseRoute, parts: list[str]) -> bool:
    """``route`` answers a GET of the address made of ``parts``."""
    if "GET" not in route.methods or len(route.path_components) != len(parts):
        return False
    for component, part in zip(route.path_components, parts, strict=True):
        if isinstance(component, str):
            if component != part:
                return False
        elif component.parser is not None:
            try:
                component.parser(part)
            except ValueError:
                return False
    return True


def method_not_allowed(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    """A form's address opened as a page (typed, reloaded, Enter in the address bar) shows
    the page the form is on; anything else is refused as before."""
    if request.method == "GET" and wants_html(request):
        return Redirect(page_of(request.app, request.url.path), status_code=303)
    return create_exception_response(request, exc)


def _names_no_page(exc: HTTPException) -> bool:
    """A path parameter failed validation: the URL names nothing that could exist."""
    items = exc.extra if isinstance(exc, ValidationException) else None
    sources = [item.get("source") for item in items or [] if isinstance(item, dict)]
    return any(getattr(source, "value", source) == "path" for source in sources)


def bad_request(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    if _names_no_page(exc):
        return not_found(request, exc)
    message = refusal_message(request, exc, texts(request) if wants_html(request) else english)
    if not wants_html(request):
        return _json("bad_request", message, 400)
    return _page(request, message, 400)


_BUSY_MESSAGE = (
    "Other changes of the same customers kept getting in the way, so nothing was stored. "
    "Send the form again."
)


def busy(request: AnyRequest, exc: TransientConflict) -> Response[Any]:
    """The database kept aborting the change for a conflict, however often it ran again."""
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    if not wants_html(request):
        return _json("busy", _BUSY_MESSAGE, 503)
    _ = texts(request)
    message = _(
        "Other changes of the same customers kept getting in the way, so nothing was stored."
        " Send the form again."
    )
    response = _page(request, message, 503)
    response.headers["Retry-After"] = "1"
    return response


PAGE_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    400: bad_request,  # a status key: it wins over the app's handler for the API's 400s
    DomainError: domain_error,
    NotAuthorizedException: not_logged_in,
    PermissionDeniedException: forbidden,
    NotFoundException: not_found,
    TransientConflict: busy,
}
