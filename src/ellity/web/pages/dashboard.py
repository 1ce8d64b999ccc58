"""The dashboard: points issued, spent and expired per day, and the expiries ahead."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Template

from ellity.domain.model.ids import MerchantId
from ellity.domain.services.dashboard import dashboard
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.dependencies import Injected
from ellity.web.pages.charts import expiry_chart, history_chart
from ellity.web.pages.common import AnyRequest, page_language, render


@get("/")
async def dashboard_page(
    request: AnyRequest,
    *,
    merchant_id: NamedDependency[MerchantId],
    uow_factory: Injected[UnitOfWorkFactory],
    clock: Injected[Clock],
) -> Template:
    board = await dashboard(merchant_id, uow=uow_factory(read_only=True), clock=clock)
    locale = page_language(request)
    return render(
        request,
        "dashboard.html",
        board=board,
        history=history_chart(board.days, locale),
        ahead=expiry_chart(board.expiries, locale),
    )
