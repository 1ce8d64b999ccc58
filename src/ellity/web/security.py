"""Browser-facing protections: security headers, CSRF and cookie flags.

The CSRF secret and the ``Secure`` cookie flag depend on the deployment settings, which the
app reads in its lifespan; ``WebSecurity.configure`` fills them in before the first request.
"""

from __future__ import annotations

import hashlib
import secrets

from litestar.config.csrf import CSRFConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ellity.settings import Settings
from ellity.web.auth import DatabaseSessionConfig

CSRF_COOKIE = "ellity_csrf"

#: Pages use only their own styles, scripts and images; nothing may frame them.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class WebSecurity:
    """The CSRF and session configuration of one app, completed from the settings."""

    def __init__(self) -> None:
        self.https = False
        self.csrf = CSRFConfig(
            secret=secrets.token_hex(32),  # replaced by configure(); never used for a request
            cookie_name=CSRF_COOKIE,
            cookie_httponly=True,
            cookie_samesite="lax",
        )
        self.sessions = DatabaseSessionConfig()

    def configure(self, settings: Settings) -> None:
        self.https = settings.base_url.startswith("https://")
        digest = hashlib.sha256(b"ellity csrf\0" + settings.secret_key.encode("utf-8"))
        self.csrf.secret = digest.hexdigest()
        self.csrf.cookie_secure = self.https
        self.sessions.secure = self.https


class SecurityHeaders:
    """Adds the security headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, security: WebSecurity) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                wanted = dict(_HEADERS)
                if self.security.https:
                    wanted["strict-transport-security"] = "max-age=31536000"
                for name, value in wanted.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
