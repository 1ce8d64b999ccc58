"""The dashboard: points issued, spent and expired per day, and the expiries ahead."""

from __future__ import annotations

from litestar import get
from litestar.response import Template

from ellity.domain.services.dashboard import dashboard
from ellity.web.pages.charts import expiry_chart, history_chart
from ellity.web.pages.common import AnyRequest, deps_of, render, staff_of


@get("/")
async def dashboard_page(request: AnyRequest) -> Template:
    deps = deps_of(request)
    board = await dashboard(
        staff_of(request).merchant_id, uow=deps.uow(read_only=True), clock=deps.clock
    )
    locale = board.merchant.settings.locale
    return render(
        request,
        "dashboard.html",
        board=board,
        locale=locale,
        history=history_chart(board.days, locale),
        ahead=expiry_chart(board.expiries, locale),
    )
