"""An httpx transport that serves requests from an ASGI app in the test's own event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

import httpx

if TYPE_CHECKING:
    from litestar.types import ASGIApp


def asgi_transport(
    app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 123)
) -> httpx.ASGITransport:
    """``httpx.ASGITransport`` over ``app``; ``client`` is the address the app sees."""
    # httpx types the scope and the messages of the app it calls as plain mutable mappings,
    # Litestar types those the app accepts as TypedDicts, and mypy lets neither stand in for
    # the other; both describe the same ASGI callable.
    asgi_app = cast("Callable[..., Awaitable[None]]", app)
    return httpx.ASGITransport(app=asgi_app, client=client)
