"""The dashboard: points issued, spent and expired per day, and the expiries ahead; above
them, while the programme is being set up, the first-run checklist."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Template

from ellity.domain.model.first_run import SetupStep
from ellity.domain.model.ids import MerchantId
from ellity.domain.services.dashboard import dashboard
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWorkFactory
from ellity.web.dependencies import Injected
from ellity.web.i18n import N_
from ellity.web.pages.charts import expiry_chart, history_chart
from ellity.web.pages.common import AnyRequest, page_language, render


@dataclass(frozen=True, slots=True)
class StepText:
    """How the checklist shows a step: msgids, translated on the page, and where it is done."""

    title: str
    explanation: str
    link: str
    action: str


STEPS: dict[SetupStep, StepText] = {
    SetupStep.SHOP_ADDRESS: StepText(
        N_("Shop address"),
        N_("The address of your e-shop, used in the referral links and in the emails."),
        "/settings",
        N_("Enter it in Settings"),
    ),
    SetupStep.API_TOKEN: StepText(
        N_("API token"),
        N_("Your e-shop uses it to send Ellity its customers and orders."),
        "/api-tokens",
        N_("Create a token"),
    ),
    SetupStep.ECOMAIL: StepText(
        N_("Connect Ecomail"),
        N_("Paste your Ecomail API key, choose the list and activate."),
        "/integrations/ecomail",
        N_("Connect Ecomail"),
    ),
    SetupStep.WEBHOOK: StepText(
        N_("Paste the webhook URL into the Ecomail list"),
        N_(
            "Ellity cannot see Ecomail's settings: this step is done once Ecomail's first"
            " notification arrives."
        ),
        "/integrations/ecomail#newsletter",
        N_("Show the webhook URL"),
    ),
    SetupStep.TEST_EMAIL: StepText(
        N_("Test email"),
        N_("Send a test email through your SMTP server to see that the emails go out."),
        "/settings#test-email",
        N_("Send a test email"),
    ),
}


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
        steps=STEPS,
        history=history_chart(board.days, locale),
        ahead=expiry_chart(board.expiries, locale),
    )
