"""The merchant pages as one router, with their templates and static files."""

from __future__ import annotations

from pathlib import Path

from jinja2 import pass_context
from jinja2.runtime import Context
from litestar import Router
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from ellity.web import auth
from ellity.web.i18n import translations, ui_language
from ellity.web.pages import (
    api_tokens,
    customers,
    dashboard,
    integration,
    language,
    settings,
    setup,
)
from ellity.web.pages.common import FILTERS, LANGUAGE, PAGE_DEPENDENCIES
from ellity.web.pages.errors import PAGE_EXCEPTION_HANDLERS, refused_page_kept
from ellity.web.security import WebSecurity

WEB = Path(__file__).resolve().parent.parent


def pages_router(security: WebSecurity) -> Router:
    return Router(
        path="/",
        route_handlers=[
            auth.login_page,
            auth.log_in,
            auth.log_out,
            language.choose_language,
            setup.setup_page,
            setup.set_up,
            dashboard.dashboard_page,
            customers.customer_list,
            customers.export_points,
            customers.export_for_excel,
            customers.new_customer_page,
            customers.add_customer,
            customers.customer_page,
            customers.earn,
            customers.spend,
            customers.adjust,
            customers.new_pin,
            customers.register,
            customers.edit,
            customers.consent,
            settings.settings_page,
            settings.save_settings,
            settings.send_test_email,
            api_tokens.tokens_page,
            api_tokens.create_token,
            api_tokens.revoke_token,
            integration.integration_page,
            integration.save_key,
            integration.activate,
            integration.choose_adding,
            integration.reconcile_now,
            integration.choose_reconcile_schedule,
            integration.retry_failed,
            integration.repush,
            integration.deactivate,
            integration.rotate_webhook,
        ],
        middleware=[auth.session_auth(security.sessions).middleware],
        dependencies=PAGE_DEPENDENCIES,
        exception_handlers=PAGE_EXCEPTION_HANDLERS,
        before_request=refused_page_kept,
        include_in_schema=False,
    )


def static_files() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[WEB / "static"],
        opt={"exclude_from_csrf": True, "public": True},
        include_in_schema=False,
    )


@pass_context
def _gettext(context: Context, message: str) -> str:
    return translations(ui_language(context.get(LANGUAGE))).gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(ui_language(context.get(LANGUAGE))).ngettext(singular, plural, n)


def _set_up(engine: JinjaTemplateEngine) -> None:
    """Filters, and gettext in the page's language (``{% trans %}``, ``_()``); messages are
    trimmed of the templates' line breaks and indentation."""
    env = engine.engine
    env.filters.update(FILTERS)
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(
        directory=WEB / "templates", engine=JinjaTemplateEngine, engine_callback=_set_up
    )
