"""The Litestar application. ``create_app`` takes a ready ``Deps`` (tests) or builds one."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.logging.config import BaseLoggingConfig
from litestar.middleware import DefineMiddleware
from litestar.response import Response
from litestar.types import GetLogger, Scope

from ellity.deps import DepsProvider
from ellity.logs import keep_secrets_out_of_logs
from ellity.web.api import EshopApiPlugin
from ellity.web.api_docs import api_docs_routes, openapi_config
from ellity.web.dependencies import BUNDLE_DEPENDENCIES, Injected
from ellity.web.operations import RequestTimer, metrics, ready
from ellity.web.pages.errors import method_not_allowed, not_found
from ellity.web.pages.routes import pages_router, static_files, template_config
from ellity.web.request_ids import RequestIds
from ellity.web.security import SecurityHeaders, WebSecurity
from ellity.web.webhooks import webhook_router


@get("/health", opt={"public": True})
async def health(
    ping_database: Injected[Callable[[], Awaitable[None]]],
) -> Response[dict[str, str]]:
    """Liveness: ``ok`` when the process answers and the database does; 503 otherwise.
    ``/ready`` checks everything the app needs to work (``web.operations``)."""
    try:
        await ping_database()
    except Exception:  # noqa: BLE001 - any failure means unhealthy, reported not raised
        return Response({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return Response({"status": "ok", "database": "ok"})


def _log_uncaught(logger: Any, scope: Scope, _traceback: list[str]) -> None:
    logger.exception("uncaught exception (%s %s)", scope.get("method", ""), scope["path"])


class LogThroughRoot(BaseLoggingConfig):
    """Litestar's logger (``litestar``) with no handler or format of its own: its lines go to
    the root logger like every other library's (``ellity.logs.configure_logging``).
    Litestar's default configuration would put handlers of its own on the root logger.
    Uncaught exceptions are logged in debug mode, as Litestar does by default."""

    def __init__(self) -> None:
        self.log_exceptions = "debug"
        self.traceback_line_limit = -1
        self.exception_logging_handler = _log_uncaught
        self.disable_stack_trace: set[int | type[Exception]] = set()

    def configure(self) -> GetLogger:
        return logging.getLogger

    @staticmethod
    def set_level(logger: Any, level: int) -> None:
        logger.setLevel(level)


def create_app(provide_deps: DepsProvider, *, debug: bool = False) -> Litestar:
    """The app; ``provide_deps`` is entered once for the app's lifetime."""
    security = WebSecurity()  # CSRF, session cookies and headers of the merchant pages
    keep_secrets_out_of_logs()  # request paths in any log line: no webhook token

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with provide_deps() as deps:
            app.state.deps = deps
            security.configure(deps.settings)
            yield

    app = Litestar(
        route_handlers=[
            health,
            ready,
            metrics,
            pages_router(security),
            static_files(),
            webhook_router,
            *api_docs_routes(),  # /schema without internet
        ],
        lifespan=[lifespan],
        dependencies=BUNDLE_DEPENDENCIES,
        debug=debug,
        # HTML for browsers, JSON for the API; a form's address opened as a page shows its page
        exception_handlers={404: not_found, 405: method_not_allowed},
        plugins=[EshopApiPlugin()],  # the e-shop API under /api/v1
        openapi_config=openapi_config(),
        csrf_config=security.csrf,
        template_config=template_config(),
        middleware=[
            DefineMiddleware(RequestTimer),
            DefineMiddleware(SecurityHeaders, security=security),
        ],
        logging_config=LogThroughRoot(),
    )
    # Around everything Litestar does with a request, also what no route takes (a 404)
    # and its exception handling: route middleware would miss those.
    app.asgi_handler = RequestIds(app.asgi_handler)
    return app
