"""A request id on every log line of a request, and on the work the request causes.

``RequestIds`` wraps the whole app (pages, API, webhook, 404s and errors included): it takes
the client's ``X-Request-ID`` when it is sane (``request_id_from``) or makes one, binds it
for the request's duration (``ports.request_context``), and answers it in the response's
``X-Request-ID``. uvicorn writes its access line while the response starts, inside the
request, so that line carries the id too. The outbox items the request writes keep it, and
the worker binds it again while it delivers them.
"""

from __future__ import annotations

import re
import uuid

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ellity.logs import mask_secrets
from ellity.ports.request_context import MAX_REQUEST_ID_LENGTH, request_id_bound

HEADER = "x-request-id"
_SANE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def request_id_from(given: str | None) -> str:
    """``given`` when it is 1 to 64 characters of ``A-Z a-z 0-9 . _ : -`` and looks like no
    secret (the logs would show it masked, so the id would match nothing); else a new id,
    32 hex digits."""
    if given is not None and _SANE.fullmatch(given) and mask_secrets(given) == given:
        return given
    return uuid.uuid4().hex


def _given(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == HEADER.encode():
            return value.decode("latin-1")
    return None


class RequestIds:
    """ASGI middleware: the request's id bound while the app handles it, and echoed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_given(scope))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message)[HEADER] = request_id
            await send(message)

        with request_id_bound(request_id):
            await self.app(scope, receive, send_with_id)
