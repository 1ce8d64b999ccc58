"""A merchant's first session in a real headless Chromium, against a real ``ellity serve``.

The server runs as ``make run`` would (a fresh SQLite file, no REDIS_URL); the browser is
Debian's ``/usr/bin/chromium`` driven by Playwright.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from babel.messages.pofile import read_po
from playwright.async_api import Browser, Locator, Page, Route, async_playwright, expect

from ellity.web.i18n import catalog_path
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.processes import free_port
from tests.smtp_server import SmtpServer

CHROMIUM = Path("/usr/bin/chromium")
ECOMAIL_KEY = "anna-ecomail-key-7f3a9c"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serving(tmp_path: Path, **settings: str) -> Iterator[str]:
    """``ellity serve`` on a free port with a fresh SQLite file and ``settings`` (``ELLITY_*``
    variables); its address."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_") and k != "REDIS_URL"}
    env["ELLITY_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'ellity.db'}"
    env["ELLITY_SMTP_ALLOW_PRIVATE"] = "true"  # the test's SMTP server is on loopback
    env.update(settings)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ellity.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((tmp_path / "serve.log").read_text())
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path) as base:
        yield base


@pytest.fixture
def ecomail_server(tmp_path: Path) -> Iterator[str]:
    """``ellity serve`` (its own worker included) talking to the Ecomail emulator, on a port
    of its own, where Anna's account has two lists."""
    with Emulator() as emu, EmulatorServer(emu, port=0) as api:
        account = emu.add_account(ECOMAIL_KEY)
        account.add_list("Old newsletter")
        account.add_list("Loyal customers")
        with serving(tmp_path, ELLITY_ECOMAIL_API_URL=api.url) as base:
            yield base


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def expect_in_chart_view(shown: Locator) -> None:
    """``shown`` lies inside the visible part of its chart as the page opens (a chart wider
    than a phone scrolls; it must open where the news is)."""
    inner = await shown.bounding_box()
    outer = await shown.locator("xpath=ancestor::figure").bounding_box()
    assert inner is not None and outer is not None
    assert outer["x"] <= inner["x"], (inner, outer)
    assert inner["x"] + inner["width"] <= outer["x"] + outer["width"], (inner, outer)


async def submit(page: Page, form: str, values: dict[str, str], button: str) -> None:
    for name, value in values.items():
        await page.fill(f"{form} [name={name}]", value)
    await page.click(f"{form} button:has-text('{button}')")
    await page.wait_for_load_state()


# -- no untranslated text ---------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|<[^>]+>|&[a-z]+;")


def _phrases(text: str) -> list[str]:
    """The runs of a catalog text between its placeholders and tags, of three words or more
    (one or two words, "Ecomail", "PIN", "Port", may well be the same in both languages)."""
    return [" ".join(part.split()) for part in _PLACEHOLDER.split(text) if len(part.split()) >= 3]


def _catalog_phrases(language: str) -> set[str]:
    """What a page in the *other* language must not show: for Czech pages the English
    messages, for English pages their Czech translations."""
    with catalog_path("cs").open("rb") as source:
        czech = read_po(source, locale="cs")
    phrases: set[str] = set()
    for message in czech:
        if not message.id:
            continue
        texts = message.id if language == "cs" else message.string
        for text in [texts] if isinstance(texts, str) else texts:
            phrases.update(_phrases(text))
    return phrases


FOREIGN = {language: _catalog_phrases(language) for language in ("cs", "en")}
WORDS = {
    "cs": ["Zákazníci", "Nastavení", "Přehled", "Odhlásit se"],
    "en": ["Customers", "Settings", "Dashboard", "Log out"],
}


@dataclass
class Walk:
    """One merchant's walk through the pages, in one language at one width."""

    page: Page
    language: str
    width: int
    shots: Path
    seen: list[str] = field(default_factory=list)

    async def check(self, name: str) -> None:
        """The page is in the walk's language, shows no text of the other language, fits
        the width, and is saved as ``<language>-<width>-<name>.png``."""
        await self.page.wait_for_load_state()
        assert await self.page.get_attribute("html", "lang") == self.language
        text = " ".join((await self.page.inner_text("body")).split())
        title = await self.page.title()
        untranslated = sorted(p for p in FOREIGN[self.language] if p in text or p in title)
        assert untranslated == [], f"{name} in {self.language}: {untranslated}"
        shot = self.shots / f"{self.language}-{self.width}-{name}.png"
        await self.page.screenshot(path=str(shot), full_page=True)
        overflow = await self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} is {overflow}px wider than {self.width}px"
        self.seen.append(name)


LABELS = {
    "cs": {
        "create_programme": "Vytvořit program",
        "ready": "připravený",
        "log_in": "Přihlásit se",
        "customers": "Zákazníci",
        "new_customer": "Nový zákazník",
        "create": "Vytvořit",
        "add_points": "Připsat body",
        "added": "Body jsou připsané.",
        "dashboard": "Přehled",
        "settings": "Nastavení",
        "save_settings": "Uložit nastavení",
        "saved": "Nastavení je uložené.",
        "verify_key": "Ověřit klíč",
        "export": "Export",
        "export_points": "Exportovat body",
        "balance": "1\u00a0250,50",
        "spend_refused": "Zákazník má 1\u00a0250,50 bodů; 99\u00a0999 bodů nelze odebrat.",
        "new_pin": "Nový PIN",
        "give_new_pin": "Vydat nový PIN",
        "has_new_pin": "Zákazník má nový PIN.",
        "send_test_email": "Poslat zkušební e-mail",
        "test_email_sent": "Zkušební e-mail odešel na anna@example.cz.",
        "export_excel": "Exportovat pro Excel",
    },
    "en": {
        "create_programme": "Create the programme",
        "ready": "ready",
        "log_in": "Log in",
        "customers": "Customers",
        "new_customer": "New customer",
        "create": "Create",
        "add_points": "Add points",
        "added": "The points have been added.",
        "dashboard": "Dashboard",
        "settings": "Settings",
        "save_settings": "Save settings",
        "saved": "The settings are saved.",
        "verify_key": "Verify the key",
        "export": "Export",
        "export_points": "Export points",
        "balance": "1,250.50",
        "spend_refused": "The customer holds 1,250.50 points; 99,999 points cannot be taken.",
        "new_pin": "New PIN",
        "give_new_pin": "Give a new PIN",
        "has_new_pin": "The customer has a new PIN.",
        "send_test_email": "Send a test email",
        "test_email_sent": "The test email was sent to anna@example.cz.",
        "export_excel": "Export for Excel",
    },
}
BROWSER_LOCALES = {"cs": "cs-CZ", "en": "en-GB"}


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("language", ["cs", "en"])
async def test_a_merchant_walks_from_setup_to_the_export_in_either_language(
    server: str,
    browser: Browser,
    *,
    smtp: SmtpServer,
    tmp_path: Path,
    language: str,
    width: int,
) -> None:
    """Setup → customers → earn → settings → Ecomail → export, in Czech and in English, on a
    desktop and a phone; every page checked for untranslated text and screenshotted under
    ``tmp_path``. A Czech merchant's pages start in Czech; the English walk switches."""
    words = LABELS[language]
    context = await browser.new_context(
        accept_downloads=True,
        locale=BROWSER_LOCALES[language],
        viewport={"width": width, "height": 900},
    )
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    # the refused spend (409) and the missing page (404) are answers the walk asks for
    asked_for = re.compile(r"Failed to load resource: .* status of (409|404) ")
    walk = Walk(page, language, width, tmp_path)

    await page.goto(server + "/")
    await expect(page).to_have_url(server + "/setup")
    await walk.check("setup")
    await submit(
        page,
        "form[action='/setup']",
        {
            "name": "Kavárna U Anny",
            "shop_url": "https://anna.example.cz",
            "email": "anna@example.cz",
            "password": "a long password",
            "password_again": "a long password",
        },
        words["create_programme"],
    )
    await expect(page).to_have_url(server + "/login")
    await expect(page.locator(".flash")).to_contain_text(words["ready"])
    await walk.check("login")

    await submit(
        page,
        "form[action='/login']",
        {"email": "anna@example.cz", "password": "a long password"},
        words["log_in"],
    )
    await expect(page).to_have_url(server + "/")
    await expect(page.locator("header")).to_contain_text("Kavárna U Anny")
    assert await page.get_attribute("html", "lang") == "cs"  # the merchant's locale is cs
    if language == "en":
        await page.click("form.language button")  # no script needed: a plain form
        await expect(page).to_have_url(server + "/")
    for word in WORDS[language]:
        await expect(page.locator("header")).to_contain_text(word)
    await walk.check("dashboard-empty")

    await page.click(f"nav >> text={words['customers']}")
    await walk.check("customers-empty")
    await page.click(f"text={words['new_customer']}")
    await walk.check("customer-new")
    await submit(
        page,
        "form[action='/customers/new']",
        {"email": "jana@example.cz", "first_name": "Jana", "last_name": "Dvořáková"},
        words["create"],
    )
    await expect(page).to_have_url(re.compile(r"/customers/\d+$"))
    await expect(page.locator("h1")).to_have_text("Jana Dvořáková")

    await submit(
        page,
        "form[action$='/earn']",
        {"points": "1250,50", "order_ref": "order-2024-001"},
        words["add_points"],
    )
    await expect(page.locator(".flash")).to_have_text(words["added"])
    await expect(page.locator("#balance")).to_have_text(words["balance"])
    await expect(page.locator("table.list")).to_contain_text("order-2024-001")
    await expect(page.locator("#referral-link")).to_contain_text("https://anna.example.cz/?ref=")
    await walk.check("customer")
    await page.fill("form[action$='/spend'] [name=points]", "99999")
    await page.click("form[action$='/spend'] button[type=submit]")
    await page.wait_for_load_state()
    await expect(page.locator("form[action$='/spend'] .error")).to_have_text(words["spend_refused"])
    assert re.fullmatch(r".*/customers/\d+", page.url), page.url  # the page's own address
    await walk.check("customer-refused")
    await page.reload()  # asks nothing and sends nothing again: the page as it is now
    await expect(page.locator("form[action$='/spend'] .error")).to_have_count(0)
    await expect(page.locator("#balance")).to_have_text(words["balance"])

    # a destructive action asks first, on a page of its own (no script needed)
    customer_page = page.url
    old_pin = await page.locator("dt:text-is('PIN') + dd").inner_text()
    await page.click(f"button:has-text('{words['new_pin']}')")
    await expect(page.locator("#confirm button")).to_have_text(words["give_new_pin"])
    await walk.check("confirm")
    await page.click("#confirm a.cancel")  # the way back changes nothing
    await expect(page).to_have_url(customer_page)
    assert await page.locator("dt:text-is('PIN') + dd").inner_text() == old_pin
    await page.click(f"button:has-text('{words['new_pin']}')")
    await page.click("#confirm button")
    await expect(page).to_have_url(customer_page)
    await expect(page.locator(".flash")).to_have_text(words["has_new_pin"])
    assert await page.locator("dt:text-is('PIN') + dd").inner_text() != old_pin

    await page.click(f"nav >> text={words['dashboard']}")
    await expect(page.locator("dd.issued")).to_have_text(words["balance"])
    bar = page.locator("svg rect.issued")
    await expect(bar).to_have_count(1)
    box = await bar.bounding_box()
    assert box is not None
    assert box["height"] > 50 * min(1.0, width / 1280)  # the only day with points: full height
    await expect_in_chart_view(bar)  # today's bar, on a phone too
    await expect_in_chart_view(page.locator(".chart .nothing"))  # no expiries ahead yet
    await walk.check("dashboard")

    await page.click(f"nav >> text={words['settings']}")
    await walk.check("settings")
    await page.fill("[name=smtp_host]", "127.0.0.1")  # a real SMTP server, in this test
    await page.fill("[name=smtp_port]", str(smtp.port))
    await page.select_option("[name=smtp_security]", "none")
    await page.fill("[name=smtp_sender]", "shop@anna.example.cz")
    await page.click(f"button:has-text('{words['save_settings']}')")
    await page.wait_for_load_state()
    await expect(page.locator(".flash")).to_have_text(words["saved"])
    await page.click(f"#test-email button:has-text('{words['send_test_email']}')")
    await page.wait_for_load_state()
    await expect(page.locator(".flash")).to_contain_text(words["test_email_sent"])
    assert len(smtp.recorder.to("anna@example.cz")) == 1
    await walk.check("settings-test-email")

    await page.click("nav >> text=Ecomail")
    await expect(page.locator("form[action='/integrations/ecomail/key'] button")).to_have_text(
        words["verify_key"]
    )
    await walk.check("ecomail")

    await page.click("nav >> text=API tokens" if language == "en" else "nav >> text=API tokeny")
    await walk.check("api-tokens")

    await page.click(f"nav >> text={words['customers']}")
    await expect(page.locator("table.list")).to_contain_text("jana@example.cz")
    await walk.check("customers")
    await page.click(f"summary:has-text('{words['export']}')")
    async with page.expect_download() as info:
        await page.click(f"text={words['export_points']}")
    download = await info.value
    assert re.fullmatch(
        r"ellity-kavarna-u-anny-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename
    )
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith('"email","first_name","last_name","ellity_credit"')
    assert any(  # the export follows the merchant's locale, whatever the pages' language
        "jana@example.cz" in line and "Dvořáková" in line and "1 250,50" in line
        for line in lines[1:]
    )

    async with page.expect_download() as info:  # the export menu is still open
        await page.click(f"text={words['export_excel']}")
    excel = tmp_path / "excel.csv"
    await (await info.value).save_as(excel)
    raw = excel.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel reads UTF-8 by
    rows = list(csv.reader(io.StringIO(raw[3:].decode("utf-8")), delimiter=";"))
    assert rows[0][:3] == ["email", "first_name", "last_name"]
    jana = next(row for row in rows[1:] if row[0] == "jana@example.cz")
    assert jana[1:4] == ["Jana", "Dvořáková", "1250,50"]  # the merchant's locale: cs

    await page.goto(server + "/no-such-page")
    await walk.check("not-found")

    assert len(walk.seen) == 15
    # no CSP violations, no script errors
    assert [p for p in problems if not asked_for.match(p)] == []
    await context.close()


ECOMAIL_TEXTS = {
    "cs": {
        "in_list": "V seznamu.",
        "sent": "odeslána",
        "title": "Naposledy odeslané události",
        "reconciled": "hotovo",
    },
    "en": {
        "in_list": "In the list.",
        "sent": "sent",
        "title": "Last events sent",
        "reconciled": "done",
    },
}


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("language", ["cs", "en"])
async def test_a_customers_ecomail_sync_state_reads_well_in_either_language(
    ecomail_server: str, browser: Browser, *, tmp_path: Path, language: str, width: int
) -> None:
    """With Ecomail connected (the emulator), a customer who gave consent is added to the list
    and their points change reaches Ecomail as an event: the customer page's Ecomail section
    and the integration page's events sent, on a desktop and a phone, screenshotted under
    ``tmp_path``."""
    server, texts = ecomail_server, ECOMAIL_TEXTS[language]
    context = await browser.new_context(
        locale=BROWSER_LOCALES[language], viewport={"width": width, "height": 900}
    )
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    walk = Walk(page, language, width, tmp_path)
    await page.goto(server + "/setup")
    await submit(
        page,
        "form[action='/setup']",
        {
            "name": "Kavárna U Anny",
            "shop_url": "https://anna.example.cz",
            "email": "anna@example.cz",
            "password": "a long password",
            "password_again": "a long password",
        },
        LABELS[language]["create_programme"],
    )
    await submit(
        page,
        "form[action='/login']",
        {"email": "anna@example.cz", "password": "a long password"},
        LABELS[language]["log_in"],
    )
    if language == "en":
        await page.click("form.language button")
        await expect(page.locator("html")).to_have_attribute("lang", "en")

    await page.goto(server + "/integrations/ecomail")
    await page.fill("[name=api_key]", ECOMAIL_KEY)
    await page.click("form[action='/integrations/ecomail/key'] button[type=submit]")
    await page.wait_for_load_state()
    chosen = page.locator("[name=list_id] option", has_text="Loyal customers")
    await page.select_option("[name=list_id]", await chosen.get_attribute("value"))
    await page.click("form[action='/integrations/ecomail/activate'] button[type=submit]")
    await page.wait_for_load_state()
    await expect(page.locator("#state")).to_have_text("active" if language == "en" else "aktivní")

    await page.goto(server + "/customers/new")
    await page.fill("[name=email]", "jana.dvorakova@example.cz")
    await page.fill("[name=first_name]", "Jana")
    await page.fill("[name=last_name]", "Dvořáková")
    await page.click("form[action='/customers/new'] button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/customers/\d+$"))
    customer = page.url
    await page.check("form[action$='/consent'] input[value=granted]")
    await page.click("form[action$='/consent'] button[type=submit]")
    await page.wait_for_load_state()
    await submit(
        page,
        "form[action$='/earn']",
        {"points": "1250,50", "order_ref": "order-2024-001"},
        LABELS[language]["add_points"],
    )
    deadline = time.monotonic() + 30  # the server's own worker writes the contact, then the event
    newest = page.locator("#ecomail-events tbody tr").first
    while True:
        await page.goto(customer)
        if await newest.count() and texts["sent"] in await newest.inner_text():
            break
        assert time.monotonic() < deadline, await page.inner_text("#ecomail")
        await page.wait_for_timeout(500)
    await expect(page.locator("#ecomail-state")).to_contain_text(texts["in_list"])
    await expect(newest).to_contain_text('"order_ref":"order-2024-001"')
    await expect(newest).to_contain_text("credit")
    await page.locator("#ecomail").scroll_into_view_if_needed()
    await walk.check("customer-ecomail")

    await page.goto(server + "/integrations/ecomail")
    await expect(page.locator("#sent-events-title")).to_have_text(texts["title"])
    await expect(page.locator("#sent-events")).to_contain_text("jana.dvorakova@example.cz")
    await walk.check("ecomail-active")

    # "Reconcile now": the server's own worker reads the list and reports the run
    await page.click("form[action='/integrations/ecomail/reconcile'] button[type=submit]")
    await expect(page.locator("#reconcile-runs")).to_be_visible()
    deadline = time.monotonic() + 60
    runs = page.locator("#reconcile-runs tbody tr").first
    while texts["reconciled"] not in await runs.inner_text():
        assert time.monotonic() < deadline, await page.inner_text("#reconcile-runs")
        await page.wait_for_timeout(500)
        await page.goto(server + "/integrations/ecomail")
    await page.locator("#reconciliation").scroll_into_view_if_needed()
    await walk.check("ecomail-reconciled")
    assert problems == []
    await context.close()


async def test_the_api_documentation_works_without_internet(server: str, browser: Browser) -> None:
    """Every request to another host is refused: Swagger UI, its styles and the schema all
    come from Ellity, under the pages' Content-Security-Policy (a violation is a console
    error)."""
    context = await browser.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    elsewhere: list[str] = []

    async def only_ellity(route: Route) -> None:
        if route.request.url.startswith(server + "/"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_ellity)
    async with httpx.AsyncClient() as client:
        schema = await client.get(f"{server}/schema/openapi.json", timeout=10)
    operations = schema.json()["paths"]
    expected = sum(len(methods) for methods in operations.values())

    for address in ("/schema", "/schema/swagger", "/schema/redoc"):
        answer = await page.goto(server + address)
        assert answer is not None
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Ellity")
        await expect(page.locator(".opblock")).to_have_count(expected)
    assert page.url == server + "/schema/swagger"  # ReDoc's address leads to the viewer

    await page.locator(".opblock-summary").first.click()
    await expect(page.locator(".opblock-body").first).to_be_visible()
    assert elsewhere == []
    assert problems == []
    await context.close()


WIDTHS = (360, 390, 768, 1280, 1440)


async def test_no_page_scrolls_sideways_from_phone_to_desktop_widths(
    server: str, browser: Browser, tmp_path: Path
) -> None:
    """Every page at 360-1440 px: the document is no wider than the window (a phone never
    scrolls sideways). Screenshots of each page and width go to the test's folder."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(server + "/setup")
    await submit(
        page,
        "form[action='/setup']",
        {
            "name": "Pražírna a kavárna U Anny s dlouhým jménem",
            "shop_url": "https://www.prazirna-a-kavarna-u-anny.example.cz",
            "email": "anna.novakova-dvorakova@prazirna-a-kavarna-u-anny.example.cz",
            "password": "a long password",
            "password_again": "a long password",
        },
        "Create the programme",
    )
    await submit(
        page,
        "form[action='/login']",
        {
            "email": "anna.novakova-dvorakova@prazirna-a-kavarna-u-anny.example.cz",
            "password": "a long password",
        },
        "Log in",
    )
    await page.click("form.language button")  # the Czech merchant's pages start in Czech
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.goto(server + "/customers/new")
    await submit(
        page,
        "form[action='/customers/new']",
        {
            "email": "jana.dvorakova-novotna@velmi-dlouha-domena-obchodu.example.cz",
            "first_name": "Jana",
            "last_name": "Dvořáková-Novotná",
        },
        "Create",
    )
    customer = page.url.removeprefix(server)
    await submit(
        page,
        "form[action$='/earn']",
        {"points": "1250,50", "order_ref": "order-2024-001"},
        "Add points",
    )
    # a programme being set up: the dashboard shows the first-run checklist
    await page.goto(server + "/")
    await expect(page.locator("#first-run li")).to_have_count(5)
    customer_id = customer.rsplit("/", 1)[1]
    pages = [
        "/",
        "/customers",
        "/customers?q=jana",
        "/customers/new",
        customer,
        "/settings",
        "/api-tokens",
        "/integrations/ecomail",
        f"/integrations/ecomail?customer={customer_id}",  # the fields panel with values
        "/no-such-page",
    ]
    too_wide: list[str] = []
    for language in ("en", "cs"):  # Czech texts are longer
        if language == "cs":
            await page.goto(server + "/")
            await page.click("form.language button")
            await expect(page.locator("html")).to_have_attribute("lang", "cs")
        for width in WIDTHS:
            await page.set_viewport_size({"width": width, "height": 900})
            for path in pages:
                await page.goto(server + path)
                scroll, inner = await page.evaluate(
                    "[document.documentElement.scrollWidth, window.innerWidth]"
                )
                name = re.sub(r"[/?=]", "_", path.strip("/")) or "dashboard"
                shot = tmp_path / f"{language}-{width}-{name}.png"
                await page.screenshot(path=shot, full_page=True)
                if scroll > inner:
                    too_wide.append(f"{path} in {language} at {width} px: {scroll} px wide")
    await context.close()
    assert not too_wide, "\n".join(too_wide)
