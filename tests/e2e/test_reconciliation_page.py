"""The reconciliation on the Ecomail page: "Reconcile now", the schedule, the progress and the
report of the last runs, in English and in Czech (the app over ASGI, SQLite and PostgreSQL,
the Ecomail emulator on a port)."""

from __future__ import annotations

import html
import re

import httpx

from ellity.domain.model.consent import EcomailAdd
from ellity.worker import run_reconciliation
from tests.consenting import set_ecomail_add
from tests.e2e.test_integration_page import (
    PAGE,
    Site,
    connected,
    ecomail_account,
    emulator,
    flash_on,
    followed,
    logged_in,
    post,
    refused_by_page,
    site,
)
from tests.e2e.test_pages import choose_language

__all__ = ["emulator", "site"]  # the integration page tests' site


async def active(site: Site) -> int:
    """Anna's integration active with every customer written to the list."""
    _, list_id = ecomail_account(site)
    await set_ecomail_add(site.deps.uow, site.anna.id, EcomailAdd.CUSTOMERS)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        await followed(client, await post(client, "activate", list_id=str(list_id)))
    await site.sync()
    return list_id


def text_of(page_html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:table|div|form)>', page_html, re.S)
    assert found, element_id
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


async def test_reconcile_now_runs_once_shows_its_progress_then_its_report(site: Site) -> None:
    list_id = await active(site)
    site.emu.edit_field(list_id, "ann@anna-customers.cz", "ellity_credit", "9 999")
    async with logged_in(site, site.anna) as client:
        page = await client.get(PAGE)
        assert "No reconciliation has run yet." in page.text
        assert 'name="ecomail_reconcile" value="weekly"\n      checked' in page.text
        started = await followed_to_section(client, await post(client, "reconcile"))
        assert flash_on(started) == "The reconciliation has started; its progress is shown below."
        assert "Starting: counting the members of the list…" in started.text
        assert 'http-equiv="refresh"' in started.text
        assert re.search(r'<button type="submit"\s+disabled>Reconcile now</button>', started.text)
        again = await followed_to_section(client, await post(client, "reconcile"))
        assert flash_on(again).startswith("A reconciliation is running already")

        ctx = {"deps": site.deps, "worker_token": "page-worker"}
        assert await run_reconciliation(ctx, site.anna.id)
        done = await client.get(PAGE)
        runs = text_of(done.text, "reconcile-runs")
        assert "(you asked)" in runs
        # checked, then each kind of repair, the duration, the API calls, the result
        assert "(you asked) 2 1 0 0 0 0 0 0 s 10 done" in runs
        assert text_of(done.text, "reconcile-repairs") == (
            "Email Repair Why ann@anna-customers.cz fields written again"
            " Its Ellity fields in Ecomail differ from the customer's: ellity_credit."
        )
        assert 'id="reconcile-progress"' not in done.text

        await choose_language(client, "cs")
        czech = await client.get(PAGE)
        assert "Porovnání s Ecomailem" in czech.text
        assert "pole zapsána znovu" in czech.text
        assert (
            "Jeho pole Ellity v Ecomailu se liší od údajů zákazníka: ellity_credit."
            in html.unescape(czech.text)
        )
    async with site.deps.uow(read_only=True) as uow:
        (run,) = await uow.reconciliation.latest(site.anna.id, limit=5)
    assert run.trigger.value == "merchant" and run.repairs.fields == 1


async def followed_to_section(client: httpx.AsyncClient, answer: httpx.Response) -> httpx.Response:
    """A done action sends the browser to the page's reconciliation section."""
    assert answer.status_code == 303, (answer.status_code, answer.text)
    assert answer.headers["location"] == f"{PAGE}#reconciliation"
    return await client.get(PAGE)


async def test_the_schedule_is_saved_and_a_wrong_value_is_refused(site: Site) -> None:
    await active(site)
    async with logged_in(site, site.anna) as client:
        answer = await post(client, "reconcile/schedule", ecomail_reconcile="daily")
        page = await followed_to_section(client, answer)
        assert flash_on(page) == "Saved: the list is reconciled every day."
        assert 'value="daily"\n      checked' in page.text
        refused = await refused_by_page(client, "reconcile/schedule", ecomail_reconcile="hourly")
        assert refused.status_code == 400
        assert "ecomail_reconcile must be one of: weekly, daily, off." in html.unescape(
            refused.text
        )
    async with site.deps.uow(read_only=True) as uow:
        merchant = await uow.merchants.get(site.anna.id)
    assert merchant is not None and merchant.settings.ecomail_reconcile.value == "daily"


async def test_reconcile_now_needs_an_active_integration(site: Site) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)  # a key, no list yet
        page = await refused_by_page(client, "reconcile")
        assert page.status_code == 409
        assert "Connect Ecomail and choose a list before reconciling it." in html.unescape(
            page.text
        )
    async with site.deps.uow(read_only=True) as uow:
        assert await uow.reconciliation.latest(site.anna.id, limit=5) == []
