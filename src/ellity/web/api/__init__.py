"""The JSON API for the merchant's e-shop, under ``/api/v1``.

Every call needs ``Authorization: Bearer <token>`` (an API token of the merchant); bodies are
JSON of at most ``MAX_BODY_BYTES``; errors are ``{"error", "message"}`` (see ``web.errors``).
The API is token-authenticated, so the pages' CSRF and session checks do not apply to it.

``EshopApiPlugin`` wires it into an app in one place: the router, the app-level dependencies
its handlers take from the ``Deps`` in the app's state, the bearer scheme of the OpenAPI
schema, and the API's error shape for routing failures under ``/api/`` (which happen before
any router is chosen, so only app-level handlers see them).
"""

from __future__ import annotations

import copy

from litestar import Router
from litestar.config.app import AppConfig
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPluginProtocol

from ellity.web.api import customers
from ellity.web.api.auth import BEARER_SCHEME, api_merchant_id, require_api_token
from ellity.web.dependencies import BUNDLE_DEPENDENCIES
from ellity.web.errors import api_exception_handlers, for_api_paths

MAX_BODY_BYTES = 64 * 1024

api_router = Router(
    path="/api/v1",
    route_handlers=customers.route_handlers,
    guards=[require_api_token],
    dependencies={"merchant_id": Provide(api_merchant_id, sync_to_thread=False)},
    exception_handlers=api_exception_handlers(),
    request_max_body_size=MAX_BODY_BYTES,
    security=[{BEARER_SCHEME: []}],
    tags=["E-shop API"],
    cache_control=CacheControlHeader(no_store=True),  # answers hold PINs
    # Bearer tokens, not cookies, authenticate these calls: no CSRF token, no session.
    opt={"exclude_from_csrf": True, "exclude_from_auth": True},
)

_BEARER = SecurityScheme(
    type="http",
    scheme="bearer",
    description="An API token of the merchant (Ellity: API tokens, or"
    " `ellity create-api-token`), sent as `Authorization: Bearer <token>`.",
)


class EshopApiPlugin(InitPluginProtocol):
    """Adds the e-shop API to an app: ``plugins=[EshopApiPlugin()]``."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(api_router)
        for name, provider in BUNDLE_DEPENDENCIES.items():  # what the handlers take from ``Deps``
            app_config.dependencies.setdefault(name, provider)
        app_config.exception_handlers = for_api_paths(app_config.exception_handlers)
        if app_config.openapi_config is not None:
            app_config.openapi_config = with_bearer_scheme(app_config.openapi_config)
        return app_config


def with_bearer_scheme(config: OpenAPIConfig) -> OpenAPIConfig:
    """``config`` with the API's bearer scheme among its components (a copy)."""
    existing = config.components if isinstance(config.components, list) else [config.components]
    # A shallow copy, not dataclasses.replace: that would re-run the deprecation checks.
    changed = copy.copy(config)
    changed.title = "Ellity" if config.title == "Litestar API" else config.title
    changed.components = [*existing, Components(security_schemes={BEARER_SCHEME: _BEARER})]
    return changed


__all__ = ["MAX_BODY_BYTES", "EshopApiPlugin", "api_router"]
