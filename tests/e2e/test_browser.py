"""A merchant's first session in a real headless Chromium, against a real ``ellity serve``.

The server runs as ``make run`` would (a fresh SQLite file, no REDIS_URL); the browser is
Debian's ``/usr/bin/chromium`` driven by Playwright.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from tests.processes import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_") and k != "REDIS_URL"}
    env["ELLITY_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'ellity.db'}"
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
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def submit(page: Page, form: str, values: dict[str, str], button: str) -> None:
    for name, value in values.items():
        await page.fill(f"{form} [name={name}]", value)
    await page.click(f"{form} button:has-text('{button}')")
    await page.wait_for_load_state()


async def test_a_merchant_sets_up_logs_in_earns_points_and_exports_them(
    server: str, browser: Browser, tmp_path: Path
) -> None:
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )

    await page.goto(server + "/")
    await expect(page).to_have_url(server + "/setup")
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
        "Create the programme",
    )
    await expect(page).to_have_url(server + "/login")
    await expect(page.locator(".flash")).to_contain_text("ready")

    await submit(
        page,
        "form[action='/login']",
        {"email": "anna@example.cz", "password": "a long password"},
        "Log in",
    )
    await expect(page).to_have_url(server + "/")
    await expect(page.locator("header")).to_contain_text("Kavárna U Anny")

    await page.click("nav >> text=Customers")
    await page.click("text=New customer")
    await submit(
        page,
        "form[action='/customers/new']",
        {"email": "jana@example.cz", "first_name": "Jana", "last_name": "Dvořáková"},
        "Create",
    )
    await expect(page).to_have_url(re.compile(r"/customers/\d+$"))
    await expect(page.locator("h1")).to_have_text("Jana Dvořáková")

    await submit(
        page,
        "form[action$='/earn']",
        {"points": "1250,50", "order_ref": "order-2024-001"},
        "Add points",
    )
    await expect(page.locator("#balance")).to_have_text("1 250,50")
    await expect(page.locator("table.list")).to_contain_text("order-2024-001")
    await expect(page.locator("#referral-link")).to_contain_text("https://anna.example.cz/?ref=")

    await page.click("nav >> text=Dashboard")
    await expect(page.locator("dd.issued")).to_have_text("1 250,50")
    bar = page.locator("svg rect.issued")
    await expect(bar).to_have_count(1)
    box = await bar.bounding_box()
    assert box is not None
    assert box["height"] > 50  # the only day with points is the chart's full height

    await page.click("nav >> text=Customers")
    await expect(page.locator("table.list")).to_contain_text("jana@example.cz")
    await page.click("summary:has-text('Export')")
    async with page.expect_download() as info:
        await page.click("text=Export points")
    download = await info.value
    assert re.fullmatch(
        r"ellity-kavarna-u-anny-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename
    )
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith('"email","first_name","last_name","ellity_credit"')
    assert any(
        "jana@example.cz" in line and "Dvořáková" in line and "1 250,50" in line
        for line in lines[1:]
    )

    assert problems == []  # no CSP violations, no script errors
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
    pages = [
        "/",
        "/customers",
        "/customers?q=jana",
        "/customers/new",
        customer,
        "/settings",
        "/api-tokens",
        "/integrations/ecomail",
        "/no-such-page",
    ]
    too_wide: list[str] = []
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        for path in pages:
            await page.goto(server + path)
            scroll, inner = await page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            name = path.strip("/").replace("/", "_").replace("?", "_") or "dashboard"
            await page.screenshot(path=tmp_path / f"{width}-{name}.png", full_page=True)
            if scroll > inner:
                too_wide.append(f"{path} at {width} px: {scroll} px wide")
    await context.close()
    assert not too_wide, "\n".join(too_wide)
