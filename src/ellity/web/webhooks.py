"""Ecomail's list webhook: ``POST /webhooks/ecomail/{token}``.

The token in the path is the only credential (Ecomail signs nothing), so the route skips the
pages' session and CSRF checks. A request is answered after one statement that stores the
notification; the worker confirms it with Ecomail later (``domain.services.newsletter_processing``).

Answers (JSON ``{"error", "message"}`` for refusals, as the e-shop API):

- 200 ``{"status": "received"}``: stored (also for another list or an unknown email: the
  worker records those as ignored);
- 404: a wrong or rotated token, whatever the body;
- 400: the body is not JSON; 422: JSON but not Ecomail's notification (the message says
  what is wrong); 413: a body over ``MAX_BODY_BYTES``. Nothing is stored for any of them.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Response

from ellity.domain.model.newsletter import WEBHOOK_PATH
from ellity.domain.services import newsletter_intake as newsletter
from ellity.web.dependencies import app_deps
from ellity.web.errors import api_exception_handlers

MAX_BODY_BYTES = 8 * 1024
RECEIVED = {"status": "received"}


@post(
    "/{token:str}",
    status_code=200,
    request_max_body_size=MAX_BODY_BYTES,
    opt={"exclude_from_csrf": True, "public": True},
)
async def ecomail_list_webhook(
    request: Request[Any, Any, State],
    token: FromPath[str],
) -> Response[dict[str, str]]:
    # Ecomail's sign-ups arrive here in bursts: the bundle is read directly, since resolving
    # injected dependencies per request cost about a third of the intake's throughput.
    deps = app_deps(request.app.state)
    await newsletter.receive_notification(
        token, await request.body(), uow_factory=deps.uow, clock=deps.clock
    )
    return Response(RECEIVED, status_code=200, headers={"Cache-Control": "no-store"})


webhook_router = Router(
    path=WEBHOOK_PATH,
    route_handlers=[ecomail_list_webhook],
    exception_handlers=api_exception_handlers(),
    include_in_schema=False,
)
