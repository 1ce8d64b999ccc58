"""The Litestar application. ``create_app`` takes a ready ``Deps`` (tests) or builds one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.response import Response

from ellity.deps import Deps, DepsProvider


@get("/health", sync_to_thread=False, opt={"public": True})
async def health(state: State) -> Response[dict[str, str]]:
    """``ok`` when the database answers; 503 otherwise."""
    deps: Deps = state.deps
    try:
        await deps.ping_database()
    except Exception:  # noqa: BLE001 - any failure means unhealthy, reported not raised
        return Response({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return Response({"status": "ok", "database": "ok"})


def create_app(provide_deps: DepsProvider, *, debug: bool = False) -> Litestar:
    """The app; ``provide_deps`` is entered once for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with provide_deps() as deps:
            app.state.deps = deps
            yield

    def _not_found(_: Request[object, object, State], exc: Exception) -> Response[dict[str, str]]:
        return Response({"error": "not_found", "message": "No such page."}, status_code=404)

    return Litestar(
        route_handlers=[health],
        lifespan=[lifespan],
        debug=debug,
        exception_handlers={404: _not_found},
    )
