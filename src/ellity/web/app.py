"""The Litestar application. ``create_app`` takes a ready ``Deps`` (tests) or builds one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.middleware import DefineMiddleware
from litestar.response import Response

from ellity.deps import DepsProvider
from ellity.logs import keep_secrets_out_of_logs
from ellity.web.api import EshopApiPlugin
from ellity.web.dependencies import BUNDLE_DEPENDENCIES, Injected
from ellity.web.operations import RequestTimer, metrics, ready
from ellity.web.pages.errors import not_found
from ellity.web.pages.routes import pages_router, static_files, template_config
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

    return Litestar(
        route_handlers=[
            health,
            ready,
            metrics,
            pages_router(security),
            static_files(),
            webhook_router,
        ],
        lifespan=[lifespan],
        dependencies=BUNDLE_DEPENDENCIES,
        debug=debug,
        exception_handlers={404: not_found},  # HTML for browsers, JSON for the API
        plugins=[EshopApiPlugin()],  # the e-shop API under /api/v1
        csrf_config=security.csrf,
        template_config=template_config(),
        middleware=[
            DefineMiddleware(RequestTimer),
            DefineMiddleware(SecurityHeaders, security=security),
        ],
    )
