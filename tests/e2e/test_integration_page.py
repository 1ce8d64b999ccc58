"""The Ecomail integration page over HTTP: the whole app on SQLite and on PostgreSQL, pointed
at the Ecomail emulator (``ELLITY_ECOMAIL_API_URL``) on a port of its own.

A client that sends ``Accept: text/html`` plays the browser: it keeps cookies, reads the CSRF
token from the forms it is shown and posts them back.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar import Litestar

from ellity.adapters.sql.database import Database
from ellity.deps import Deps
from ellity.domain.model.consent import ConsentSource, EcomailAdd, MarketingConsent
from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.integration import IntegrationNotReady
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import customers, merchants, points, programme_settings
from ellity.domain.services.common import load_merchant
from ellity.domain.services.customers import contact_snapshots
from ellity.ports.marketing import MarketingRateLimited, MarketingRejected, MarketingUnavailable
from ellity.web.app import create_app
from ellity.web.pages.integration import Error, error_message
from ellity.worker import deliver_once, run_reconciliation
from tests.asgi import asgi_transport
from tests.consenting import set_ecomail_add
from tests.e2e.conftest import BASE_URL, deps_on, running
from tests.ecomail_emulator import Account, Emulator, EmulatorServer
from tests.fakes import FakeClock

PAGE = "/integrations/ecomail"
PASSWORD = "a long password"
#: Most tests read the pages in English: the browser prefers it (the log-in page) and
#: ``logged_in`` switches the staff user to it (a Czech merchant's pages start in Czech).
HTML = {"accept": "text/html", "accept-language": "en"}
TOKEN_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')
ANNA_KEY = "anna-ecomail-key-7f3a9c"
BOB_KEY = "bob-ecomail-key-51d0e8"
ACTIONS = (
    "key",
    "activate",
    "adding",
    "retry",
    "repush",
    "deactivate",
    "webhook/rotate",
    "reconcile",
    "reconcile/schedule",
)

WRONG_KEY = (
    "Ecomail did not accept this API key: copy it again from Ecomail → account management"
    " → For developers."
)
LIST_GONE = "The list no longer exists in Ecomail: refresh the lists and choose another."


@dataclass(frozen=True)
class Shop:
    id: MerchantId
    admin: str


@dataclass
class Site:
    app: Litestar
    deps: Deps
    database: Database
    clock: FakeClock
    emu: Emulator
    server: EmulatorServer
    anna: Shop
    bob: Shop

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=asgi_transport(self.app), base_url=BASE_URL, headers=HTML
        )

    async def integration(self, shop: Shop) -> dict[str, Any] | None:
        async with self.database.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text("SELECT * FROM ecomail_integrations WHERE merchant_id = :m"),
                    {"m": shop.id},
                )
            ).first()
        return None if row is None else dict(row._mapping)

    async def sync(self) -> int:
        """What a worker run does: mark the backfill, write the contacts, deliver."""
        return await deliver_once(self.deps, "test-worker", limit=1000)


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, EmulatorServer]]:
    with Emulator() as emu, EmulatorServer(emu, port=0) as server:
        yield emu, server


async def new_shop(deps: Deps, slug: str, emails: list[str | None]) -> Shop:
    admin = f"admin@{slug}.example.cz"
    merchant = await merchants.create_merchant(
        slug=slug,
        settings=MerchantSettings(name=slug.title(), shop_url=f"https://{slug}.example.cz"),
        admin_email=admin,
        admin_password=PASSWORD,
        uow=deps.uow(),
        clock=deps.clock,
        hasher=deps.hasher,
    )
    assert merchant.id is not None
    for n, email in enumerate(emails):
        await customers.upsert_customer(
            merchant.id,
            customers.CustomerInput(email=email, shop_customer_id=f"{slug}-{n}"),
            uow=deps.uow(),
            clock=deps.clock,
            rng=deps.rng,
        )
    return Shop(id=merchant.id, admin=admin)


@pytest.fixture
async def site(
    sql_database: Database, tmp_path: Path, emulator: tuple[Emulator, EmulatorServer]
) -> AsyncIterator[Site]:
    """Anna's shop with two customers with an email; Bob's shop without any."""
    emu, server = emulator
    clock = FakeClock()
    holder: list[Deps] = []

    @asynccontextmanager
    async def provide_deps() -> AsyncIterator[Deps]:
        async with deps_on(sql_database, tmp_path, clock, ecomail_api_url=server.url) as deps:
            holder.append(deps)
            yield deps

    app = create_app(provide_deps, debug=True)
    async with running(app):
        deps = holder[0]
        anna = await new_shop(deps, "anna", ["ann@anna-customers.cz", "ben@anna-customers.cz"])
        bob = await new_shop(deps, "bob", [None])
        yield Site(app, deps, sql_database, clock, emu, server, anna, bob)


async def form_token(client: httpx.AsyncClient, path: str = "/login") -> str:
    page = await client.get(path)
    found = TOKEN_INPUT.search(page.text)
    assert found, f"no form on {path}: {page.status_code}"
    return html.unescape(found.group(1))


@asynccontextmanager
async def logged_in(
    site: Site, shop: Shop, language: str = "en"
) -> AsyncIterator[httpx.AsyncClient]:
    async with site.browser() as client:
        token = await form_token(client)
        answer = await client.post(
            "/login",
            data={"_csrf_token": token, "email": shop.admin, "password": PASSWORD, "next": "/"},
        )
        assert answer.status_code == 303, answer.text
        token = await form_token(client, "/")
        chosen = await client.post(
            "/language", data={"_csrf_token": token, "language": language, "next": "/"}
        )
        assert chosen.status_code == 303, chosen.text
        yield client


async def post(client: httpx.AsyncClient, action: str, **form: str) -> httpx.Response:
    token = await form_token(client, PAGE)
    return await client.post(f"{PAGE}/{action}", data={"_csrf_token": token, **form})


async def refused_by_page(client: httpx.AsyncClient, action: str, **form: str) -> httpx.Response:
    """A form the page refuses: the browser is sent back to the page, which says why."""
    return await followed(client, await post(client, action, **form))


async def followed(client: httpx.AsyncClient, answer: httpx.Response) -> httpx.Response:
    assert answer.status_code == 303, (answer.status_code, answer.text)
    assert answer.headers["location"] == PAGE
    return await client.get(PAGE)


def error_on(page: httpx.Response) -> str:
    found = re.search(r'class="error" role="alert">([^<]+)<', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def flash_on(page: httpx.Response) -> str:
    found = re.search(r'class="flash ok" role="status">([^<]+)<', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def options(page: httpx.Response) -> dict[str, str]:
    """The lists offered in the select: id → label."""
    return {
        value: html.unescape(label)
        for value, label in re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', page.text)
    }


def ecomail_account(site: Site, key: str = ANNA_KEY) -> tuple[Account, int]:
    account = site.emu.add_account(key)
    account.add_list("Old newsletter")
    return account, account.add_list("Loyal customers")


async def connected(site: Site, client: httpx.AsyncClient, key: str = ANNA_KEY) -> None:
    await followed(client, await post(client, "key", api_key=key))


# -- the key ---------------------------------------------------------------------------------


async def test_a_wrong_key_is_refused_with_advice_and_nothing_is_stored(site: Site) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        first = await client.get(PAGE)
        assert first.status_code == 200
        assert re.search(
            r'<input[^>]*name="api_key"[^>]*type="password"[^>]*autocomplete="off"', first.text
        )
        assert "account management → For developers" in html.unescape(first.text)

        refused = await refused_by_page(client, "key", api_key="not-the-anna-key-1234")
        assert refused.status_code == 400
        assert error_on(refused) == WRONG_KEY
        assert "not-the-anna-key-1234" not in refused.text
        assert 'name="api_key"' in refused.text
        assert "masked-key" not in refused.text

        empty = await refused_by_page(client, "key", api_key="   ")
        assert empty.status_code == 400
        assert "Paste the API key from Ecomail" in error_on(empty)
    assert await site.integration(site.anna) is None


async def test_a_verified_key_is_shown_only_masked_and_opens_the_account_lists(
    site: Site,
) -> None:
    _, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        page = await followed(client, await post(client, "key", api_key=f"  {ANNA_KEY}\n"))
        assert flash_on(page).startswith("Key verified")
        assert '<code id="masked-key">••••' + ANNA_KEY[-4:] + "</code>" in page.text
        assert ANNA_KEY not in page.text
        assert options(page) == {
            str(list_id - 1): f"Old newsletter (id {list_id - 1})",
            str(list_id): f"Loyal customers (id {list_id})",
        }
        assert "refresh the lists" in page.text
        assert 'name="api_key"' in page.text  # the key can be replaced at any time
        assert ANNA_KEY not in (await client.get("/settings")).text
    stored = await site.integration(site.anna)
    assert stored is not None
    assert stored["key_hint"] == ANNA_KEY[-4:]
    assert ANNA_KEY not in str(stored)  # encrypted
    assert not stored["active"]


async def test_a_list_created_in_ecomail_appears_when_the_page_is_reloaded(site: Site) -> None:
    account, _ = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        new_id = account.add_list("Created just now")
        assert options(await client.get(PAGE))[str(new_id)] == f"Created just now (id {new_id})"


# -- activation --------------------------------------------------------------------------------


async def test_activation_creates_the_eleven_fields_and_the_page_shows_the_sync(
    site: Site,
) -> None:
    account, list_id = ecomail_account(site)
    # every customer is added to the list, whatever their consent
    await set_ecomail_add(site.deps.uow, site.anna.id, EcomailAdd.CUSTOMERS)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        assert flash_on(page).startswith("Active with the list Loyal customers. Fields confirmed;")
        fields = account.lists[list_id].fields
        assert {key: spec["type"] for key, spec in fields.items()} == FIELD_TYPES
        assert '<dd id="state">active</dd>' in page.text
        assert f'Loyal customers <span class="hint">(id {list_id})</span>' in page.text
        assert '<code id="masked-key">••••' + ANNA_KEY[-4:] + "</code>" in page.text
        assert ANNA_KEY not in page.text
        assert 'http-equiv="refresh" content="5; url=/integrations/ecomail"' in page.text
        for button in ("Retry failed", "Re-push all customers", "Deactivate"):
            assert button in page.text

        assert await site.sync() >= 1  # the worker pushes the backfill
        done = await client.get(PAGE)
        assert "Done: 2 of 2 contacts written." in done.text
        assert 'http-equiv="refresh"' not in done.text
        assert set(account.lists[list_id].members) == {
            "ann@anna-customers.cz",
            "ben@anna-customers.cz",
        }


async def test_activation_without_a_customer_email_says_the_fields_come_later(
    site: Site,
) -> None:
    account, list_id = ecomail_account(site, BOB_KEY)
    async with logged_in(site, site.bob) as client:
        await connected(site, client, BOB_KEY)
        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        assert "The Ellity fields will appear in Ecomail with the first customer" in flash_on(page)
        assert '<dd id="state">active</dd>' in page.text
    assert account.lists[list_id].fields == {}


async def test_a_list_deleted_before_activation_is_explained_and_nothing_activates(
    site: Site,
) -> None:
    account, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        token = await form_token(client, PAGE)
        account.delete_list(list_id)
        refused = await followed(
            client,
            await client.post(
                f"{PAGE}/activate", data={"_csrf_token": token, "list_id": str(list_id)}
            ),
        )
        assert refused.status_code == 409
        assert error_on(refused) == LIST_GONE
        assert str(list_id) not in options(refused)  # the lists are fetched again
        assert '<dd id="state">not active</dd>' in refused.text

        nothing = await refused_by_page(client, "activate", list_id="")
        assert nothing.status_code == 409
        assert error_on(nothing) == "Choose the Ecomail list to keep the loyalty fields in."
    stored = await site.integration(site.anna)
    assert stored is not None
    assert not stored["active"]


async def test_deactivating_stops_the_integration_and_offers_the_lists_again(site: Site) -> None:
    _, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        await followed(client, await post(client, "activate", list_id=str(list_id)))
        page = await followed(client, await post(client, "deactivate", confirmed="yes"))
        assert flash_on(page).startswith("The integration is deactivated")
        assert '<dd id="state">not active</dd>' in page.text
        assert str(list_id) in options(page)
        assert "Re-push all customers" not in page.text

        refused = await refused_by_page(client, "repush")
        assert refused.status_code == 409
        assert error_on(refused) == "Activate the Ecomail integration first."
    stored = await site.integration(site.anna)
    assert stored is not None
    assert not stored["active"]


# -- Ecomail failing -------------------------------------------------------------------------------


async def test_ecomail_answering_500_is_explained_and_nothing_is_stored(site: Site) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        site.emu.faults.fail_next(1, 500)
        refused = await refused_by_page(client, "key", api_key=ANNA_KEY)
        assert refused.status_code == 503
        message = error_on(refused)
        assert message.startswith("Ecomail cannot be reached right now (")
        assert "HTTP 500" in message
        assert message.endswith("); try again in a few minutes.")
        assert ANNA_KEY not in refused.text
        assert 'name="api_key"' in refused.text
        assert await site.integration(site.anna) is None

        site.server.stop()  # Ecomail is gone altogether
        unreachable = await refused_by_page(client, "key", api_key=ANNA_KEY)
        assert unreachable.status_code == 503
        assert error_on(unreachable).startswith("Ecomail cannot be reached right now (")
    assert await site.integration(site.anna) is None


async def test_a_request_ecomail_refuses_says_what_ecomail_said(site: Site) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        site.emu.faults.fail_next(1, 422)
        refused = await refused_by_page(client, "key", api_key=ANNA_KEY)
        assert refused.status_code == 502
        assert error_on(refused) == (
            "Ecomail refused the request (HTTP 422): Unprocessable Entity."
        )
    assert await site.integration(site.anna) is None


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (MarketingRejected("Bad things", status=400), "Ecomail refused the request: Bad things."),
        (MarketingUnavailable(""), "Ecomail cannot be reached right now (no answer);"),
        (MarketingRateLimited("slow down", retry_after=None), "try again in 60 seconds."),
        (MarketingRateLimited("slow down", retry_after=0.2), "try again in 1 second."),
        (IntegrationNotReady("Enter the Ecomail API key first."), "Enter the Ecomail API key"),
    ],
)
def test_every_error_message_says_what_to_do(error: Error, message: str) -> None:
    assert message in error_message(error, "en")


async def test_ecomail_rate_limiting_says_how_long_to_wait(site: Site) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        site.emu.faults.rate_limit_next(1, retry_after=30)
        refused = await refused_by_page(client, "key", api_key=ANNA_KEY)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert error_on(refused) == "Ecomail is rate-limiting requests; try again in 30 seconds."
    assert await site.integration(site.anna) is None


async def test_lists_that_cannot_be_fetched_are_explained_on_the_page(site: Site) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        site.emu.faults.fail_next(1, 503)
        page = await client.get(PAGE)
        assert page.status_code == 503
        assert error_on(page).startswith("Ecomail cannot be reached right now (")
        assert 'name="api_key"' in page.text  # the key can still be replaced
        assert options(await client.get(PAGE))  # and a reload fetches them again


async def test_failed_contacts_are_listed_with_the_reason_and_can_be_retried(site: Site) -> None:
    account, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        await followed(client, await post(client, "activate", list_id=str(list_id)))
        account.delete_list(list_id)  # someone deletes the list in Ecomail
        await site.sync()
        page = await client.get(PAGE)
        table = page.text[page.text.index('id="failed-contacts"') :]
        assert "ann@anna-customers.cz" in table
        assert "ben@anna-customers.cz" in table
        assert "The Ecomail list no longer exists" in html.unescape(table)
        assert re.search(r"<dt>Contacts failed</dt><dd>2</dd>", page.text)

        retried = await followed(client, await post(client, "retry"))
        assert flash_on(retried) == "2 failed contacts and deliveries will be sent again."
        assert 'id="failed-contacts"' not in retried.text
        assert re.search(r"<dt>Contacts waiting</dt><dd>2</dd>", retried.text)

        repushed = await followed(client, await post(client, "repush"))
        assert "pushed to Ecomail again" in flash_on(repushed)


# -- double emails ---------------------------------------------------------------------------------


async def test_the_double_email_warning_shows_while_system_emails_are_on_and_ecomail_active(
    site: Site,
) -> None:
    _, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        await set_system_emails(site, site.anna, on=True)
        assert "double-emails" not in (await client.get(PAGE)).text  # not active yet

        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        assert 'id="double-emails"' in page.text
        assert "Ellity sends its own emails" in page.text
        assert 'href="/integrations/ecomail"' in (await client.get("/settings")).text

        await set_system_emails(site, site.anna, on=False)
        assert "double-emails" not in (await client.get(PAGE)).text


async def test_the_settings_page_warns_about_double_emails_too(site: Site) -> None:
    _, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        await followed(client, await post(client, "activate", list_id=str(list_id)))
        await set_system_emails(site, site.anna, on=True)
        assert 'id="double-emails"' in (await client.get("/settings")).text


async def set_system_emails(site: Site, shop: Shop, *, on: bool) -> None:
    deps = site.deps
    view = await programme_settings.read_settings(shop.id, uow=deps.uow(read_only=True))
    changes = view.merchant.settings.as_strings()
    changes["send_system_emails"] = "true" if on else "false"
    await programme_settings.save_settings(
        shop.id,
        changes,
        programme_settings.SmtpChange(),
        uow=deps.uow(),
        secret_box=deps.secret_box,
        clock=deps.clock,
    )


# -- CSRF and tenants ------------------------------------------------------------------------------


async def test_forms_posted_without_their_csrf_token_are_refused(site: Site) -> None:
    _, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        for action in ACTIONS:
            refused = await client.post(
                f"{PAGE}/{action}", data={"api_key": ANNA_KEY, "list_id": str(list_id)}
            )
            assert refused.status_code == 403, action
            assert "This form has expired" in refused.text
    assert await site.integration(site.anna) is None
    assert site.emu.requests == []


async def test_a_merchant_never_sees_or_changes_another_merchants_integration(
    site: Site,
) -> None:
    account, list_id = ecomail_account(site, BOB_KEY)
    account.lists[list_id].name = "Bob's secret readers"
    async with logged_in(site, site.bob) as bob:
        await connected(site, bob, BOB_KEY)
        await followed(bob, await post(bob, "activate", list_id=str(list_id)))
    before = await site.integration(site.bob)
    assert before is not None
    assert before["active"]

    async with logged_in(site, site.anna) as anna:
        for action in ACTIONS:
            answer = await post(anna, action, list_id=str(list_id), api_key="", confirmed="yes")
            assert answer.status_code < 500, (action, answer.text)
        page = await anna.get(PAGE)
        for shown in (page.text, answer.text):
            assert "Bob's secret readers" not in html.unescape(shown)
            assert 'id="masked-key"' not in shown
            assert f"{BOB_KEY[-4:]}</code>" not in shown
        assert 'name="api_key"' in page.text  # Anna has no integration at all
    assert await site.integration(site.bob) == before
    assert await site.integration(site.anna) is None


# -- who Ellity adds to the list -------------------------------------------------------------------

NOT_A_CHOICE = (
    "Choose who Ellity adds to your Ecomail list: only customers who gave marketing consent,"
    " every customer except refusals, or nobody. Nothing was changed."
)


def text_of(page: httpx.Response, element_id: str) -> str:
    """The text of the element with this id (up to its first closing tag of the same kind),
    without tags and with its white space collapsed."""
    found = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', page.text, re.DOTALL)
    assert found, f"no #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).split())


def checked_choice(page: httpx.Response) -> list[str]:
    return re.findall(r'name="ecomail_add" value="(\w+)"\s+checked', page.text)


async def with_consents(site: Site, shop: Shop, consents: dict[str | None, str]) -> None:
    """New customers of the shop (email → consent), the consent set as staff set it."""
    deps = site.deps
    for n, (email, consent) in enumerate(consents.items()):
        result = await customers.upsert_customer(
            shop.id,
            customers.CustomerInput(email=email, shop_customer_id=f"consent-{n}"),
            uow=deps.uow(),
            clock=deps.clock,
            rng=deps.rng,
        )
        customer_id = result.view.customer.id
        assert customer_id is not None
        async with deps.uow() as uow:
            customer = await uow.customers.get(shop.id, customer_id, for_update=True)
            assert customer is not None
            customer.set_consent(
                MarketingConsent(consent), ConsentSource.STAFF, at=deps.clock.now()
            )
            await uow.customers.update(customer)
            await uow.commit()


async def ecomail_add_of(site: Site, shop: Shop) -> str:
    async with site.database.engine.connect() as conn:
        return str(
            (
                await conn.execute(
                    sa.text("SELECT ecomail_add FROM merchants WHERE id = :m"), {"m": shop.id}
                )
            ).scalar_one()
        )


async def backfill_requested(site: Site, shop: Shop) -> datetime:
    async with site.deps.uow(read_only=True) as uow:
        integration = await uow.ecomail.get(shop.id)
    assert integration is not None and integration.backfill is not None
    return integration.backfill.requested_at


async def test_the_choice_of_who_is_added_is_saved_shown_and_counted(site: Site) -> None:
    _, list_id = ecomail_account(site)
    # ann and ben (unknown consent) are there already
    await with_consents(
        site,
        site.anna,
        {
            "gina@anna-customers.cz": "granted",
            "hugo@anna-customers.cz": "granted",
            "ida@anna-customers.cz": "refused",
            "jan@anna-customers.cz": "unknown",
            None: "granted",  # no email: never synced, whatever the consent
        },
    )
    async with logged_in(site, site.anna) as client:
        assert 'id="adding"' not in (await client.get(PAGE)).text  # no key yet
        await connected(site, client)
        page = await client.get(PAGE)  # before activation, next to the list chooser
        assert "Who Ellity adds to your Ecomail list" in page.text
        assert page.text.index('id="adding"') < page.text.index(
            'action="/integrations/ecomail/activate"'
        )
        assert checked_choice(page) == ["consented"]
        assert text_of(page, "adding-counts") == (
            "2 customers will be added · 3 only updated if they are already in the list"
            " · 1 never added (refused; Ellity unsubscribes them) · 1 has no email (not synced)"
        )
        assert text_of(page, "adding-others") == (
            "With “Every customer except refusals”: 5 would be added, 0 only updated;"
            " With “Nobody”: 0 would be added, 5 only updated."
        )
        assert text_of(page, "unknown-consent") == (
            "3 customers have unknown consent (all customers from before consent was recorded"
            " start this way): Ellity does not add them; those already in the list keep their"
            " status and get their loyalty fields."
        )
        for explained in (
            "the person signed up through your Ecomail form",
            "whether it applies is yours to judge",
            "Ellity adds nobody; it only keeps the loyalty fields of people already in the list.",
        ):
            assert explained in html.unescape(text_of(page, "adding"))

        page = await followed(client, await post(client, "adding", ecomail_add="customers"))
        assert flash_on(page) == "Saved: Ellity adds every customer except refusals to the list."
        assert checked_choice(page) == ["customers"]
        assert text_of(page, "adding-counts").startswith("5 customers will be added · 0 only")
        assert text_of(page, "adding-others") == (
            "With “Customers who gave marketing consent”: 2 would be added, 3 only updated;"
            " With “Nobody”: 0 would be added, 5 only updated."
        )
        assert 'id="unknown-consent"' not in page.text
        assert await ecomail_add_of(site, site.anna) == "customers"

        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        assert checked_choice(page) == ["customers"]  # and on the active page
        assert text_of(page, "adding-counts").startswith("5 customers will be added")
        site.clock.advance(hours=1)
        page = await followed(client, await post(client, "adding", ecomail_add="none"))
        assert flash_on(page) == "Saved: Ellity adds nobody to the list."
        assert text_of(page, "adding-counts").startswith("0 customers will be added · 5 only")
        assert await backfill_requested(site, site.anna) < site.clock.now()  # narrower: none

        page = await followed(client, await post(client, "adding", ecomail_add="consented"))
        assert flash_on(page) == (
            "Saved: Ellity adds customers who gave marketing consent to the list. Every contact"
            " is written again, so the customers this choice allows are added now (the progress"
            " is below)."
        )
        assert checked_choice(page) == ["consented"]
        assert "3 customers have unknown consent" in text_of(page, "unknown-consent")
    assert await backfill_requested(site, site.anna) == site.clock.now()  # wider: a backfill


@pytest.mark.parametrize("value", ["everyone", "", "none; drop table"])
async def test_a_choice_of_who_is_added_that_is_not_offered_is_refused_clearly(
    site: Site, value: str
) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        refused = await refused_by_page(client, "adding", ecomail_add=value)
        assert refused.status_code == 400
        assert error_on(refused) == NOT_A_CHOICE
        assert refused.text.index('class="error"') > refused.text.index('id="adding"')
        assert checked_choice(refused) == ["consented"]
    assert await ecomail_add_of(site, site.anna) == "consented"


async def test_a_merchant_chooses_who_is_added_only_for_their_own_list(site: Site) -> None:
    ecomail_account(site, BOB_KEY)
    async with logged_in(site, site.bob) as bob:
        await connected(site, bob, BOB_KEY)
        page = await followed(bob, await post(bob, "adding", ecomail_add="none"))
        assert checked_choice(page) == ["none"]
        # Bob's one customer has no email; Anna's two customers are not counted for him
        assert text_of(page, "adding-counts") == (
            "0 customers will be added · 0 only updated if they are already in the list"
            " · 0 never added (refused; Ellity unsubscribes them) · 1 has no email (not synced)"
        )
    assert await ecomail_add_of(site, site.anna) == "consented"
    assert await ecomail_add_of(site, site.bob) == "none"


# -- the newsletter webhook ----------------------------------------------------------------------

WEBHOOK_URL = re.compile(r'<code id="webhook-url">([^<]+)</code>')


def notification(email: str, status: str, list_id: int) -> dict[str, Any]:
    return {"payload": {"email": email, "status": status, "listId": list_id, "campaignId": None}}


async def test_the_page_shows_the_webhook_url_and_what_each_notification_did(
    site: Site,
) -> None:
    _, list_id = ecomail_account(site)
    # every customer is added to the list, whatever their consent: Ann is, by Ellity
    await set_ecomail_add(site.deps.uow, site.anna.id, EcomailAdd.CUSTOMERS)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        found = WEBHOOK_URL.search(page.text)
        assert found, page.text
        url = found.group(1)
        assert url.startswith(f"{BASE_URL}/webhooks/ecomail/")
        assert 'data-copy="webhook-url"' in page.text
        assert "Webhook address" in page.text and "Loyal customers" in page.text
        assert "No notification has arrived yet." in page.text
        assert "<strong>none</strong> (0 points)" in page.text
        assert WEBHOOK_URL.search((await client.get(PAGE)).text).group(1) == url

        path = url.removeprefix(BASE_URL)
        for email in ("ann@anna-customers.cz", "stranger@example.cz"):
            answer = await client.post(path, json=notification(email, "SUBSCRIBED", list_id))
            assert answer.status_code == 200, answer.text  # no CSRF token, no session needed
        await client.post(path, json=notification("ben@anna-customers.cz", "SUBSCRIBED", 999))
        await site.sync()
        page = await client.get(PAGE)
        rows = re.findall(
            r"<tr><td>[^<]+</td>\s*<td>(?:<a [^>]+>)?([^<]+)(?:</a>)?</td>\s*<td>(\w+)</td>"
            r"\s*<td>(\d+)</td>\s*<td>([^<]+)</td>\s*<td>([^<]*)</td></tr>",
            page.text,
        )
        assert [(email, result) for email, _, _, result, _ in rows] == [
            ("ben@anna-customers.cz", "ignored"),
            ("stranger@example.cz", "unconfirmed"),  # no customer, and not in the list
            ("ann@anna-customers.cz", "ignored"),
        ]
        reasons = [html.unescape(reason) for *_, reason in rows]
        assert "another list" in reasons[0]
        assert reasons[1] == "Ecomail has no such contact in the list: nothing changed."
        assert "Ellity's own add of this contact" in reasons[2], reasons[2]
        assert '<a href="/customers/' in page.text  # a known customer links to their page


async def test_a_new_webhook_url_replaces_the_old_one_at_once(site: Site) -> None:
    _, list_id = ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        old = WEBHOOK_URL.search(page.text).group(1)
        page = await followed(client, await post(client, "webhook/rotate", confirmed="yes"))
        assert flash_on(page).startswith("There is a new webhook URL")
        new = WEBHOOK_URL.search(page.text).group(1)
        assert new != old
        body = notification("ann@anna-customers.cz", "SUBSCRIBED", list_id)
        assert (await client.post(old.removeprefix(BASE_URL), json=body)).status_code == 404
        assert (await client.post(new.removeprefix(BASE_URL), json=body)).status_code == 200


async def test_an_inactive_integration_shows_no_webhook_and_cannot_rotate_it(site: Site) -> None:
    ecomail_account(site)
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        page = await client.get(PAGE)
        assert "webhook-url" not in page.text
        refused = await refused_by_page(client, "webhook/rotate", confirmed="yes")
        assert refused.status_code == 409
        assert "Activate the Ecomail integration first" in error_on(refused)


# -- the Ecomail fields panel ----------------------------------------------------------------


def field_values(page: httpx.Response) -> dict[str, str]:
    """The fields table's value column: field name → the value shown ("" when empty)."""
    found = re.findall(
        r'<tr id="field-(\w+)">(?:(?!</tr>).)*?<td class="value"[^>]*>(.*?)</td></tr>',
        page.text,
        re.DOTALL,
    )
    return {
        name: "" if 'class="hint"' in cell else html.unescape(re.sub(r"<[^>]+>", "", cell))
        for name, cell in found
    }


async def customer_id_of(site: Site, shop: Shop, email: str | None) -> int:
    async with site.database.engine.connect() as conn:
        found = await conn.execute(
            sa.text(
                "SELECT id FROM customers WHERE merchant_id = :m"
                " AND (email = :e OR (:e IS NULL AND email IS NULL)) ORDER BY id"
            ),
            {"m": shop.id, "e": email},
        )
        return int(found.scalars().first())


async def test_the_fields_panel_shows_a_chosen_customers_values_as_the_sync_writes_them(
    site: Site,
) -> None:
    ann = await customer_id_of(site, site.anna, "ann@anna-customers.cz")
    await points.earn_points(
        site.anna.id,
        CustomerId(ann),
        Points.parse("1250.50"),
        order_ref="fields-1",
        uow=site.deps.uow(),
        clock=site.clock,
    )
    async with logged_in(site, site.anna) as client:
        page = await client.get(PAGE)  # not connected yet: the panel is there all the same
        assert 'id="fields-panel"' in page.text
        assert "Enter a customer's email or id above to see their values." in page.text
        assert field_values(page) == {}
        assert re.findall(r'<tr id="field-(\w+)">', page.text) == list(FIELD_NAMES)
        for label in ("credit", "expiry", "pin"):
            assert f'<tr id="event-{label}">' in page.text

        by_email = await client.get(PAGE, params={"customer": " ANN@anna-customers.cz "})
        assert by_email.status_code == 200
        [snapshot] = await contact_snapshots(
            site.anna.id, [CustomerId(ann)], uow=site.deps.uow(read_only=True), clock=site.clock
        )
        expected = {name: str(value) for name, value in snapshot.fields.items()}
        assert field_values(by_email) == expected
        assert expected["ellity_credit"] == "1 250,50"  # the merchant's locale is cs
        assert expected["ellity_credit_num"] == "1250"
        assert expected["ellity_registered"] == "anonymous"
        assert text_of(by_email, "fields-customer").startswith(
            f"Values of ann@anna-customers.cz · customer {ann}"
        )
        credit = text_of(by_email, "event-credit")
        assert '"change":"1250.50","balance":"1250.50","reason":"earn"' in credit
        expiry = f'"expiration_date":"{expected["ellity_next_expiration_date"]}"'
        assert expiry in text_of(by_email, "event-expiry")
        assert "keys: reason, at" in text_of(by_email, "event-pin")

        by_id = await client.get(PAGE, params={"customer": str(ann)})
        assert field_values(by_id) == expected

        # another merchant's customers are not found, by id or by email
        await customers.upsert_customer(
            site.bob.id,
            customers.CustomerInput(email="carl@bob-customers.cz", shop_customer_id="bob-carl"),
            uow=site.deps.uow(),
            clock=site.clock,
            rng=site.deps.rng,
        )
        bobs = await customer_id_of(site, site.bob, None)
        for asked in (str(bobs), "carl@bob-customers.cz", "nobody@anna-customers.cz", "x y"):
            other = await client.get(PAGE, params={"customer": asked})
            assert other.status_code == 200
            assert field_values(other) == {}
            assert text_of(other, "fields-not-found") == (
                f"No customer with the email or id “{asked}”."
            )
            assert 'id="fields-customer"' not in other.text
            assert f'href="/customers/{bobs}"' not in other.text


def activity(page: httpx.Response) -> dict[str, tuple[str, str]]:
    """The activity log's rows: email → (Result, Why), as the page shows them."""
    found = re.search(
        r'<table class="list" id="newsletter-activity">(.*?)</table>', page.text, re.S
    )
    assert found, page.text
    rows: dict[str, tuple[str, str]] = {}
    for row in re.findall(r"<tr><td>(.*?)</tr>", found.group(1), re.S):
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", "", cell)).split())
            for cell in re.split(r"</td>\s*<td>", row.removesuffix("</td>"))
        ]
        rows[cells[1]] = (cells[4], cells[5])
    return rows


async def set_newsletter_reward(site: Site, shop: Shop, reward: Points) -> None:
    async with site.deps.uow() as uow:
        merchant = await load_merchant(uow, shop.id)
        settings = dataclasses.replace(merchant.settings, newsletter_reward=reward)
        await uow.merchants.update_settings(shop.id, settings)
        await uow.commit()


@pytest.mark.parametrize(
    ("language", "paid", "ecomail_has_none", "another_list"),
    [
        (
            "cs",
            (
                "vyplaceno 12,50",
                "Zákazník se přihlásil sám (Ellity se ho do seznamu nikdy nepokusilo přidat)"
                " – vyplaceno bodů: 12,50. Souhlas zaznamenán jako udělený.",
            ),
            ("nepotvrzeno", "Ecomail tento kontakt v seznamu nemá: nic se nezměnilo."),
            "Oznámení se týká jiného seznamu (id 999); propojení používá seznam {list_id}.",
        ),
        (
            "en",
            (
                "paid 12.50",
                "The customer's own subscription (Ellity never tried to add this contact):"
                " paid 12.50 points. Consent recorded as granted.",
            ),
            ("unconfirmed", "Ecomail has no such contact in the list: nothing changed."),
            "The notification is about another list (id 999); the integration uses the list"
            " {list_id}.",
        ),
    ],
)
async def test_the_activity_log_says_what_each_notification_did_in_the_pages_language(
    site: Site,
    language: str,
    paid: tuple[str, str],
    ecomail_has_none: tuple[str, str],
    another_list: str,
) -> None:
    """Result and Why in the staff user's language, points in its number format; the English
    page reads as the English text that is stored."""
    account, list_id = ecomail_account(site)
    await set_ecomail_add(site.deps.uow, site.anna.id, EcomailAdd.NONE)  # Ellity adds nobody
    await set_newsletter_reward(site, site.anna, Points.parse("12.5"))
    async with logged_in(site, site.anna, language) as client:
        await connected(site, client)
        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        path = WEBHOOK_URL.search(page.text).group(1).removeprefix(BASE_URL)
        account.lists[list_id].add_member("ann@anna-customers.cz")  # her own sign-up
        for email, target in [
            ("ann@anna-customers.cz", list_id),
            ("stranger@example.cz", list_id),
            ("ben@anna-customers.cz", 999),
        ]:
            body = notification(email, "SUBSCRIBED", target)
            assert (await client.post(path, json=body)).status_code == 200
        await site.sync()
        rows = activity(await client.get(PAGE))
    assert rows["ann@anna-customers.cz"] == paid
    assert rows["stranger@example.cz"] == ecomail_has_none
    assert rows["ben@anna-customers.cz"][1] == another_list.format(list_id=list_id)
    if language == "en":  # the English page shows what is stored for logs and the CLI
        async with site.database.engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.text(
                        "SELECT email, reason FROM newsletter_notifications WHERE merchant_id = :m"
                    ),
                    {"m": site.anna.id},
                )
            ).all()
        assert {email: reason for email, reason in stored} == {
            email: why for email, (_, why) in rows.items()
        }


# -- each customer's sync state, the events sent -------------------------------------------------


@pytest.mark.parametrize(
    ("language", "texts"),
    [
        (
            "en",
            {
                "ann": "In the list. Ellity writes the loyalty fields to the contact.",
                "ann_status": "subscribed (as last seen, on ",
                "sent": "sent",
                "ben": "Not in the list. The customer has not given marketing consent; your"
                " setting says Ellity adds only customers who gave it.",
                "ben_status": "not seen yet",
                "nothing_waiting": "nothing waiting",
                "no_events": "No event has been sent for this customer yet.",
                "title": "Last events sent",
                "off": "Ecomail is not connected: nothing is sent for this customer. Connect it.",
            },
        ),
        (
            "cs",
            {
                "ann": "V seznamu. Ellity do kontaktu zapisuje věrnostní pole.",
                "ann_status": "přihlášení (jak jej Ellity naposledy viděla, ",
                "sent": "odeslána",
                "ben": "Není v seznamu. Zákazník nedal marketingový souhlas; podle vašeho"
                " nastavení Ellity přidává jen zákazníky, kteří ho dali.",
                "ben_status": "zatím nezjištěn",
                "nothing_waiting": "nic nečeká",
                "no_events": "Za tohoto zákazníka zatím nebyla odeslána žádná událost.",
                "title": "Naposledy odeslané události",
                "off": "Ecomail není připojený: za tohoto zákazníka se nic neposílá. Připojit.",
            },
        ),
    ],
)
async def test_the_customer_page_tells_the_contacts_sync_state_and_latest_events(
    site: Site, language: str, texts: dict[str, str]
) -> None:
    """Ann signed up on the list's form (Ecomail confirmed her subscription) and earned
    points; Ben gave no consent, so Ellity does not add him; Bob's shop has no Ecomail."""
    account, list_id = ecomail_account(site)
    ann = await customer_id_of(site, site.anna, "ann@anna-customers.cz")
    ben = await customer_id_of(site, site.anna, "ben@anna-customers.cz")
    async with logged_in(site, site.anna, language) as client:
        await connected(site, client)
        page = await followed(client, await post(client, "activate", list_id=str(list_id)))
        path = WEBHOOK_URL.search(page.text).group(1).removeprefix(BASE_URL)
        account.lists[list_id].add_member("ann@anna-customers.cz")  # her own sign-up
        body = notification("ann@anna-customers.cz", "SUBSCRIBED", list_id)
        assert (await client.post(path, json=body)).status_code == 200
        await site.sync()
        await points.earn_points(
            site.anna.id,
            CustomerId(ann),
            Points.parse("12.50"),
            order_ref="state-1",
            uow=site.deps.uow(),
            clock=site.clock,
        )
        await site.sync()

        anns = await client.get(f"/customers/{ann}")
        assert text_of(anns, "ecomail-state") == texts["ann"]
        assert text_of(anns, "ecomail-status").startswith(texts["ann_status"])
        assert text_of(anns, "ecomail-pending") == texts["nothing_waiting"]
        assert text_of(anns, "ecomail-synced") not in ("never", "nikdy")
        events = text_of(anns, "ecomail-events")
        assert '"change":"12.50"' in events and '"order_ref":"state-1"' in events
        assert f"credit {texts['sent']}" in events

        bens = await client.get(f"/customers/{ben}")
        assert text_of(bens, "ecomail-state") == texts["ben"]
        assert text_of(bens, "ecomail-status") == texts["ben_status"]
        assert texts["no_events"] in bens.text
        assert 'id="ecomail-events"' not in bens.text

        integration = await client.get(PAGE)
        assert text_of(integration, "sent-events-title") == texts["title"]
        sent = text_of(integration, "sent-events")
        assert "ann@anna-customers.cz credit" in sent and '"order_ref":"state-1"' in sent
        assert f'<a href="/customers/{ann}">ann@anna-customers.cz</a>' in integration.text
        assert "ben@anna-customers.cz" not in sent

    bobs = await customer_id_of(site, site.bob, None)
    async with logged_in(site, site.bob, language) as client:
        page = await client.get(f"/customers/{bobs}")
        assert text_of(page, "ecomail-off") == texts["off"]
        assert 'id="ecomail-state"' not in page.text
        integration = await client.get(PAGE)
        assert 'id="sent-events' not in integration.text  # nothing of Anna's, nothing at all


async def test_the_customer_page_shows_the_status_a_reconciliation_run_saw(site: Site) -> None:
    """Ben's address bounced in Ecomail without a webhook: the run sees it, and his page says
    so; Ann is seen subscribed."""
    _, list_id = ecomail_account(site)
    await set_ecomail_add(site.deps.uow, site.anna.id, EcomailAdd.CUSTOMERS)
    ann = await customer_id_of(site, site.anna, "ann@anna-customers.cz")
    ben = await customer_id_of(site, site.anna, "ben@anna-customers.cz")
    async with logged_in(site, site.anna) as client:
        await connected(site, client)
        await followed(client, await post(client, "activate", list_id=str(list_id)))
        await site.sync()
        assert text_of(await client.get(f"/customers/{ben}"), "ecomail-status") == "not seen yet"
        site.emu.set_status(list_id, "ben@anna-customers.cz", 4)  # a hard bounce
        assert (await post(client, "reconcile")).status_code == 303  # "Reconcile now"
        assert await run_reconciliation({"deps": site.deps, "worker_token": "w"}, site.anna.id)
        await site.sync()

        anns = await client.get(f"/customers/{ann}")
        assert text_of(anns, "ecomail-state") == (
            "In the list. Ellity writes the loyalty fields to the contact."
        )
        assert text_of(anns, "ecomail-status").startswith("subscribed (as last seen, on ")
        bens = await client.get(f"/customers/{ben}")
        assert text_of(bens, "ecomail-state") == (
            "In the list, not subscribed. Ecomail last reported the contact as hard-bounced:"
            " it gets no newsletters, and Ellity never subscribes it again; the loyalty fields"
            " are still written."
        )
        assert text_of(bens, "ecomail-status").startswith("hard-bounced (as last seen, on ")
