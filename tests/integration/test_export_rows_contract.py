"""The export's rows written by the database are byte for byte those of the Python path.

``SqlCustomerRowSource`` formats every cell in SQL; the definition of the file is the contact
snapshot (``contact_snapshot``) encoded by ``CsvTableEncoder``. The same customers, with the
most awkward values the storage can hold, are exported both ways, for programme looks that
exercise every rule (locales, links with and without the shop URL, formulas, ``%`` and ``"``
in templates), on SQLite, on PostgreSQL and on the in-memory fake that defines the bytes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ellity.adapters.csv_export import FORMULA_STARTS, CsvTableEncoder
from ellity.adapters.sql.database import Database
from ellity.adapters.sql.export_rows import FORMULA_ABOVE, FORMULA_GLOB, SqlCustomerRowSource
from ellity.adapters.sql.tables.customers import customers as customers_table
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.contact import CustomerLoyalty, ProgrammeLook, contact_snapshot
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import customers, export, merchants, points
from ellity.ports.export import CustomerRowSource
from ellity.ports.storage import UnitOfWorkFactory
from tests.conftest import BACKENDS
from tests.fakes import (
    FakeClock,
    FakePasswordHasher,
    InMemoryCustomerRowSource,
    InMemoryStore,
)

CLOCK, RNG = SystemClock(), SecretsRandom()
#: Thirteen months ago: points earned then are past their expiry today (12 months' validity).
LONG_AGO = FakeClock(CLOCK.now() - timedelta(days=400))
TODAY = CLOCK.now().astimezone(ZoneInfo("Europe/Prague")).date()
#: A day before every stored expiry date, so that every row reads its stored summary.
BEFORE_EVERY_EXPIRY = date(1, 1, 1)
ENCODER = CsvTableEncoder()
P = Points.parse

SHOP = "https://shop.example.cz"


@dataclass
class Backend:
    name: str
    uow: UnitOfWorkFactory
    rows: CustomerRowSource
    database: Database | None  # None: the in-memory fake, which has no raw rows


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        store = InMemoryStore()
        return Backend("memory", store.unit_of_work, InMemoryCustomerRowSource(store), None)
    database: Database = request.getfixturevalue(f"clean_{request.param}")
    return Backend(
        request.param, SqlUnitOfWorkFactory(database), SqlCustomerRowSource(database), database
    )


# -- the customers --------------------------------------------------------------------------


async def make_merchant(
    uow: UnitOfWorkFactory, slug: str, *, locale: str = "cs", validity_months: int = 12
) -> MerchantId:
    merchant = await merchants.create_merchant(
        slug=slug,
        settings=MerchantSettings(
            name=slug,
            shop_url=SHOP,
            locale=locale,  # type: ignore[arg-type]
            validity_months=validity_months,
        ),
        admin_email=f"admin@{slug}.example.cz",
        admin_password="a long password",
        uow=uow(),
        clock=CLOCK,
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    return merchant.id


async def add(uow: UnitOfWorkFactory, merchant_id: MerchantId, n: int, **fields: Any) -> CustomerId:
    fields.setdefault("shop_customer_id", f"shop-{n}")
    made = await customers.upsert_customer(
        merchant_id, customers.CustomerInput(**fields), uow=uow(), clock=CLOCK, rng=RNG
    )
    assert made.view.customer.id is not None
    return made.view.customer.id


#: Names the services accept: quotes, separators, formula starts, printf directives,
#: Czech diacritics, emoji, empty.
NAMES = [
    ('Nová, "Ančí"', "Ž;luťoučký kůň"),
    ('=HYPERLINK("http://evil.example", "Click")', "+420 123 456"),
    ("-2+3", "@SUM(A1:A9)"),
    ("%s%n%d%w%%", "100 % jistě"),
    ("Jiří 🎉", "Łódź ǅ ﬁ \u200b"),
    ("", ""),
    ("?", "'single"),
    ('"', '""'),
    ("Ann", "-"),
]


async def seed_through_services(
    uow: UnitOfWorkFactory, shop: MerchantId, forever: MerchantId
) -> None:
    """Customers of both merchants as the services make them, with every kind of balance."""
    ids = []
    for n, (first, last) in enumerate(NAMES):
        email = None if n % 4 == 3 else f"c{n}@shop.example.cz"
        ids.append(
            await add(
                uow, shop, n, email=email, first_name=first, last_name=last, registered=n % 3 == 0
            )
        )
    earn = [
        ("0.50", None),
        ("1250.50", "0.25"),  # a spend with hundredths: the last change is -0,25
        ("1000000", "120"),
        ("999.99", None),
        ("1000", "1000"),  # spent to nothing: balance 0, nothing expiring
        ("0.01", None),
        ("123456.78", "0.78"),
    ]
    for customer_id, (amount, spent) in zip(ids, earn, strict=False):
        await points.earn_points(
            shop, customer_id, P(amount), order_ref=f"o-{customer_id}", uow=uow(), clock=CLOCK
        )
        if spent is not None:
            await points.spend_points(shop, customer_id, P(spent), uow=uow(), clock=CLOCK)
    last_earner = ids[len(earn) - 1]  # 123 456,00 after the spend: now 123 455,99
    await points.adjust_points(shop, last_earner, P("-0.01"), note="x", uow=uow(), clock=CLOCK)
    # Points past their expiry that no nightly run has expired yet: beside valid ones, with
    # hundredths, and alone (nothing valid left).
    old_amounts = ("300.25", "0.75", "1", "50", "0.01", "0.99", "40")
    for customer_id, amount in zip(ids[1:], old_amounts, strict=False):
        await points.earn_points(
            shop, customer_id, P(amount), order_ref=f"old-{customer_id}", uow=uow(), clock=LONG_AGO
        )
    # Points that never expire: a balance without a next expiration.
    kept = await add(uow, forever, 100, email="=kept@forever.example.cz", first_name="Věra")
    await points.earn_points(forever, kept, P("77.70"), order_ref="f-1", uow=uow(), clock=CLOCK)
    await add(uow, forever, 101, email="+none@forever.example.cz")


#: Values only another tool (or an older version) could have stored: control characters,
#: PINs and codes that start like formulas, a registered member who kept a PIN, negative
#: balances, amounts on both sides of every grouping and rounding boundary, old dates.
RAW_ROWS: list[dict[str, Any]] = [
    {"first_name": "\t=1+1", "last_name": "\r=2+2", "email": "-minus@x.cz"},
    {"first_name": "line\nbreak", "last_name": "cr\rlf\r\nend", "email": "@at@x.cz"},
    {"first_name": " lead", "last_name": "tab\tin", "email": None},
    {"registered": True, "pin": "123456", "balance_cents": -50},
    {"registered": False, "pin": None, "balance_cents": -1},
    {"registered": False, "pin": "-12", "balance_cents": -99, "referral_code": "=ABC"},
    {"pin": "+1", "balance_cents": -100, "referral_code": '"Q"'},
    {"pin": "@", "balance_cents": -101, "referral_code": "-1"},
    {"balance_cents": -99999, "next_expiry_on": date(999, 1, 5), "next_expiry_cents": 5},
    {"balance_cents": -100000, "next_expiry_on": date(2030, 12, 31), "next_expiry_cents": 0},
    {"balance_cents": 99999, "last_change_on": date(2024, 2, 29), "last_change_cents": -1},
    {"balance_cents": 100000, "last_change_on": date(2024, 2, 29), "last_change_cents": -100},
    {"balance_cents": 123456789012, "next_expiry_on": date(2025, 1, 1)},
    {"balance_cents": -123456789012, "last_change_cents": -123456789012},
    {"balance_cents": 100000000, "next_expiry_cents": 99999999, "last_change_cents": 100000},
    {"balance_cents": 0, "next_expiry_on": None, "last_change_on": None},
]


async def seed_raw(database: Database, uow: UnitOfWorkFactory, shop: MerchantId) -> None:
    """Customers made by the services, then rewritten the way only raw SQL can."""
    for n, values in enumerate(RAW_ROWS):
        customer_id = await add(uow, shop, 1000 + n, email=f"raw{n}@shop.example.cz")
        changes = dict(values)
        if "last_change_cents" in changes and "last_change_on" not in changes:
            changes["last_change_on"] = date(2025, 6, 30)
        async with database.write_engine.begin() as conn:
            await conn.execute(
                customers_table.update().where(customers_table.c.id == customer_id).values(changes)
            )


async def seeded(backend: Backend) -> tuple[MerchantId, MerchantId]:
    shop = await make_merchant(backend.uow, "shop")
    forever = await make_merchant(backend.uow, "forever", locale="en", validity_months=0)
    await seed_through_services(backend.uow, shop, forever)
    if backend.database is not None:
        await seed_raw(backend.database, backend.uow, shop)
    return shop, forever


# -- the two ways ---------------------------------------------------------------------------


async def all_loyalty(
    uow: UnitOfWorkFactory, merchant_id: MerchantId, today: date = TODAY
) -> list[CustomerLoyalty]:
    found: list[CustomerLoyalty] = []
    while True:
        after_id = found[-1].customer_id if found else BEFORE_FIRST_CUSTOMER
        async with uow(read_only=True) as unit:
            page = await unit.views.loyalty_page(
                merchant_id, after_id=after_id, limit=7, today=today
            )
        if not page:
            return found
        found += page


async def python_bytes(
    uow: UnitOfWorkFactory, merchant_id: MerchantId, look: ProgrammeLook, today: date = TODAY
) -> bytes:
    """The definition: each customer's contact snapshot, encoded by ``CsvTableEncoder``."""
    rows = [
        export.export_row(contact_snapshot(loyalty, look))
        for loyalty in await all_loyalty(uow, merchant_id, today)
    ]
    return ENCODER.rows(export.EXPORT_TABLE, rows)


async def pages_of(
    rows: CustomerRowSource,
    merchant_id: MerchantId,
    look: ProgrammeLook,
    *,
    batch_size: int = 1000,
    today: date = TODAY,
) -> list[tuple[bytes, int]]:
    return [
        (page.data, page.count)
        async for page in rows.pages(merchant_id, look, batch_size=batch_size, today=today)
    ]


def lines(data: bytes) -> list[bytes]:
    """Lines of CSV for a readable diff (a quoted cell may hold line breaks: fine here)."""
    return data.split(b"\r\n")


LOOKS = {
    "cs": ProgrammeLook("cs", SHOP, "{shop_url}/?ref={code}"),
    "en": ProgrammeLook("en", SHOP, "{shop_url}/?ref={code}"),
    "no shop url": ProgrammeLook("cs", "", "{shop_url}/?ref={code}"),
    "trailing slashes": ProgrammeLook("en", SHOP + "///", "{shop_url}/r/{code}"),
    "only a slash": ProgrammeLook("en", "/", "{shop_url}/r/{code}"),
    "no {shop_url} and no shop url": ProgrammeLook("cs", "", "https://fixed.example/?r={code}"),
    "code first": ProgrammeLook("en", SHOP, "{code}@{shop_url}"),
    "code twice": ProgrammeLook("cs", SHOP, "{shop_url}/?ref={code}&again={code}"),
    "code only twice": ProgrammeLook("cs", SHOP, "{code}{code}"),
    "no code": ProgrammeLook("en", SHOP, "{shop_url}/join"),
    "formula template": ProgrammeLook("cs", SHOP, '=HYPERLINK("{shop_url}/{code}", "%s")'),
    "percent and quotes": ProgrammeLook("en", SHOP + "/", '{shop_url}/?r={code}&p=100%25&q="x"'),
    "shop url holds {code}": ProgrammeLook("cs", "https://x.cz/{code}", "{shop_url}?r={code}"),
    "tab first": ProgrammeLook("en", SHOP, "\t{shop_url}/{code}"),
}


@pytest.mark.parametrize("look", LOOKS.values(), ids=LOOKS.keys())
async def test_the_rows_are_the_bytes_of_the_python_path(
    backend: Backend, look: ProgrammeLook
) -> None:
    shop, forever = await seeded(backend)
    for merchant_id in (shop, forever):
        for today in (TODAY, BEFORE_EVERY_EXPIRY):
            expected = await python_bytes(backend.uow, merchant_id, look, today)
            pages = await pages_of(backend.rows, merchant_id, look, today=today)
            written = b"".join(data for data, _ in pages)
            assert lines(written) == lines(expected)
            assert written == expected


@pytest.mark.parametrize("batch_size", [1, 4, 10_000])
async def test_pages_hold_at_most_batch_size_customers_in_id_order(
    backend: Backend, batch_size: int
) -> None:
    shop, _ = await seeded(backend)
    look = LOOKS["cs"]
    pages = await pages_of(backend.rows, shop, look, batch_size=batch_size)
    total = len(await all_loyalty(backend.uow, shop))
    assert [count for _, count in pages] == [
        min(batch_size, total - start) for start in range(0, total, batch_size)
    ]
    assert b"".join(data for data, _ in pages) == await python_bytes(backend.uow, shop, look)


async def test_a_merchant_without_customers_has_no_pages(backend: Backend) -> None:
    empty = await make_merchant(backend.uow, "empty")
    await seeded(backend)
    assert await pages_of(backend.rows, empty, LOOKS["cs"]) == []


async def test_the_export_is_the_same_whoever_writes_the_rows(backend: Backend) -> None:
    shop, forever = await seeded(backend)
    for merchant_id in (shop, forever):
        with_rows = await collect(
            export.export_customers(
                merchant_id,
                uow_factory=backend.uow,
                encoder=ENCODER,
                clock=CLOCK,
                rows=backend.rows,
            )
        )
        by_python = await collect(
            export.export_customers(
                merchant_id, uow_factory=backend.uow, encoder=ENCODER, clock=CLOCK
            )
        )
        assert b"".join(with_rows) == b"".join(by_python)
        assert len(with_rows) == len(by_python)


async def collect(chunks: Any) -> Sequence[bytes]:
    return [chunk async for chunk in chunks]


async def test_rows_in_another_format_are_refused(backend: Backend) -> None:
    shop, _ = await seeded(backend)

    class Other(CsvTableEncoder):
        format = "csv-but-not-this-one"

    chunks = export.export_customers(
        shop, uow_factory=backend.uow, encoder=Other(), clock=CLOCK, rows=backend.rows
    )
    with pytest.raises(ValueError, match="cannot go into"):
        await anext(chunks)


def test_the_sqlite_test_for_a_formula_start_matches_formula_starts() -> None:
    conn = sqlite3.connect(":memory:")
    samples = [chr(code) + "x" for code in range(1, 0x250)] + ["", "A", "é", "🎉"]
    for text in samples:
        (matched,) = conn.execute(
            "SELECT ? < ? AND ? GLOB ?", (text, FORMULA_ABOVE, text, FORMULA_GLOB)
        ).fetchone()
        assert bool(matched) == text.startswith(FORMULA_STARTS), repr(text)
