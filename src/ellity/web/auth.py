"""Staff log-in: server-side sessions in the database, and the log-in and log-out pages.

Sessions never adopt an id the server did not issue (the stock backend keeps whatever id
the client sends, which allows session fixation), and the id changes when someone logs in.
Only a digest of the id is stored (``SessionStore``); data is written only when it changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from litestar import Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders, State
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect, Response
from litestar.security.session_auth import SessionAuth
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items

from ellity.deps import Deps
from ellity.domain.model.ids import StaffId
from ellity.domain.model.staff import InvalidCredentials, LoginThrottled, StaffIdentity
from ellity.domain.services import staff
from ellity.ports.clock import Clock, PasswordHasher
from ellity.ports.storage import UnitOfWorkFactory
from ellity.ports.web_state import LoginAttempts
from ellity.web.dependencies import Injected, app_deps
from ellity.web.pages.common import PUBLIC, render, see_other
from ellity.web.pages.errors import error_text, status_for

SESSION_COOKIE = "ellity_session"
SESSION_MAX_AGE = 12 * 60 * 60
MAX_SESSION_ID = 128
_STATE = "ellity.session"


@dataclass
class _SessionState:
    """What the backend learned about this request's session, kept in the ASGI scope."""

    known_id: str | None = None  # an id the store holds: issued by us and still valid
    loaded: bytes | None = None
    new_id: str | None = None
    rotate: bool = False


def _state(connection: ASGIConnection[Any, Any, Any, Any]) -> _SessionState:
    scope = cast("dict[str, Any]", connection.scope)
    if _STATE not in scope:
        scope[_STATE] = _SessionState()
    return cast(_SessionState, scope[_STATE])


def _deps(connection: ASGIConnection[Any, Any, Any, Any]) -> Deps:
    return app_deps(connection.app.state)


def rotate_session_id(request: Request[Any, Any, Any]) -> None:
    """Give the session a new id when the response is sent (call it when logging in)."""
    _state(request).rotate = True


class DatabaseSessionBackend(ServerSideSessionBackend):
    async def load_from_connection(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> dict[str, Any]:
        session_id = connection.cookies.get(self.config.key)
        if not session_id or len(session_id) > MAX_SESSION_ID:
            return {}
        deps = _deps(connection)
        now = deps.clock.now()
        found = await deps.sessions.get(session_id, now=now)
        if found is None:
            return {}
        state = _state(connection)
        state.known_id, state.loaded = session_id, found.data
        max_age = timedelta(seconds=self.config.max_age)
        if found.expires_at - now < max_age / 2:  # sliding expiry, written at most twice per age
            await deps.sessions.renew(session_id, expires_at=now + max_age)
        return self.deserialize_data(found.data)

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        state = _state(connection)
        if state.known_id is not None and not state.rotate:
            return state.known_id
        if state.new_id is None:
            state.new_id = self.generate_session_id()
        return state.new_id

    async def store_in_message(
        self,
        scope_session: ScopeSession,
        message: Message,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> None:
        state, deps = _state(connection), _deps(connection)
        headers = MutableScopeHeaders.from_message(message)
        cookie_params = dict(
            extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys())
        )
        if scope_session is Empty or not scope_session:
            if state.known_id is not None:
                await deps.sessions.delete(state.known_id)
            if connection.cookies.get(self.config.key):
                cookie_params.pop("max_age", None)
                gone = Cookie(value="null", key=self.config.key, expires=0, **cookie_params)
                headers.add("Set-Cookie", gone.to_header(header=""))
            return
        session_id = self.get_session_id(connection)
        data = self.serialize_data(scope_session, connection.scope)
        now = deps.clock.now()
        expires_at = now + timedelta(seconds=self.config.max_age)
        if session_id != state.known_id:
            if state.known_id is not None:
                await deps.sessions.delete(state.known_id)
            await deps.sessions.set(session_id, data, expires_at=expires_at)
            await deps.sessions.prune(now=now)
        elif data != state.loaded:
            await deps.sessions.set(session_id, data, expires_at=expires_at)
        cookie = Cookie(value=session_id, key=self.config.key, **cookie_params)
        headers.add("Set-Cookie", cookie.to_header(header=""))


@dataclass
class DatabaseSessionConfig(ServerSideSessionConfig):
    _backend_class = DatabaseSessionBackend

    key: str = field(default=SESSION_COOKIE)
    max_age: int = field(default=SESSION_MAX_AGE)  # HttpOnly and SameSite=Lax by default
    #: Static files and the token-authenticated API never touch sessions.
    exclude: str | list[str] | None = field(default_factory=lambda: ["^/static/", "^/api/"])

    def __deepcopy__(self, memo: dict[int, Any]) -> DatabaseSessionConfig:
        # Litestar deep-copies a router when it is registered; the copy must stay this very
        # object so that ``WebSecurity.configure`` (the Secure flag) reaches the backend.
        return self


async def retrieve_staff(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> StaffIdentity | None:
    staff_id = session.get("staff_id")
    if not isinstance(staff_id, int):
        return None
    return await staff.current_staff(StaffId(staff_id), uow=_deps(connection).uow(read_only=True))


def session_auth(config: DatabaseSessionConfig) -> SessionAuth[StaffIdentity, Any]:
    """Every merchant page needs a logged-in staff user, except those marked ``PUBLIC``."""
    return SessionAuth[StaffIdentity, ServerSideSessionBackend](
        retrieve_user_handler=retrieve_staff,
        session_backend_config=config,
        exclude_opt_key="public",
    )


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client is not None else "unknown"


_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#]{0,500}")


def safe_next(path: str) -> str:
    """Where to go after logging in: only a path on this site. Browsers drop tabs and line
    breaks from URLs and read a backslash as a slash, so anything beyond plain URL
    characters is refused rather than risk ``//elsewhere``."""
    return path if _LOCAL_PATH.fullmatch(path) else "/"


@dataclass
class LoginForm:
    email: str = ""
    password: str = ""
    next: str = "/"


@get("/login", opt=PUBLIC)
async def login_page(
    request: Request[Any, Any, State],
    next: FromQuery[str] = "/",
    *,
    uow_factory: Injected[UnitOfWorkFactory],
) -> Response[Any]:
    if await staff.needs_setup(uow=uow_factory(read_only=True)):
        return see_other("/setup")
    return render(request, "login.html", next=safe_next(next), email="")


@post("/login", opt=PUBLIC)
async def log_in(
    request: Request[Any, Any, State],
    data: URLEncodedBody[LoginForm],
    *,
    uow_factory: Injected[UnitOfWorkFactory],
    login_attempts: Injected[LoginAttempts],
    clock: Injected[Clock],
    hasher: Injected[PasswordHasher],
) -> Response[Any]:
    try:
        identity = await staff.log_in(
            data.email,
            data.password,
            client=client_address(request),
            uow_factory=uow_factory,
            attempts=login_attempts,
            clock=clock,
            hasher=hasher,
        )
    except (InvalidCredentials, LoginThrottled) as error:
        page = render(
            request,
            "login.html",
            status_code=status_for(error),
            error=error_text(request, error),
            email=data.email,
            next=safe_next(data.next),
        )
        if isinstance(error, LoginThrottled):
            page.headers["Retry-After"] = str(error.retry_after_seconds)
        return page
    request.set_session({"staff_id": identity.staff_id})
    rotate_session_id(request)
    return see_other(safe_next(data.next))


@post("/logout", opt=PUBLIC)
async def log_out(request: Request[Any, Any, State]) -> Redirect:
    request.clear_session()
    return see_other("/login")
