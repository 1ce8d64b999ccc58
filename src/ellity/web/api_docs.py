"""The e-shop API's documentation under ``/schema``, working without internet.

Litestar's viewers load their scripts, styles and icon from public CDNs, so on a server
without internet (or behind the pages' CSP) they show a blank page. Here Swagger UI comes from
the ``swagger-ui-py`` package, served by this app under ``/schema/assets``, and the page has
no inline script: ``/static/api-docs.js`` starts the viewer on ``/schema/openapi.json``. The
page is under the same Content-Security-Policy as every other page.

``/schema`` and ``/schema/swagger`` show the viewer, ``/schema/openapi.json`` is the document;
the addresses of Litestar's other viewers (ReDoc, Elements, RapiDoc) lead to it.
"""

from __future__ import annotations

import importlib.util
from html import escape
from pathlib import Path
from typing import Any

from litestar import Request, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
VIEWER_PATH = f"{SCHEMA_PATH}/swagger"


def swagger_ui_assets() -> Path:
    """The folder of Swagger UI's built files in the installed ``swagger-ui-py`` package (found
    without importing the package, which would import its framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class LocalSwaggerUI(SwaggerRenderPlugin):
    """Swagger UI from this server's own files, started by a script file (no inline script,
    no CDN, no external validator)."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        spec_url = escape(self.get_openapi_json_route(request))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} API</title>
  <link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
  <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-spec-url="{spec_url}"></div>
  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="/static/api-docs.js"></script>
</body>
</html>
""".encode()


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Ellity",
        version="1.0.0",
        path=SCHEMA_PATH,
        render_plugins=[LocalSwaggerUI(path=["/", "/swagger"])],
    )


@get(
    [f"{SCHEMA_PATH}/redoc", f"{SCHEMA_PATH}/elements", f"{SCHEMA_PATH}/rapidoc"],
    include_in_schema=False,
    opt={"public": True},
    sync_to_thread=False,
)
def other_viewers() -> Redirect:
    """The addresses of Litestar's other viewers show the one that works offline."""
    return Redirect(VIEWER_PATH, status_code=301)


def api_docs_routes() -> list[Any]:
    return [
        other_viewers,
        create_static_files_router(
            path=ASSETS_PATH,
            directories=[swagger_ui_assets()],
            opt={"exclude_from_csrf": True, "public": True},
            include_in_schema=False,
        ),
    ]


__all__ = ["LocalSwaggerUI", "api_docs_routes", "openapi_config", "swagger_ui_assets"]
