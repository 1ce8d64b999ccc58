"""How errors become HTTP answers: one table for the domain errors, one JSON shape for the API.

Every error of the e-shop API is ``{"error": "<code>", "message": "<what is wrong>"}``:

=====  =====================================  ==============================================
 400   ``bad_request``                        the request does not fit the API's schema: the
                                              body is not JSON or not an object, a field has
                                              the wrong JSON type (points sent as a number),
                                              a required field is missing, a field is unknown
                                              (refused, so a misspelt field never passes
                                              silently), a parameter is not a whole number or
                                              is outside its documented range
 401   ``unauthorized``                       no API token, or a wrong or revoked one
                                              (with ``WWW-Authenticate: Bearer``)
 404   ``not_found``                          no such customer for this merchant (another
                                              merchant's customer included), no such URL
 405   ``method_not_allowed``                 with the ``Allow`` header
 409   the conflict's own code                ``insufficient_points``, ``order_already_used``,
                                              ``duplicate_customer``,
                                              ``registered_customer_has_no_pin``
 413   ``body_too_large``                     a body over the API's limit
 422   ``invalid_input``                      the request fits the schema but a value breaks a
                                              rule: not an email, points with three decimals
                                              or not above zero, a name too long ...
 500   ``internal_error``                     a bug; logged (the use case's transaction rolls back)
 503   ``busy``                               the database kept aborting the change for
                                              conflicts with concurrent ones, however often it
                                              was run again; nothing stored, try again (with
                                              ``Retry-After``)
=====  =====================================  ==============================================

So 400 means "fix how the request is built", 422 "fix the value". Booleans are read the way
Litestar reads them everywhere: ``true``/``false``, and also ``"true"``/``"false"``/``1``/``0``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_exception_response
from litestar.response import Response
from litestar.types import ExceptionHandler, ExceptionHandlersMap

from ellity.domain.model.errors import (
    Conflict,
    DomainError,
    InvalidApiToken,
    InvalidInput,
    NotFound,
)
from ellity.domain.model.newsletter import UnreadableNotification
from ellity.domain.model.staff import InvalidCredentials, LoginThrottled
from ellity.logs import mask_secrets
from ellity.ports.marketing import (
    InvalidApiKey,
    ListNotFound,
    MarketingError,
    MarketingRateLimited,
    MarketingRejected,
    MarketingUnavailable,
)
from ellity.ports.storage import TransientConflict
from ellity.web.validation_messages import refusal_message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Statuses:
    """A domain error's HTTP status on each edge."""

    api: int  # the JSON API: 400 is kept for requests that do not fit the schema
    page: int  # a merchant page or form: a value to correct on the form is a plain 400


#: The one table of domain errors, by class; the closest class in an error's MRO decides.
#: Ecomail's errors reach only the integration page (the API never calls Ecomail).
DOMAIN_ERRORS: Mapping[type[DomainError | MarketingError], Statuses] = {
    InvalidApiToken: Statuses(api=401, page=401),
    UnreadableNotification: Statuses(api=400, page=400),
    InvalidCredentials: Statuses(api=401, page=400),
    LoginThrottled: Statuses(api=429, page=429),
    InvalidInput: Statuses(api=422, page=400),
    NotFound: Statuses(api=404, page=404),
    Conflict: Statuses(api=409, page=409),
    DomainError: Statuses(api=422, page=400),
    InvalidApiKey: Statuses(api=502, page=400),
    MarketingRateLimited: Statuses(api=503, page=429),
    MarketingUnavailable: Statuses(api=503, page=503),
    ListNotFound: Statuses(api=409, page=409),
    MarketingRejected: Statuses(api=502, page=502),
}

#: Codes for what Litestar itself refuses (routing, parsing, limits).
_HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}

API_PATH_PREFIX = "/api/"
#: What Litestar's routing can refuse with before a router is chosen.
_ROUTING_STATUSES = (400, 404, 405)
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class ErrorBody(msgspec.Struct):
    """What every error of the API answers."""

    error: str
    message: str


def _statuses(exc: DomainError | MarketingError) -> Statuses:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            return DOMAIN_ERRORS[cls]
    return DOMAIN_ERRORS[DomainError]


def status_of(exc: DomainError) -> int:
    """The HTTP status of a domain error in the API, from ``DOMAIN_ERRORS``."""
    return _statuses(exc).api


def page_status_of(exc: DomainError | MarketingError) -> int:
    """The HTTP status of a domain error on a merchant page, from ``DOMAIN_ERRORS``."""
    return _statuses(exc).page


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(error=code, message=message),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


# -- the handlers -------------------------------------------------------------------------


def domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[ErrorBody]:
    status = status_of(exc)
    headers = BEARER_CHALLENGE if status == 401 else None
    return error_response(status, exc.code, exc.message, headers)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    """Litestar's own refusals (routing, parsing, limits) in the API's shape."""
    status = exc.status_code
    if status >= 500:
        return internal_error(request, exc)
    code = _HTTP_CODES.get(status) or _code_of_status(status)
    headers = dict(exc.headers or {})
    if status == 401:
        headers.update(BEARER_CHALLENGE)
    return error_response(status, code, refusal_message(request, exc), headers)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    # The path may hold a webhook token; the traceback holds no statement values (the engines
    # hide them), and the process's log records are masked as well (``ellity.logs``).
    path = mask_secrets(request.url.path)
    logger.error("%s %s failed", request.method, path, exc_info=exc)
    message = "Ellity failed to handle this request; the error is logged."
    if request.app.debug:
        message += f" ({type(exc).__name__}: {exc})"
    return error_response(500, "internal_error", message)


def api_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """Any exception, answered in the API's shape."""
    if isinstance(exc, DomainError):
        return domain_error(request, exc)
    if isinstance(exc, HTTPException):
        return http_error(request, exc)
    if isinstance(exc, RecursionError):  # the JSON decoder's depth limit; nothing else recurses
        return error_response(400, "bad_request", "The body is nested too deeply to be read.")
    if isinstance(exc, TransientConflict):  # still, after the use case ran it again and again
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            "busy",
            "Concurrent changes of the same customers kept getting in the way; nothing was"
            " stored. Send the request again.",
            {"Retry-After": "1"},
        )
    return internal_error(request, exc)


def api_exception_handlers() -> ExceptionHandlersMap:
    """Handlers for the API router.

    Litestar prefers a status-code key over an exception-class key, and a router's keys over
    the app's, so every status and the base classes are claimed here: whatever the app
    registers for its HTML pages never answers an API request.
    """
    handlers: dict[int | type[Exception], ExceptionHandler[Any]] = {
        status: api_error for status in range(400, 600)
    }
    handlers[DomainError] = api_error
    handlers[HTTPException] = api_error
    handlers[Exception] = api_error
    return handlers


def for_api_paths(app_handlers: ExceptionHandlersMap) -> ExceptionHandlersMap:
    """The app's handlers, answering in the API's shape for requests under ``/api/``.

    Routing failures (no such URL, wrong method) happen before any router is chosen, so only
    the app's handlers see them. Litestar calls a status's handler for every HTTP exception of
    that status, so for each of them the app's own handler of the same status (or Litestar's
    default answer) still answers outside the API.
    """
    wrapped: dict[int | type[Exception], ExceptionHandler[Any]] = dict(app_handlers)
    for status in _ROUTING_STATUSES:
        wrapped[status] = _api_or(app_handlers.get(status, create_exception_response))
    return wrapped


def _api_or(elsewhere: ExceptionHandler[Any]) -> ExceptionHandler[Any]:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if request.url.path.startswith(API_PATH_PREFIX):
            return api_error(request, exc)
        return elsewhere(request, exc)

    return handle


def _code_of_status(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"
