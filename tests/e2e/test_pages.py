"""The merchant's web pages over HTTP: the whole app on SQLite and on PostgreSQL.

A client that sends ``Accept: text/html`` plays the browser: it keeps cookies, reads the CSRF
token from the forms it is shown and posts them back.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import html
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar

from ellity.adapters.sql.database import Database
from ellity.deps import Deps
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import Notification, SubscriptionChange
from ellity.domain.services import api_tokens, customers, merchants, nightly, points
from ellity.ports.storage import TransientConflict
from ellity.web.app import create_app
from ellity.web.auth import safe_next
from ellity.worker import deliver_once
from tests.asgi import asgi_transport
from tests.e2e.conftest import BASE_URL, deps_on, running
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.fakes import FakeClock
from tests.smtp_server import SmtpServer

PASSWORD = "a long password"
#: Most tests read the pages in English: the browser prefers it (the log-in page) and
#: ``logged_in`` switches the staff user to it (a Czech merchant's pages start in Czech).
HTML = {"accept": "text/html", "accept-language": "en"}
TOKEN_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')
SESSION = "ellity_session"


@dataclass(frozen=True)
class Shop:
    """A merchant with one customer who holds points, and an API token."""

    id: MerchantId
    admin: str
    name: str
    customer_id: CustomerId
    customer_email: str
    customer_last_name: str
    referral_code: str
    token_id: int
    token_name: str

    @property
    def markers(self) -> list[str]:
        """Text that only this merchant's pages may show."""
        return [
            self.name,
            self.admin,
            self.customer_email,
            self.customer_last_name,
            self.referral_code,
            self.token_name,
        ]


@dataclass
class Site:
    app: Litestar
    deps: Deps
    database: Database
    clock: FakeClock
    anna: Shop | None = None
    bob: Shop | None = None

    def browser(
        self, base_url: str = BASE_URL, *, address: str = "127.0.0.1", language: str = "en"
    ) -> httpx.AsyncClient:
        """A browser on the client ``address`` preferring ``language`` ("": none)."""
        headers = {**HTML, "accept-language": language} if language else {"accept": "text/html"}
        return httpx.AsyncClient(
            transport=asgi_transport(self.app, client=(address, 123)),
            base_url=base_url,
            headers=headers,
        )

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.database.engine.connect() as conn:
            return (await conn.execute(sa.text(sql), params)).scalar()

    async def rows_of(self, shop: Shop) -> dict[str, list[Any]]:
        """Everything stored for the merchant, to compare before and after."""
        found: dict[str, list[Any]] = {}
        async with self.database.engine.connect() as conn:
            for table in ("customers", "ledger_entries", "point_lots", "api_tokens", "staff_users"):
                # a staff user's page language is theirs to switch (``logged_in`` does)
                columns = "id, email, password_hash" if table == "staff_users" else "*"
                result = await conn.execute(
                    sa.text(f"SELECT {columns} FROM {table} WHERE merchant_id = :m ORDER BY id"),
                    {"m": shop.id},
                )
                found[table] = [tuple(row) for row in result]
            merchant = await conn.execute(
                sa.text("SELECT * FROM merchants WHERE id = :m"), {"m": shop.id}
            )
            found["merchants"] = [tuple(row) for row in merchant]
        return found

    async def balance(self, shop: Shop) -> int:
        cents = await self.scalar(
            "SELECT balance_cents FROM customers WHERE id = :c", c=shop.customer_id
        )
        return int(cents)


async def new_shop(
    deps: Deps, slug: str, name: str, customer: tuple[str, str, str], points_earned: str
) -> Shop:
    admin = f"admin@{slug}.example.cz"
    merchant = await merchants.create_merchant(
        slug=slug,
        settings=MerchantSettings(name=name, shop_url=f"https://{slug}.example.cz"),
        admin_email=admin,
        admin_password=PASSWORD,
        uow=deps.uow(),
        clock=deps.clock,
        hasher=deps.hasher,
    )
    assert merchant.id is not None
    email, first, last = customer
    created = await customers.upsert_customer(
        merchant.id,
        customers.CustomerInput(email=email, first_name=first, last_name=last),
        uow=deps.uow(),
        clock=deps.clock,
        rng=deps.rng,
    )
    view = created.view
    assert view.customer.id is not None
    await points.earn_points(
        merchant.id,
        view.customer.id,
        Points.parse(points_earned),
        order_ref=f"{slug}-order-1",
        uow=deps.uow(),
        clock=deps.clock,
    )
    token, _ = await api_tokens.create_api_token(
        merchant.id, f"{slug}-eshop-token", uow=deps.uow(), clock=deps.clock, rng=deps.rng
    )
    return Shop(
        id=merchant.id,
        admin=admin,
        name=name,
        customer_id=view.customer.id,
        customer_email=email,
        customer_last_name=last,
        referral_code=view.customer.referral_code,
        token_id=token.id,
        token_name=token.name,
    )


@asynccontextmanager
async def site_on(
    database: Database, var_dir: Path, *, base_url: str = BASE_URL, ecomail_api_url: str = ""
) -> AsyncIterator[Site]:
    clock = FakeClock()  # 2024-03-10 09:00 UTC
    holder: list[Deps] = []

    @asynccontextmanager
    async def provide_deps() -> AsyncIterator[Deps]:
        async with deps_on(database, var_dir, clock, ecomail_api_url=ecomail_api_url) as deps:
            settings = dataclasses.replace(deps.settings, base_url=base_url)
            holder.append(dataclasses.replace(deps, settings=settings))
            yield holder[0]

    app = create_app(provide_deps, debug=True)
    async with running(app):
        yield Site(app=app, deps=holder[0], database=database, clock=clock)


@pytest.fixture
async def empty_site(sql_database: Database, tmp_path: Path) -> AsyncIterator[Site]:
    """The app on an empty database: SQLite, then PostgreSQL."""
    async with site_on(sql_database, tmp_path) as site:
        yield site


@pytest.fixture
async def site(empty_site: Site) -> Site:
    """Two merchants: Anna's café and Bob's bookshop, each with a customer and a token."""
    deps = empty_site.deps
    empty_site.anna = await new_shop(
        deps, "anna", "Cafe Anna", ("ann@anna-customers.cz", "Ann", "Annesley"), "100"
    )
    empty_site.bob = await new_shop(
        deps, "bob", "Bookshop Bob", ("bella@bob-customers.com", "Bella", "Bobova"), "70"
    )
    return empty_site


def shops(site: Site) -> tuple[Shop, Shop]:
    assert site.anna is not None
    assert site.bob is not None
    return site.anna, site.bob


async def form_token(client: httpx.AsyncClient, path: str = "/login") -> str:
    page = await client.get(path)
    found = TOKEN_INPUT.search(page.text)
    assert found, f"no form on {path}: {page.status_code}"
    return html.unescape(found.group(1))


async def log_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    token = await form_token(client)
    return await client.post(
        "/login", data={"_csrf_token": token, "email": email, "password": password, "next": "/"}
    )


async def page_after(client: httpx.AsyncClient, answer: httpx.Response) -> httpx.Response:
    """Where the browser lands after a refused form: back at the address of the form's page,
    which says why and keeps what was typed."""
    assert answer.status_code == 303, (answer.status_code, answer.text)
    return await client.get(answer.headers["location"])


@asynccontextmanager
async def logged_in(site: Site, shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with site.browser() as client:
        answer = await log_in(client, shop.admin)
        assert answer.status_code == 303, answer.text
        await choose_language(client, "en")
        yield client


async def choose_language(client: httpx.AsyncClient, language: str) -> None:
    """The language switch in the navigation."""
    token = await form_token(client, "/")
    answer = await client.post(
        "/language", data={"_csrf_token": token, "language": language, "next": "/"}
    )
    assert answer.status_code == 303, answer.text


def listed(page: httpx.Response) -> list[int]:
    """The customers a list page links to, in order."""
    return [int(n) for n in re.findall(r'href="/customers/(\d+)"', page.text)]


def plant(client: httpx.AsyncClient, session_id: str) -> None:
    """Set the session cookie as the site itself would (same host and path)."""
    client.cookies.set(SESSION, session_id, domain="testserver.local", path="/")


def error_on(page: httpx.Response) -> str:
    found = re.search(r'class="error" role="alert">([^<]+)<', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


# -- CSRF, sessions, log-in ------------------------------------------------------------------


async def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    site: Site,
) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client, site.browser() as stranger:
        foreign_token = await form_token(stranger)  # well signed, but not this browser's
        earn = f"/customers/{anna.customer_id}/earn"
        form = {"points": "5", "order_ref": "csrf-1"}
        for token in ({}, {"_csrf_token": "forged"}, {"_csrf_token": foreign_token}):
            refused = await client.post(earn, data={**form, **token})
            assert refused.status_code == 403
            assert "This form has expired" in refused.text
        assert await site.balance(anna) == 100_00

        anonymous = await stranger.post("/login", data={"email": anna.admin, "password": PASSWORD})
        assert anonymous.status_code == 403

        accepted = await client.post(
            earn, data={**form, "_csrf_token": await form_token(client, earn[:-5])}
        )
        assert accepted.status_code == 303
        assert await site.balance(anna) == 105_00


async def test_a_session_id_set_by_the_client_before_login_is_not_the_one_used_after(
    site: Site,
) -> None:
    anna, _ = shops(site)
    planted = "f" * 64
    async with site.browser() as victim, site.browser() as attacker:
        plant(victim, planted)
        answer = await log_in(victim, anna.admin)
        assert answer.status_code == 303
        issued = victim.cookies[SESSION]
        assert issued != planted
        assert (await victim.get("/")).status_code == 200

        plant(attacker, planted)
        assert (await attacker.get("/customers")).headers["location"].startswith("/login")

        # An id that was valid before logging in is replaced too, and stops working.
        again = await log_in(victim, anna.admin)
        assert again.status_code == 303
        assert victim.cookies[SESSION] not in (issued, planted)
        plant(attacker, issued)
        assert (await attacker.get("/customers")).headers["location"].startswith("/login")
        assert (await victim.get("/customers")).status_code == 200


async def test_the_eleventh_rapid_failed_login_is_throttled_with_a_clear_page(
    site: Site,
) -> None:
    anna, _ = shops(site)
    async with site.browser() as client:
        for _ in range(10):
            failed = await log_in(client, anna.admin, "not the password")
            assert failed.status_code == 400
            assert error_on(failed) == "The email or the password is wrong."
        throttled = await log_in(client, anna.admin)  # even the right password now
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) == 15 * 60
        assert "Too many failed log-ins" in error_on(throttled)
        assert SESSION not in client.cookies
        assert await site.scalar("SELECT count(*) FROM web_sessions") == 0

        site.clock.advance(minutes=15)
        assert (await log_in(client, anna.admin)).status_code == 303


async def test_failed_logins_from_one_client_are_throttled_whichever_email_they_try(
    site: Site,
) -> None:
    _, bob = shops(site)
    async with site.browser() as client:
        for n in range(10):
            assert (await log_in(client, f"guess{n}@anna.example.cz")).status_code == 400
        assert (await log_in(client, bob.admin)).status_code == 429


async def test_wrong_passwords_for_the_owners_email_from_another_address_never_lock_the_owner_out(
    site: Site,
) -> None:
    anna, bob = shops(site)
    async with (
        site.browser(address="203.0.113.7") as attacker,
        site.browser(address="198.51.100.20") as owner,
    ):
        for _ in range(10):
            assert (await log_in(attacker, anna.admin, "not the password")).status_code == 400
        assert (await log_in(attacker, anna.admin)).status_code == 429  # this address, this email
        assert (await log_in(attacker, bob.admin)).status_code == 429  # and any other email
        answer = await log_in(owner, anna.admin)
        assert answer.status_code == 303
        assert (await owner.get("/")).status_code == 200


async def test_logging_out_ends_the_session_for_good(site: Site) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client, site.browser() as replay:
        session_id = client.cookies[SESSION]
        assert (await client.get("/")).status_code == 200
        out = await client.post("/logout", data={"_csrf_token": await form_token(client, "/")})
        assert out.status_code == 303
        assert out.headers["location"] == "/login"
        assert SESSION not in client.cookies
        back = await client.get("/customers?q=ann")
        assert back.status_code == 303
        assert back.headers["location"] == "/login?next=%2Fcustomers%3Fq%3Dann"

        plant(replay, session_id)
        assert (await replay.get("/")).headers["location"] == "/login"
        assert await site.scalar("SELECT count(*) FROM web_sessions") == 0


async def test_pages_send_security_headers_and_cookies_are_httponly_and_samesite(
    site: Site,
) -> None:
    anna, _ = shops(site)
    async with site.browser() as client:
        page = await client.get("/login")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        csrf_cookie = page.headers["set-cookie"].lower()
        assert "httponly" in csrf_cookie
        assert "samesite=lax" in csrf_cookie
        assert "secure" not in csrf_cookie
        answer = await log_in(client, anna.admin)
        session_cookie = answer.headers["set-cookie"].lower()
        assert session_cookie.startswith(SESSION)
        assert "httponly" in session_cookie
        assert "samesite=lax" in session_cookie
        assert "secure" not in session_cookie


async def test_cookies_are_secure_when_the_site_is_served_over_https(
    sql_database: Database, tmp_path: Path
) -> None:
    async with site_on(sql_database, tmp_path, base_url="https://loyalty.example.cz") as https:
        await new_shop(https.deps, "anna", "Cafe Anna", ("a@x.cz", "A", "B"), "1")
        async with https.browser("https://testserver.local") as client:
            page = await client.get("/login")
            assert "secure" in page.headers["set-cookie"].lower()
            assert page.headers["strict-transport-security"].startswith("max-age=")
            answer = await log_in(client, "admin@anna.example.cz")
            assert "secure" in answer.headers["set-cookie"].lower()


# -- the pages' language -------------------------------------------------------------------------


def page_language(page: httpx.Response) -> str:
    found = re.search(r'<html lang="([a-z]+)">', page.text)
    assert found, page.text
    return found.group(1)


@pytest.mark.parametrize(
    ("accept_language", "language", "button"),
    [
        ("", "cs", "Přihlásit se"),
        ("cs-CZ,cs;q=0.9,en;q=0.8", "cs", "Přihlásit se"),
        ("en-GB,en;q=0.9", "en", "Log in"),
        ("de-DE,de;q=0.9,en;q=0.5,cs;q=0.3", "en", "Log in"),
        ("fr", "cs", "Přihlásit se"),
    ],
)
async def test_before_a_log_in_the_pages_speak_the_browsers_language_or_czech(
    site: Site, accept_language: str, language: str, button: str
) -> None:
    async with site.browser(language=accept_language) as client:
        page = await client.get("/login")
    assert page_language(page) == language
    assert f'<button type="submit">{button}</button>' in page.text


async def test_a_czech_merchants_staff_see_czech_pages_until_they_switch_to_english(
    site: Site,
) -> None:
    anna, _ = shops(site)
    async with site.browser(language="en") as client:  # the browser's wish ends at log-in
        assert (await log_in(client, anna.admin)).status_code == 303
        board = await client.get("/")
        assert page_language(board) == "cs"
        assert ">Zákazníci</a>" in board.text
        assert ">Přehled</h1>" in board.text
        listed_cs = await client.get("/customers")
        assert '<th scope="col">Jméno</th>' in listed_cs.text

        token = await form_token(client, "/customers")
        switched = await client.post(
            "/language", data={"_csrf_token": token, "language": "en", "next": "/customers?q=ann"}
        )
        assert switched.status_code == 303
        assert switched.headers["location"] == "/customers?q=ann"
        listed = await client.get(switched.headers["location"])
        assert page_language(listed) == "en"
        assert ">Customers</h1>" in listed.text
        assert 'value="cs"' in listed.text  # the switch now offers Czech
    async with site.browser(language="cs") as again:  # remembered for the user
        assert (await log_in(again, anna.admin)).status_code == 303
        assert page_language(await again.get("/")) == "en"


async def test_czech_pages_say_what_was_refused_in_czech_with_czech_numbers(
    site: Site,
) -> None:
    anna, _ = shops(site)
    async with site.browser(language="") as client:
        assert (await log_in(client, anna.admin)).status_code == 303  # Anna's pages: Czech
        page = f"/customers/{anna.customer_id}"
        token = await form_token(client, page)
        refused = await page_after(
            client,
            await client.post(f"{page}/spend", data={"_csrf_token": token, "points": "99999"}),
        )
        assert refused.status_code == 409
        assert error_on(refused) == "Zákazník má 100 bodů; 99\u00a0999 bodů nelze odebrat."
        unreadable = await client.get("/customers?after=abc")
        assert unreadable.status_code == 400
        assert "Parametr after (query) musí být celé číslo nebo null, ne text." in unreadable.text
        asked = await client.post(f"{page}/pin", data={"_csrf_token": token})
        assert asked.status_code == 200
        assert "<h1>Opravdu?</h1>" in asked.text
        assert "Vydat zákazníkovi nový PIN? Starý PIN hned přestane platit." in asked.text


async def test_the_language_switch_refuses_other_languages_and_other_sites(site: Site) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client:
        token = await form_token(client, "/")
        refused = await client.post("/language", data={"_csrf_token": token, "language": "de"})
        assert refused.status_code == 400
        assert page_language(await client.get("/")) == "en"
        away = await client.post(
            "/language",
            data={"_csrf_token": token, "language": "cs", "next": "//elsewhere.example"},
        )
        assert away.headers["location"] == "/"
        assert page_language(await client.get("/")) == "cs"


# -- first run ----------------------------------------------------------------------------------


async def test_the_first_run_page_creates_the_first_merchant_and_then_is_gone(
    empty_site: Site,
) -> None:
    site = empty_site
    async with site.browser() as client:
        assert (await client.get("/")).headers["location"] == "/login"
        assert (await client.get("/login")).headers["location"] == "/setup"
        token = await form_token(client, "/setup")
        form = {
            "_csrf_token": token,
            "name": "Kavárna U Anny",
            "slug": "",
            "shop_url": "https://anna.example.cz",
            "email": "anna@example.cz",
            "password": PASSWORD,
            "password_again": "not the same",
        }
        mismatch = await page_after(client, await client.post("/setup", data=form))
        assert mismatch.status_code == 400
        assert error_on(mismatch) == "The two passwords are not the same."
        assert 'value="Kavárna U Anny"' in mismatch.text
        assert PASSWORD not in mismatch.text

        created = await client.post("/setup", data={**form, "password_again": PASSWORD})
        assert created.status_code == 303
        assert created.headers["location"] == "/login"
        assert "ready" in (await client.get("/login")).text

        assert (await client.get("/setup")).status_code == 404
        second = await client.post("/setup", data={**form, "slug": "second"})
        assert second.status_code == 404
        assert await site.scalar("SELECT count(*) FROM merchants") == 1
        assert await site.scalar("SELECT slug FROM merchants") == "kavarna-u-anny"

        assert (await log_in(client, "anna@example.cz")).status_code == 303
        assert "Kavárna U Anny" in (await client.get("/")).text


async def test_concurrent_first_runs_create_exactly_one_merchant(empty_site: Site) -> None:
    site = empty_site
    all_have_the_form = asyncio.Barrier(4)  # no one posts before everyone read the form

    async def attempt(n: int) -> int:
        async with site.browser() as client:
            token = await form_token(client, "/setup")
            await all_have_the_form.wait()
            answer = await client.post(
                "/setup",
                data={
                    "_csrf_token": token,
                    "name": f"Shop {n}",
                    "email": f"admin{n}@example.cz",
                    "password": PASSWORD,
                    "password_again": PASSWORD,
                },
            )
            return answer.status_code

    statuses = await asyncio.gather(*(attempt(n) for n in range(4)))
    assert sorted(statuses) == [303, 404, 404, 404]
    assert await site.scalar("SELECT count(*) FROM merchants") == 1
    assert await site.scalar("SELECT count(*) FROM staff_users") == 1


# -- tenant isolation -----------------------------------------------------------------------------

WALK_FORM = {
    "points": "1",
    "order_ref": "walk-1",
    "note": "walk",
    "email": "walker@anna-customers.cz",
    "first_name": "Walker",
    "last_name": "Walkington",
    "name": "Walk",
    "referred_by": "",
    "shop_url": "https://anna.example.cz",
    "referral_link_template": "{shop_url}/?ref={code}",
    "referral_bonus": "0",
    "validity_months": "12",
    "locale": "cs",
    "timezone": "Europe/Prague",
    "smtp_port": "587",
    "smtp_security": "starttls",
    "marketing_consent": "refused",
    "confirmed": "yes",  # the destructive actions run, not only ask
}
NOT_WALKED = {"/login", "/logout", "/health", "/ready", "/metrics"}  # the operator's, not pages


def typed(query_string: str) -> str:
    """What a search typed (the page shows it back in the search box)."""
    found = re.search(r"q=([^&]*)", query_string)
    return found.group(1) if found else ""


def page_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path) of the merchant pages; the API, schema and static files aside."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if route.path.startswith(("/api/", "/schema", "/static")) or route.path in NOT_WALKED:
            continue
        found += [(m, route.path) for m in sorted(route.methods - {"OPTIONS", "HEAD"})]
    return found


async def test_no_route_shows_changes_or_exports_another_merchants_data(site: Site) -> None:
    anna, bob = shops(site)
    before = await site.rows_of(bob)
    bob_entry = await site.scalar(
        "SELECT max(id) FROM ledger_entries WHERE merchant_id = :m", m=bob.id
    )
    routes = page_routes(site.app)
    assert len([path for _, path in routes if "{" in path]) >= 8  # the walk sees them all
    async with logged_in(site, anna) as client:
        token = await form_token(client, "/")
        for method, path in routes:
            url = path.replace("{customer_id:int}", str(bob.customer_id)).replace(
                "{token_id:int}", str(bob.token_id)
            )
            if method == "GET":
                variants = [""]
                if path == "/customers":
                    variants += [
                        f"?q={bob.customer_email}",
                        f"?q={bob.customer_last_name}",
                        f"?q={bob.referral_code}",
                        f"?after={bob.customer_id + 1}",
                        f"?q=bella&after={bob.customer_id}",
                    ]
                if path == "/customers/{customer_id:int}":
                    variants += [f"?before={bob_entry + 1}"]
                answers = [(await client.get(url + v), typed(v)) for v in variants]
            else:
                posted = await client.post(url, data={**WALK_FORM, "_csrf_token": token})
                answers = [(posted, "")]
            for answer, query in answers:
                assert answer.status_code < 500, (method, url, answer.text)
                shown = answer.text.replace(html.escape(query), "") if query else answer.text
                for marker in bob.markers:
                    assert marker not in shown, (method, url, marker)
                if "{" in path or path == "/setup":
                    assert answer.status_code == 404, (method, url, answer.status_code)
        # Anna's own pages did work while Bob's stayed out of reach.
        mine = await client.get(f"/customers/{anna.customer_id}")
        assert anna.customer_email in mine.text
        exported = await client.get("/customers/export.csv")
        assert anna.customer_email in exported.text
        assert bob.customer_email not in exported.text
    assert await site.rows_of(bob) == before


# -- forms ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message", "kept"),
    [
        ({"validity_months": "twelve"}, "validity in months must be a whole number", "twelve"),
        ({"locale": "de"}, "locale must be one of cs, en", "Renamed Programme"),
        ({"timezone": "Mars/Olympus"}, "not a known time zone", "Mars/Olympus"),
        ({"referral_link_template": "https://x.cz/"}, "must contain {code}", "https://x.cz/"),
        ({"smtp_port": "99999"}, "between 1 and 65535", "smtp.anna.example.cz"),
        ({"smtp_sender": "not-an-address"}, "sender must be an email", "not-an-address"),
        ({"pre_expiry_days": "0"}, "days before expiry must be between 1 and 365", "Renamed"),
        ({"newsletter_reward": "-5"}, "newsletter reward cannot be negative", "-5"),
    ],
)
async def test_settings_with_an_error_keep_the_input_and_change_nothing(
    site: Site, changes: dict[str, str], message: str, kept: str
) -> None:
    anna, _ = shops(site)
    before = await site.rows_of(anna)
    async with logged_in(site, anna) as client:
        token = await form_token(client, "/settings")
        form = {
            **WALK_FORM,
            "_csrf_token": token,
            "name": "Renamed Programme",
            "smtp_host": "smtp.anna.example.cz",
            "smtp_sender": "shop@anna.example.cz",
            "smtp_password": "Typed-Secret-1234",
            **changes,
        }
        refused = await page_after(client, await client.post("/settings", data=form))
        assert refused.status_code == 400
        assert message in error_on(refused)
        assert 'value="Renamed Programme"' in refused.text
        assert html.escape(kept) in refused.text
        assert "Typed-Secret-1234" not in refused.text
    assert await site.rows_of(anna) == before


async def test_a_test_email_goes_out_at_once_or_says_why_not(site: Site) -> None:
    """Against a real SMTP server: sent at once, then refused when the server is down,
    each outcome on the settings page."""
    anna, _ = shops(site)
    smtp = SmtpServer(logins={"anna": "Smtp-Pa55word-7f3e"}).start()
    try:
        async with logged_in(site, anna) as client:
            token = await form_token(client, "/settings")
            saved = await client.post(
                "/settings",
                data={
                    **WALK_FORM,
                    "_csrf_token": token,
                    "name": "Cafe Anna",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": str(smtp.port),
                    "smtp_security": "none",
                    "smtp_username": "anna",
                    "smtp_password": "Smtp-Pa55word-7f3e",
                    "smtp_sender": "shop@anna.example.cz",
                },
            )
            assert saved.status_code == 303
            page = await client.get("/settings")
            assert 'id="test-email"' in page.text
            assert 'value="admin@anna.example.cz"' in page.text  # the staff user's address

            sent = await client.post(
                "/settings/test-email", data={"_csrf_token": token, "to": "anna@example.cz"}
            )
            assert (sent.status_code, sent.headers["location"]) == (303, "/settings#test-email")
            shown = await client.get("/settings")
            assert "The test email was sent to anna@example.cz." in shown.text
            [received] = smtp.recorder.to("anna@example.cz")
            assert received.message["Subject"] == "Zkušební e-mail – Cafe Anna"  # locale cs
            assert received.login == "anna"

            smtp.stop()
            refused = await client.post(
                "/settings/test-email", data={"_csrf_token": token, "to": "anna@example.cz"}
            )
            assert refused.status_code == 303
            shown = await client.get("/settings")
            result = re.search(
                r'<p class="flash error" role="alert" id="test-email-result">([^<]+)', shown.text
            )
            assert result
            assert html.unescape(result.group(1)).startswith("The test email was not sent: ")
            assert "could not be reached" in result.group(1)
            assert "Smtp-Pa55word" not in shown.text
            assert smtp.recorder.count() == 1
            assert 'id="email-problem"' not in shown.text  # no customer email has failed

            # a customer's email fails with the server down: the page says why
            await client.post(
                "/settings",
                data={**WALK_FORM, "_csrf_token": token, "name": "Cafe Anna",
                      "send_system_emails": "on", "smtp_host": "127.0.0.1",
                      "smtp_port": str(smtp.port), "smtp_security": "none",
                      "smtp_username": "anna", "smtp_sender": "shop@anna.example.cz"},
            )  # fmt: skip
            await points.earn_points(
                anna.id,
                anna.customer_id,
                Points.parse("5"),
                order_ref="problem-1",
                uow=site.deps.uow(),
                clock=site.clock,
            )
            await deliver_once(site.deps, "test-worker", limit=10)
            problem = (await client.get("/settings")).text
            assert 'id="email-problem"' in problem
            assert "Emails are not going out." in problem
            assert "could not be reached" in problem.split('id="email-problem"')[1]
            assert "1 waiting to be sent again" in problem
    finally:
        smtp.stop()


async def test_the_smtp_password_is_stored_encrypted_and_never_appears_in_any_page(
    site: Site,
) -> None:
    anna, _ = shops(site)
    secret = "Smtp-Pa55word-7f3e"
    async with logged_in(site, anna) as client:
        token = await form_token(client, "/settings")
        saved = await client.post(
            "/settings",
            data={
                **WALK_FORM,
                "_csrf_token": token,
                "name": "Cafe Anna",
                "send_system_emails": "on",
                "smtp_host": "smtp.anna.example.cz",
                "smtp_username": "anna",
                "smtp_sender": "shop@anna.example.cz",
                "smtp_password": secret,
            },
        )
        assert saved.status_code == 303
        settings = await client.get("/settings")
        assert "The settings are saved." in settings.text
        assert "(set)" in settings.text
        assert 'name="send_system_emails" checked' in settings.text
        stored = await site.scalar(
            "SELECT smtp_password_encrypted FROM merchants WHERE id = :m", m=anna.id
        )
        assert secret not in stored
        assert site.deps.secret_box.decrypt(stored) == secret

        pages = [path for method, path in page_routes(site.app) if method == "GET"]
        for path in pages:
            answer = await client.get(path.replace("{customer_id:int}", str(anna.customer_id)))
            assert secret not in answer.text, path

        kept = await client.post(  # saving again without typing it keeps the password
            "/settings",
            data={**WALK_FORM, "_csrf_token": token, "smtp_host": "smtp.anna.example.cz"},
        )
        assert kept.status_code == 303
        assert await site.scalar(
            "SELECT smtp_password_encrypted FROM merchants WHERE id = :m", m=anna.id
        )
        removed = await client.post(
            "/settings",
            data={**WALK_FORM, "_csrf_token": token, "smtp_remove_password": "on"},
        )
        assert removed.status_code == 303
        assert "(not set)" in (await client.get("/settings")).text


async def test_the_newsletter_reward_and_the_pre_expiry_notification_are_set_on_the_page(
    site: Site,
) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client:
        token = await form_token(client, "/settings")
        page = await client.get("/settings")
        assert '<option value="false" selected>Do not send</option>' in page.text
        assert 'name="pre_expiry_days" type="number" value="14"' in page.text
        saved = await client.post(
            "/settings",
            data={
                **WALK_FORM,
                "_csrf_token": token,
                "newsletter_reward": "25,50",
                "newsletter_take_back": "on",
                "pre_expiry_notify": "true",
                "pre_expiry_days": "7",
            },
        )
        assert saved.status_code == 303
        page = await client.get("/settings")
        assert 'name="newsletter_reward" type="text" value="25.50"' in page.text
        assert 'name="newsletter_take_back" checked' in page.text
        assert '<option value="true" selected>Notify Ecomail</option>' in page.text
        assert 'name="pre_expiry_days" type="number" value="7"' in page.text
        row = await site.scalar(
            "SELECT newsletter_reward_cents || ' ' || pre_expiry_days FROM merchants WHERE id = :m",
            m=anna.id,
        )
        assert row == "2550 7"
        # a form without these fields (an older page) leaves them as they are
        kept = await client.post("/settings", data={**WALK_FORM, "_csrf_token": token})
        assert kept.status_code == 303
        assert 'value="true" selected>Notify Ecomail' in (await client.get("/settings")).text
        await choose_language(client, "cs")  # a number as Czechs write it
        page = await client.get("/settings")
        assert 'name="newsletter_reward" type="text" value="25,50"' in page.text
        assert 'name="referral_bonus" type="text" value="0"' in page.text


async def test_a_refused_form_is_shown_once_at_the_address_of_its_page(site: Site) -> None:
    """POST, redirect, GET: Back and Reload never send the refused form again."""
    anna, _ = shops(site)
    page = f"/customers/{anna.customer_id}"
    async with logged_in(site, anna) as client:
        token = await form_token(client, page)
        answer = await client.post(f"{page}/spend", data={"_csrf_token": token, "points": "5000"})
        assert (answer.status_code, answer.headers["location"]) == (303, page)
        elsewhere = await client.get("/settings")  # another page is not the form's page
        assert 'class="error"' not in elsewhere.text
        shown = await client.get(page)
        assert shown.status_code == 409
        assert error_on(shown) == "The customer holds 100 points; 5,000 points cannot be taken."
        reloaded = await client.get(page)
        assert reloaded.status_code == 200
        assert 'class="error"' not in reloaded.text
        assert 'value="5000"' not in reloaded.text
    assert await site.balance(anna) == 100_00


async def test_a_refused_form_on_the_customer_page_keeps_what_was_typed(site: Site) -> None:
    anna, _ = shops(site)
    page = f"/customers/{anna.customer_id}"
    async with logged_in(site, anna) as client:
        token = await form_token(client, page)
        too_much = await page_after(
            client,
            await client.post(
                f"{page}/spend", data={"_csrf_token": token, "points": "5000", "note": "big order"}
            ),
        )
        assert too_much.status_code == 409
        assert error_on(too_much) == "The customer holds 100 points; 5,000 points cannot be taken."
        assert 'value="5000"' in too_much.text
        assert 'value="big order"' in too_much.text

        no_order = await page_after(
            client,
            await client.post(
                f"{page}/earn", data={"_csrf_token": token, "points": "12,50", "order_ref": " "}
            ),
        )
        assert no_order.status_code == 400
        assert "order reference must not be empty" in error_on(no_order)
        assert 'value="12,50"' in no_order.text

        earned = await client.post(
            f"{page}/earn", data={"_csrf_token": token, "points": "12,50", "order_ref": "o-77"}
        )
        assert earned.status_code == 303
        shown = await client.get(page)
        assert re.search(r'id="balance">112.50<', shown.text)
        assert "o-77" in shown.text
        assert "The points have been added." in shown.text
        assert await site.balance(anna) == 112_50

        again = await client.post(
            f"{page}/earn", data={"_csrf_token": token, "points": "12,50", "order_ref": "o-77"}
        )
        assert again.status_code == 303
        shown = await client.get(page)
        assert "The points have been added." not in shown.text
        assert (
            '<p class="flash notice" role="status">Nothing was added: the order &#39;o-77&#39;'
            " has already earned this customer points.</p>" in shown.text
        )
        assert await site.balance(anna) == 112_50


def consent_history_rows(page: httpx.Response) -> list[list[str]]:
    """The consent history table's rows, newest first: when, change, set by."""
    found = re.search(r'id="consent-history">.*?<tbody>(.*?)</tbody>', page.text, re.S)
    assert found, page.text
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    return [
        [html.unescape(cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in rows
    ]


def consent_shown(page: httpx.Response) -> str:
    found = re.search(r'<dd id="consent">(.*?)</dd>', page.text, re.S)
    assert found, page.text
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


async def test_staff_set_marketing_consent_on_the_customer_page_and_see_its_history(
    site: Site,
) -> None:
    anna, _ = shops(site)
    async with site.browser() as api:
        made = await api.post(
            "/api/v1/customers",
            json={"email": "cyril@anna-customers.cz", "marketing_consent": "granted"},
            headers={"Authorization": f"Bearer {(await _api_token(site, anna.id))[0]}"},
        )
    assert made.status_code == 201, made.text
    page = f"/customers/{made.json()['id']}"
    async with logged_in(site, anna) as client:
        shown = await client.get(page)
        assert consent_shown(shown) == "Granted (set by the e-shop on Mar 10, 2024, 10:00)"
        assert re.search(r'value="granted" required checked>', shown.text)
        assert "never added again" in shown.text
        assert consent_history_rows(shown) == [
            ["Mar 10, 2024, 10:00", "Unknown → Granted", "the e-shop"]
        ]

        site.clock.advance(hours=2)
        token = await form_token(client, page)
        refused = await client.post(
            f"{page}/consent", data={"_csrf_token": token, "marketing_consent": "refused"}
        )
        assert refused.status_code == 303
        shown = await client.get(page)
        assert "The marketing consent is now refused." in shown.text
        assert consent_shown(shown) == "Refused (set by staff on Mar 10, 2024, 12:00)"
        assert consent_history_rows(shown) == [
            ["Mar 10, 2024, 12:00", "Granted → Refused", "staff"],
            ["Mar 10, 2024, 10:00", "Unknown → Granted", "the e-shop"],
        ]

        again = await client.post(
            f"{page}/consent", data={"_csrf_token": token, "marketing_consent": "refused"}
        )
        assert again.status_code == 303
        shown = await client.get(page)
        assert "The marketing consent was refused already; nothing changed." in shown.text
        assert len(consent_history_rows(shown)) == 2
    assert await site.scalar("SELECT count(*) FROM consent_changes") == 2


async def test_a_customer_never_given_a_consent_shows_unknown_and_no_history(site: Site) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client:
        shown = await client.get(f"/customers/{anna.customer_id}")
    assert consent_shown(shown) == "Unknown (never set)"
    assert "No consent changes yet." in shown.text
    assert "checked>" not in shown.text


@pytest.mark.parametrize("value", ["unknown", "", "yes"])
async def test_a_consent_form_without_granted_or_refused_is_refused_and_changes_nothing(
    site: Site, value: str
) -> None:
    anna, bob = shops(site)
    page = f"/customers/{anna.customer_id}"
    before = (await site.rows_of(anna), await site.rows_of(bob))
    async with logged_in(site, anna) as client:
        token = await form_token(client, page)
        answer = await page_after(
            client,
            await client.post(
                f"{page}/consent", data={"_csrf_token": token, "marketing_consent": value}
            ),
        )
        forged = await client.post(f"{page}/consent", data={"marketing_consent": "refused"})
    assert answer.status_code == 400
    assert error_on(answer) == "Choose whether the customer granted or refused consent."
    assert "Marketing consent history" in answer.text  # the customer's page, shown again
    assert forged.status_code == 403
    assert (await site.rows_of(anna), await site.rows_of(bob)) == before
    assert await site.scalar("SELECT count(*) FROM consent_changes") == 0


async def test_the_customer_list_pages_by_keyset_cursor(site: Site) -> None:
    anna, _ = shops(site)
    for n in range(55):
        await customers.upsert_customer(
            anna.id,
            customers.CustomerInput(email=f"c{n:02d}@anna-customers.cz", last_name=f"Pager{n:02d}"),
            uow=site.deps.uow(),
            clock=site.clock,
            rng=site.deps.rng,
        )
    async with logged_in(site, anna) as client:
        first = await client.get("/customers")
        assert first.status_code == 200
        assert len(listed(first)) == 50
        following = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert following
        link = html.unescape(following.group(1))
        assert "offset" not in link
        assert "after=" in link
        second = await client.get(link)
        assert len(listed(second)) == 6
        assert not set(listed(first)) & set(listed(second))
        assert anna.customer_email in second.text  # the oldest customer comes last
        assert 'rel="next"' not in second.text
        assert '<p class="found" id="found">56 customers</p>' in second.text
        preceding = re.search(r'rel="prev" href="([^"]+)"', second.text)
        assert preceding
        assert 'rel="prev"' not in first.text
        back = await client.get(html.unescape(preceding.group(1)))
        assert listed(back) == listed(first)
        assert 'rel="prev"' not in back.text  # it is the first page again

        search = await client.get("/customers?q=pager5")
        assert [m for m in re.findall(r"Pager\d\d", search.text)] == [
            f"Pager{n}" for n in range(50, 55)
        ]
        assert '<p class="found" id="found">5 customers</p>' in search.text
        by_domain = await client.get("/customers?q=@ANNA-customers.cz")
        assert '<p class="found" id="found">56 customers</p>' in by_domain.text
        nobody = await client.get("/customers?q=%40nowhere.cz")
        assert 'id="found"' not in nobody.text


async def test_the_dashboard_draws_the_points_in_an_inline_svg_chart(site: Site) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client:
        board = await client.get("/")
        assert board.status_code == 200
        assert re.search(r'<dd class="issued">100</dd>', board.text)
        assert "<svg" in board.text
        assert '<rect class="issued"' in board.text
        assert "Mar 10, 2024: issued 100, spent 0, expired 0" in board.text
        assert 'id="expiries-as-of"' not in board.text  # counted live

        await nightly.run_nightly(anna.id, uow_factory=site.deps.uow, clock=site.clock)
        assert await site.scalar("SELECT count(*) FROM kept_day_totals") == 90
        kept = await client.get("/")  # the same figures, from what the nightly run kept
        assert re.search(r'<dd class="issued">100</dd>', kept.text)
        assert "Mar 10, 2024: issued 100, spent 0, expired 0" in kept.text
        assert '<span id="expiries-as-of">Mar 10, 2024, 10:00</span>' in kept.text


def setup_steps(page: httpx.Response) -> dict[str, str]:
    """The first-run checklist's steps and their states, in order ({} when it is not shown)."""
    return dict(re.findall(r'<li id="step-(\w+)" class="(done|todo)">', page.text))


async def test_the_first_run_checklist_shows_what_is_left_and_is_gone_when_all_is_done(
    empty_site: Site,
) -> None:
    site, deps = empty_site, empty_site.deps
    merchant = await merchants.create_merchant(
        slug="nova",
        settings=MerchantSettings(name="Nová kavárna"),
        admin_email="admin@nova.example.cz",
        admin_password=PASSWORD,
        uow=deps.uow(),
        clock=deps.clock,
        hasher=deps.hasher,
    )
    assert merchant.id is not None
    smtp = SmtpServer().start()
    try:
        async with site.browser() as client:
            assert (await log_in(client, "admin@nova.example.cz")).status_code == 303
            await choose_language(client, "en")
            fresh = await client.get("/")
            assert setup_steps(fresh) == dict.fromkeys(
                ["shop_address", "api_token", "ecomail", "webhook", "test_email"], "todo"
            )
            assert "0 of 5 steps done." in fresh.text
            for link in ("/settings", "/api-tokens", "/integrations/ecomail",
                         "/integrations/ecomail#newsletter", "/settings#test-email"):  # fmt: skip
                assert f'href="{link}"' in fresh.text.split('id="first-run"')[1]
            assert "done once Ecomail's first notification arrives" in fresh.text

            await merchants.change_settings(
                "nova",
                {"shop_url": "https://nova.example.cz"},
                uow=deps.uow(),
                clock=deps.clock,
            )
            await api_tokens.create_api_token(
                merchant.id, "e-shop", uow=deps.uow(), clock=deps.clock, rng=deps.rng
            )
            async with deps.uow() as uow:
                await uow.ecomail.save_key(
                    merchant.id, encrypted="k", hint="abcd", at=site.clock.now()
                )
                await uow.ecomail.activate(
                    merchant.id, list_id="1", list_name="Zákazníci", at=site.clock.now()
                )
                await uow.newsletter.enqueue(
                    merchant.id,
                    Notification("ann@example.cz", SubscriptionChange.SUBSCRIBED, "1"),
                    received_at=site.clock.now(),
                    at=site.clock.now(),
                )
                await uow.merchants.update_smtp(
                    merchant.id,
                    SmtpSettings(host="127.0.0.1", port=smtp.port, security="none",
                                 sender="shop@nova.example.cz"),
                )  # fmt: skip
                await uow.commit()
            almost = await client.get("/")
            assert setup_steps(almost) == {
                **dict.fromkeys(["shop_address", "api_token", "ecomail", "webhook"], "done"),
                "test_email": "todo",
            }
            assert "4 of 5 steps done." in almost.text

            token = await form_token(client, "/settings")
            sent = await client.post(
                "/settings/test-email", data={"_csrf_token": token, "to": "owner@example.cz"}
            )
            assert sent.status_code == 303
            assert smtp.recorder.count() == 1
            done = await client.get("/")
            assert done.status_code == 200
            assert setup_steps(done) == {}
            assert 'id="first-run"' not in done.text
    finally:
        smtp.stop()


async def test_an_api_token_is_shown_once_and_can_be_revoked(site: Site) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client:
        token = await form_token(client, "/api-tokens")
        created = await client.post("/api-tokens", data={"_csrf_token": token, "name": "Till"})
        assert created.status_code == 303
        shown = await client.get("/api-tokens")
        plain = re.search(r'<code id="new-token">(ell_[A-Za-z0-9]+)</code>', shown.text)
        assert plain
        assert '<a href="/schema/swagger" id="api-docs">' in shown.text  # how to use it
        assert plain.group(1) not in (await client.get("/api-tokens")).text

        api = await client.get(
            "/api/v1/customers?email=ann@anna-customers.cz",
            headers={"Authorization": f"Bearer {plain.group(1)}", "accept": "application/json"},
        )
        assert api.status_code == 200

        token_id = await site.scalar(
            "SELECT id FROM api_tokens WHERE merchant_id = :m AND name = 'Till'", m=anna.id
        )
        asked = await client.post(f"/api-tokens/{token_id}/revoke", data={"_csrf_token": token})
        assert asked.status_code == 200  # are you sure?
        assert 'name="confirmed" value="yes"' in asked.text
        assert 'class="cancel" href="/api-tokens"' in asked.text
        assert "active" in (await client.get("/api-tokens")).text
        assert (
            await site.scalar("SELECT revoked_at FROM api_tokens WHERE id = :t", t=token_id) is None
        )
        revoked = await client.post(
            f"/api-tokens/{token_id}/revoke", data={"_csrf_token": token, "confirmed": "yes"}
        )
        assert revoked.status_code == 303
        assert "revoked" in (await client.get("/api-tokens")).text
        assert await site.scalar("SELECT revoked_at FROM api_tokens WHERE id = :t", t=token_id)


async def test_the_export_downloads_the_merchants_customers_as_a_dated_csv(site: Site) -> None:
    anna, bob = shops(site)
    async with logged_in(site, anna) as client:
        page = await client.get("/customers")
        assert 'href="/customers/export.csv"' in page.text
        exported = await client.get("/customers/export.csv")
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        assert (
            exported.headers["content-disposition"]
            == 'attachment; filename="ellity-anna-2024-03-10.csv"'
        )
        lines = exported.text.splitlines()
        assert lines[0].startswith('"email","first_name","last_name","ellity_credit"')
        assert anna.customer_email in lines[1]
        assert bob.customer_email not in exported.text

        assert 'href="/customers/export-excel.csv"' in page.text
        excel = await client.get("/customers/export-excel.csv")
        assert excel.status_code == 200
        assert (
            excel.headers["content-disposition"]
            == 'attachment; filename="ellity-anna-2024-03-10-excel.csv"'
        )
        assert excel.content.startswith(b'\xef\xbb\xbf"email";"first_name";"last_name"')
        assert anna.customer_email in excel.text
        assert bob.customer_email not in excel.text


@pytest.mark.parametrize(
    ("wanted", "followed"),
    [
        ("/customers?q=ann", "/customers?q=ann"),
        ("/customers/5#ledger", "/customers/5#ledger"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("https://evil.example/", "/"),
        ("", "/"),
    ],
)
def test_after_logging_in_only_a_path_on_this_site_is_followed(wanted: str, followed: str) -> None:
    assert safe_next(wanted) == followed


# -- points past their expiry before the nightly run -----------------------------------------
#
# Anna's customer earns 100 points on 10 March 2024 (last valid day 10 March 2025) and 30 on
# 19 April 2024; Cyril earns 20 on 10 March 2024 only. At 00:30 on 11 March 2025 (Prague),
# before the nightly run, the 100 and the 20 count for nothing.

PRAGUE = ZoneInfo("Europe/Prague")
#: Half an hour into the first day after the 100 points' last valid day.
AFTER_MIDNIGHT = datetime(2025, 3, 11, 0, 30, tzinfo=PRAGUE)
NIGHTLY = datetime(2025, 3, 11, 2, 0, tzinfo=PRAGUE)
SPRING = datetime(2024, 4, 19, 9, 0, tzinfo=PRAGUE)


async def entry_kinds(site: Site, customer_id: int) -> list[str]:
    async with site.database.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT kind FROM ledger_entries WHERE customer_id = :c ORDER BY id"),
            {"c": customer_id},
        )
        return [kind for (kind,) in rows]


async def test_expired_points_are_gone_from_every_answer_before_the_nightly_run(
    site: Site,
) -> None:
    anna, _ = shops(site)
    deps, clock = site.deps, site.clock
    token, _ = await _api_token(site, anna.id)
    auth = {"Authorization": f"Bearer {token}"}
    cyril = await add_customer_via_api(site, auth, "cyril@anna-customers.cz")
    await points.earn_points(
        anna.id, cyril, Points.parse("20"), order_ref="c-1", uow=deps.uow(), clock=clock
    )
    clock.set(SPRING)
    await points.earn_points(
        anna.id, anna.customer_id, Points.parse("30"), order_ref="a-2", uow=deps.uow(), clock=clock
    )
    clock.set(AFTER_MIDNIGHT)

    async with site.browser() as api:
        answer = await api.get(f"/api/v1/customers/{anna.customer_id}", headers=auth)
        assert answer.status_code == 200
        body = answer.json()
        assert body["balance"] == "30.00"
        assert body["next_expiration"] == {"date": "2025-04-19", "points": "30.00"}
        gone = (await api.get(f"/api/v1/customers/{cyril}", headers=auth)).json()
        assert (gone["balance"], gone["next_expiration"]) == ("0.00", None)

        before = await entry_kinds(site, anna.customer_id)
        refused = await api.post(
            f"/api/v1/customers/{anna.customer_id}/spend", json={"points": "30.01"}, headers=auth
        )
        assert refused.status_code == 409
        assert refused.json()["error"] == "insufficient_points"
        refused = await api.post(
            f"/api/v1/customers/{cyril}/spend", json={"points": "1"}, headers=auth
        )
        assert refused.status_code == 409
        assert await entry_kinds(site, anna.customer_id) == before  # nothing written

    async with logged_in(site, anna) as browser:
        page = await browser.get(f"/customers/{anna.customer_id}")
        assert re.search(r'<dd id="balance">30</dd>', page.text), page.text
        assert "Apr 19, 2025" in page.text
        listed = await browser.get("/customers")
        assert ">130<" not in listed.text and ">20<" not in listed.text
        exported = await browser.get("/customers/export.csv")
        rows = {row["email"]: row for row in csv.DictReader(io.StringIO(exported.text))}
        ann_row, cyril_row = rows[anna.customer_email], rows["cyril@anna-customers.cz"]
        assert (ann_row["ellity_credit"], ann_row["ellity_credit_num"]) == ("30", "30")
        assert ann_row["ellity_next_expiration_date"] == "2025-04-19"
        assert (cyril_row["ellity_credit_num"], cyril_row["ellity_next_expiration_date"]) == (
            "0",
            "",
        )

    # The nightly run still writes what it always wrote: one expire entry per customer.
    clock.set(NIGHTLY)
    result = await nightly.expire_points(anna.id, uow_factory=deps.uow, clock=clock)
    assert result.customers == 2
    assert (await entry_kinds(site, anna.customer_id))[-1] == "expire"
    assert await entry_kinds(site, cyril) == ["earn", "expire"]
    async with site.browser() as api:
        body = (await api.get(f"/api/v1/customers/{anna.customer_id}", headers=auth)).json()
        assert body["balance"] == "30.00"
        assert body["last_change"] == {"date": "2025-03-11", "points": "-100.00"}


async def _api_token(site: Site, merchant_id: MerchantId) -> tuple[str, int]:
    token, secret = await api_tokens.create_api_token(
        merchant_id, "expiry", uow=site.deps.uow(), clock=site.clock, rng=site.deps.rng
    )
    return secret, token.id


async def add_customer_via_api(site: Site, auth: dict[str, str], email: str) -> CustomerId:
    async with site.browser() as api:
        made = await api.post("/api/v1/customers", json={"email": email}, headers=auth)
        assert made.status_code == 201, made.text
        return CustomerId(int(made.json()["id"]))


# -- bad input ------------------------------------------------------------------------------------

MAX_ID = 2**63 - 1
TOO_BIG = 2**63
FOLDS_TOO_LONG = "ß" * 127 + "@x.cz"  # 132 characters; case-folded ("ss") 259


@dataclass(frozen=True)
class BadPage:
    method: str
    path: str  # {c}: Anna's customer
    params: dict[str, str]
    status: int
    says: str


BAD_PAGES = {
    "list-after-above-2^63": BadPage("GET", "/customers", {"after": str(TOO_BIG)}, 400, "'after'"),
    "list-after-below-1": BadPage("GET", "/customers", {"after": "0"}, 400, "'after'"),
    "list-after-text": BadPage("GET", "/customers", {"after": "ann"}, 400, "whole number"),
    "search-with-nul": BadPage("GET", "/customers", {"q": "ann\x00"}, 400, "control characters"),
    "search-with-escape": BadPage("GET", "/customers", {"q": "\x1b[2J"}, 400, "control"),
    "customer-above-2^63": BadPage("GET", f"/customers/{TOO_BIG}", {}, 404, "no such page"),
    "customer-zero": BadPage("GET", "/customers/0", {}, 404, "no such page"),
    "ledger-before-above-2^63": BadPage(
        "GET", "/customers/{c}", {"before": str(TOO_BIG)}, 400, "'before'"
    ),
    "ledger-before-text": BadPage("GET", "/customers/{c}", {"before": "x"}, 400, "'before'"),
    "earn-above-2^63": BadPage(
        "POST", f"/customers/{TOO_BIG}/earn", {"points": "1", "order_ref": "o"}, 404, "no such"
    ),
    "pin-above-2^63": BadPage("POST", f"/customers/{TOO_BIG}/pin", {}, 404, "no such page"),
    "revoke-above-2^63": BadPage("POST", f"/api-tokens/{TOO_BIG}/revoke", {}, 404, "no such"),
    "revoke-above-2^31": BadPage("POST", f"/api-tokens/{2**31}/revoke", {}, 404, "no such"),
    "new-email-folds-too-long": BadPage(
        "POST", "/customers/new", {"email": FOLDS_TOO_LONG}, 400, "at most 254"
    ),
    "edit-email-folds-too-long": BadPage(
        "POST", "/customers/{c}/edit", {"email": FOLDS_TOO_LONG}, 400, "at most 254"
    ),
    "login-email-with-nul": BadPage(
        "POST", "/login", {"email": "admin@anna.example.cz\x00", "password": "x"}, 400, "wrong"
    ),
}


@pytest.mark.parametrize("bad", BAD_PAGES.values(), ids=BAD_PAGES.keys())
async def test_bad_input_on_a_page_is_a_4xx_page_that_says_what_is_wrong_and_stores_nothing(
    site: Site, bad: BadPage
) -> None:
    anna, bob = shops(site)
    before = (await site.rows_of(anna), await site.rows_of(bob))
    async with logged_in(site, anna) as client:
        path = bad.path.format(c=anna.customer_id)
        if bad.method == "GET":
            answer = await client.get(path, params=bad.params)
        else:
            token = await form_token(client, "/customers/new")
            answer = await client.post(path, data={**bad.params, "_csrf_token": token})
            if answer.status_code == 303:  # a refused form: shown at its page's address
                answer = await client.get(answer.headers["location"])
    assert answer.status_code == bad.status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert bad.says in html.unescape(answer.text)
    if path != "/login":  # the log-in form itself aside
        assert '<a href="/customers"' in answer.text  # the navigation, to carry on
    assert (await site.rows_of(anna), await site.rows_of(bob)) == before


async def test_a_page_that_does_not_exist_keeps_the_navigation(site: Site) -> None:
    anna, _ = shops(site)
    async with logged_in(site, anna) as client:
        missing = await client.get("/no/such/page")
    assert missing.status_code == 404
    assert '<nav aria-label="Main">' in missing.text
    assert '<a href="/customers"' in missing.text


# -- no request makes a page fail -----------------------------------------------------------------

ECOMAIL_KEY = "anna-ecomail-key-7f3a9c"
NOT_FUZZED = ("/logout", "/health", "/ready", "/metrics", "/webhooks/")  # logging out ends the walk
EDGE_TEXTS = [
    "",
    " ",
    "\x00",
    "ann\x00",
    "\x1b",
    "\t\n",
    FOLDS_TOO_LONG,
    "ß" * 300,
    "ﬃ" * 100 + "@x.cz",
    "9" * 400,
    "-1",
    "0",
    "1e3",
    "12,50",
    "NaN",
    "x" * 1000,
    "<b>&amp;",
    "\u202e\ufeff\uffff",
    "\U0010ffff",
]
EDGE_NUMBERS = [0, -1, 1, 2, 2**31 - 1, 2**31, MAX_ID, TOO_BIG, 2**64, -(2**63) - 1]

texts = st.one_of(
    st.sampled_from(EDGE_TEXTS), st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
)
numbers = st.one_of(st.sampled_from(EDGE_NUMBERS), st.integers())


@dataclass(frozen=True)
class PageRoute:
    method: str
    path: str
    path_ints: tuple[str, ...]  # the path parameters, all whole numbers
    query: tuple[str, ...]
    form: tuple[str, ...]


def fuzzed_routes(app: Litestar) -> list[PageRoute]:
    """Every page's method, path, path and query parameters and form fields, read from the
    handlers' signatures, so a new page or parameter is walked without editing the test."""
    found = []
    for route in app.routes:
        if route.path.startswith(("/api/", "/schema", "/static", *NOT_FUZZED)):
            continue
        for handler in getattr(route, "route_handlers", []):
            methods = sorted(handler.http_methods - {"OPTIONS", "HEAD"})
            if not methods:
                continue
            params = handler.parsed_fn_signature.parameters
            kinds = {name: type(p.kwarg_definition).__name__ for name, p in params.items()}
            form: tuple[str, ...] = ()
            if "data" in params:
                form = tuple(f.name for f in dataclasses.fields(params["data"].annotation))
            found += [
                PageRoute(
                    method=method,
                    path=route.path,
                    path_ints=tuple(re.findall(r"\{(\w+):int\}", route.path)),
                    query=tuple(n for n, kind in kinds.items() if kind == "QueryParameter"),
                    form=form,
                )
                for method in methods
            ]
    return found


async def test_no_generated_request_to_any_page_gets_a_server_error(
    sql_database: Database, tmp_path: Path
) -> None:
    with Emulator() as emu, EmulatorServer(emu, port=0) as ecomail:
        list_id = emu.add_account(ECOMAIL_KEY).add_list("Newsletter")
        async with site_on(sql_database, tmp_path, ecomail_api_url=ecomail.url) as site:
            anna = await new_shop(
                site.deps, "anna", "Cafe Anna", ("ann@anna-customers.cz", "Ann", "Annesley"), "100"
            )
            routes = fuzzed_routes(site.app)
            assert {"q", "after", "before"} <= {n for r in routes for n in r.query}
            assert len([r for r in routes if r.path_ints]) >= 8
            plausible = {
                **WALK_FORM,
                "q": "ann",
                "email": anna.customer_email,
                "api_key": ECOMAIL_KEY,
                "list_id": str(list_id),
                "password": PASSWORD,
            }
            known_ids = [anna.customer_id, anna.token_id]
            loop = asyncio.get_running_loop()
            async with logged_in(site, anna) as client:
                token = await form_token(client, "/")
                statuses = await asyncio.to_thread(
                    fuzz_pages, client, loop, routes, plausible, known_ids, token
                )
    assert {200, 303, 400, 404} <= statuses


def fuzz_pages(  # noqa: PLR0917 - the walk's whole setting
    client: httpx.AsyncClient,
    loop: asyncio.AbstractEventLoop,
    routes: list[PageRoute],
    plausible: dict[str, str],
    known_ids: list[int],
    csrf_token: str,
) -> set[int]:
    """Hypothesis drives the app on the test's loop from this thread."""
    statuses: set[int] = set()

    def value(name: str) -> st.SearchStrategy[str]:
        return st.one_of(st.just(plausible.get(name, "")), texts, numbers.map(str))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def walk(data: st.DataObject) -> None:
        route = data.draw(st.sampled_from(routes), label="route")
        path = route.path
        for name in route.path_ints:
            number = data.draw(st.one_of(st.sampled_from(known_ids), numbers), label=name)
            path = path.replace(f"{{{name}:int}}", str(number))
        params = data.draw(
            st.fixed_dictionaries({}, optional={n: value(n) for n in route.query}), label="query"
        )
        form = data.draw(
            st.fixed_dictionaries({}, optional={n: value(n) for n in route.form}), label="form"
        )
        if route.method == "POST":
            form["_csrf_token"] = csrf_token
        request = client.request(
            route.method, path, params=params, data=form if route.method == "POST" else None
        )
        answer = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)
        statuses.add(answer.status_code)
        said = f"{route.method} {path}: {answer.status_code}"
        assert answer.status_code < 500, said
        if answer.status_code >= 400:  # said on a page, not in a bare JSON error
            assert answer.headers["content-type"].startswith("text/html"), said

    walk()
    return statuses


async def test_a_change_the_database_keeps_aborting_is_a_busy_page_and_stores_nothing(
    site: Site,
) -> None:
    """A conflict that outlasts every run of the use case: a 503 page asking to send the form
    again, never a 500."""
    anna, _ = shops(site)
    real = site.deps

    def conflicting(*, read_only: bool = False) -> Any:
        uow = real.uow(read_only=read_only)

        async def aborted() -> None:
            raise TransientConflict("deadlock detected")

        if not read_only:
            uow.commit = aborted  # type: ignore[method-assign]
        return uow

    page = f"/customers/{anna.customer_id}"
    async with logged_in(site, anna) as client:
        token = await form_token(client, page)
        before = await site.rows_of(anna)
        site.app.state.deps = dataclasses.replace(real, uow=conflicting)
        try:
            answer = await client.post(
                f"{page}/earn", data={"_csrf_token": token, "points": "5", "order_ref": "o-9"}
            )
        finally:
            site.app.state.deps = real
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert "Send the form again" in answer.text
        assert await site.rows_of(anna) == before


async def test_a_forms_address_opened_as_a_page_leads_to_the_page_the_form_is_on(
    site: Site,
) -> None:
    """Enter in the address bar after a refused form, a reload, a typed address: every form
    address that is not a page itself leads to its page instead of a bare 405."""
    anna, _ = shops(site)
    posted_only = sorted(
        {path for method, path in page_routes(site.app) if method == "POST"}
        - {path for method, path in page_routes(site.app) if method == "GET"}
    )
    assert "/customers/{customer_id:int}/earn" in posted_only
    async with logged_in(site, anna) as client:
        for path in posted_only:
            address = path.replace("{customer_id:int}", str(anna.customer_id)).replace(
                "{token_id:int}", "1"
            )
            answer = await client.get(address)
            assert answer.status_code == 303, address
            page = answer.headers["location"]
            assert address.startswith(page) and page != address, (address, page)
            assert (await client.get(page)).status_code == 200, page
        earn = await client.get(f"/customers/{anna.customer_id}/earn")
        assert earn.headers["location"] == f"/customers/{anna.customer_id}"
        refused = await client.get(
            f"/customers/{anna.customer_id}/earn", headers={"accept": "application/json"}
        )
        assert refused.status_code == 405  # not a browser: refused as before


async def test_destructive_actions_ask_first_and_change_nothing_until_confirmed(
    site: Site,
) -> None:
    """New PIN, Mark as registered, Revoke token, Deactivate and New webhook URL: the first
    post (a plain form, no JavaScript needed) only asks; its page sends the form confirmed."""
    anna, _ = shops(site)
    page = f"/customers/{anna.customer_id}"
    async with logged_in(site, anna) as client:
        token = await form_token(client, page)
        pin = await site.scalar("SELECT pin FROM customers WHERE id = :c", c=anna.customer_id)
        for action, button in [("pin", "Give a new PIN"), ("register", "Mark as registered")]:
            asked = await client.post(f"{page}/{action}", data={"_csrf_token": token})
            assert asked.status_code == 200, action
            assert f'<form method="post" action="{page}/{action}">' in asked.text
            assert f'<button type="submit" class="danger">{button}</button>' in asked.text
            assert f'class="cancel" href="{page}"' in asked.text
            assert (
                await site.scalar("SELECT pin FROM customers WHERE id = :c", c=anna.customer_id)
                == pin
            ), action
        done = await client.post(f"{page}/pin", data={"_csrf_token": token, "confirmed": "yes"})
        assert done.status_code == 303
        assert (
            await site.scalar("SELECT pin FROM customers WHERE id = :c", c=anna.customer_id) != pin
        )
        for action in ("deactivate", "webhook/rotate"):
            asked = await client.post(
                f"/integrations/ecomail/{action}", data={"_csrf_token": token}
            )
            assert asked.status_code == 200, action
            assert 'class="cancel" href="/integrations/ecomail"' in asked.text
