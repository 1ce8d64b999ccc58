"""Storage behind the merchant pages, on the fake, SQLite and PostgreSQL alike: the customer
search and its keyset paging, the dashboard aggregates, staff look-ups, the first-run insert,
and the shared session and log-in attempt stores."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import Database, create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.sql.web_state import SqlLoginAttempts, SqlSessionStore
from ellity.domain.model.activity import (
    DayTotals,
    ExpiryForecast,
    ExpiryTotal,
    KeptDay,
    day_periods,
)
from ellity.domain.model.consent import ConsentCounts, ConsentSource, MarketingConsent
from ellity.domain.model.customer_query import parse_customer_query
from ellity.domain.model.first_run import SetupFacts
from ellity.domain.model.ids import CustomerId, MerchantId, StaffId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import Notification, SubscriptionChange
from ellity.domain.services import customers, merchants, points
from ellity.ports.storage import UnitOfWorkFactory
from ellity.ports.web_state import LoginAttempts, SessionStore
from tests.conftest import BACKENDS, admin_statements, empty_tables, postgres_admin_url
from tests.fakes import (
    FakeClock,
    FakePasswordHasher,
    FakeRandom,
    InMemoryLoginAttempts,
    InMemorySessionStore,
)

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
TODAY = NOW.date()


async def make_merchant(
    uow_factory: UnitOfWorkFactory, slug: str, **settings: object
) -> MerchantId:
    merchant = await merchants.create_merchant(
        slug=slug,
        settings=MerchantSettings(name=slug.title(), **settings),  # type: ignore[arg-type]
        admin_email=f"Admin@{slug}.example.cz",
        admin_password="a long password",
        uow=uow_factory(),
        clock=FakeClock(NOW),
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    return merchant.id


async def add(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    email: str | None,
    first: str,
    last: str,
) -> CustomerId:
    result = await customers.upsert_customer(
        merchant_id,
        customers.CustomerInput(
            email=email, first_name=first, last_name=last, shop_customer_id=f"{email}/{first}"
        ),
        uow=uow_factory(),
        clock=FakeClock(NOW),
        rng=FakeRandom(),
    )
    assert result.view.customer.id is not None
    return result.view.customer.id


async def found(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    text: str,
    after: CustomerId | None = None,
) -> list[int]:
    async with uow_factory(read_only=True) as uow:
        rows = await uow.views.search_customers(
            merchant_id, parse_customer_query(text), after_id=after, limit=100, today=TODAY
        )
    return [row.customer_id for row in rows]


async def all_pages(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, text: str
) -> list[int]:
    """Page through with pages of 2, each from the previous page's last id."""
    query = parse_customer_query(text)
    seen: list[int] = []
    after: CustomerId | None = None
    while True:
        async with uow_factory(read_only=True) as uow:
            page = await uow.views.search_customers(
                merchant_id, query, after_id=after, limit=2, today=TODAY
            )
        if not page:
            return seen
        seen += [row.customer_id for row in page]
        after = page[-1].customer_id


async def test_the_search_finds_by_email_prefix_name_prefix_full_name_and_referral_code(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop")
    other = await make_merchant(uow_factory, "other")
    ann = await add(uow_factory, shop, "ann@example.cz", "Ann", "Nováková")
    anna = await add(uow_factory, shop, "anna@example.cz", "Anna", "Svobodová")
    jan = await add(uow_factory, shop, "jan@example.cz", "Jan", "Novák")
    karel = await add(uow_factory, shop, None, "Karel", "Annus")
    await add(uow_factory, other, "ann@example.cz", "Ann", "Nováková")  # never found for shop

    assert await found(uow_factory, shop, "") == [karel, jan, anna, ann]  # newest first
    assert await found(uow_factory, shop, "ANN@") == [ann]
    assert await found(uow_factory, shop, "ann@example.cz") == [ann]
    assert await found(uow_factory, shop, "ja@") == []
    # one word: last names first (in key order), then first names, then emails
    assert await found(uow_factory, shop, "ann") == [karel, ann, anna]
    assert await found(uow_factory, shop, "NOVÁK") == [jan, ann]
    assert await found(uow_factory, shop, "nov") == [jan, ann]
    assert await found(uow_factory, shop, "jan nov") == [jan]
    assert await found(uow_factory, shop, "novák jan") == [jan]
    assert await found(uow_factory, shop, "x") == []

    async with uow_factory(read_only=True) as uow:
        code = (await uow.customers.get(shop, anna)).referral_code
        by_code = await uow.views.search_customers(
            shop, parse_customer_query(code.lower()), after_id=None, limit=10, today=TODAY
        )
    assert [row.customer_id for row in by_code] == [anna]


async def test_keyset_pages_of_every_search_list_each_customer_once_in_order(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop")
    ids = [
        await add(uow_factory, shop, f"{first.lower()}.{last.lower()}@example.cz", first, last)
        for first, last in [
            ("Nora", "Adams"),
            ("Ann", "Novak"),
            ("Noah", "Novak"),
            ("Bea", "Nolan"),
            ("Nina", "Brown"),
            ("Ned", "Nash"),
            ("Zoe", "Smith"),
        ]
    ]
    for text in ("", "no", "n", "novak", "noah novak", "nora.adams@", "@"):
        whole = await found(uow_factory, shop, text)
        assert await all_pages(uow_factory, shop, text) == whole, text
        assert len(set(whole)) == len(whole)
    # Nolan, Novak, Novak by last name; then Nora by first name (Noah matched already)
    assert await found(uow_factory, shop, "no") == [ids[3], ids[1], ids[2], ids[0]]
    assert await found(uow_factory, shop, "", after=ids[3]) == [ids[2], ids[1], ids[0]]


async def pages_back(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, text: str, last_page: list[int]
) -> list[list[int]]:
    """From ``last_page`` back to the first page, pages of 2, each before the first id of
    the page after it."""
    query = parse_customer_query(text)
    pages = [last_page]
    while True:
        async with uow_factory(read_only=True) as uow:
            page = await uow.views.search_customers(
                merchant_id,
                query,
                after_id=None,
                before_id=CustomerId(pages[0][0]),
                limit=2,
                today=TODAY,
            )
        if not page:
            return pages
        pages.insert(0, [row.customer_id for row in page])


async def czech_shop(uow_factory: UnitOfWorkFactory) -> tuple[MerchantId, dict[str, CustomerId]]:
    shop = await make_merchant(uow_factory, "shop")
    people = {
        "jiri": ("jiri@kavovar.cz", "Jiří", "Novák"),
        "ruzena": ("ruzena.r@Kavovar.CZ", "Růžena", "Růžičková"),
        "pavel": ("pavel@jinde.cz", "Pavel", "Chmelař"),
        "cyril": ("cyril@kavarna.cz", "Cyril", "Černý"),
        "hana": ("hana@jinde.cz", "Hana", "Horáková"),
        "dana": (None, "Dana", "Dvořáková"),
    }
    return shop, {
        name: await add(uow_factory, shop, email, first, last)
        for name, (email, first, last) in people.items()
    }


async def test_the_search_ignores_accents_and_case_and_finds_by_domain(
    uow_factory: UnitOfWorkFactory,
) -> None:
    await search_as_czechs_type(uow_factory)


async def search_as_czechs_type(uow_factory: UnitOfWorkFactory) -> None:
    shop, c = await czech_shop(uow_factory)
    assert await found(uow_factory, shop, "novak") == [c["jiri"]]
    assert await found(uow_factory, shop, "NOVÁK") == [c["jiri"]]
    # last names first, then first names
    assert await found(uow_factory, shop, "ruz") == [c["ruzena"]]
    assert await found(uow_factory, shop, "ruzena") == [c["ruzena"]]
    assert await found(uow_factory, shop, "jiri novak") == [c["jiri"]]
    assert await found(uow_factory, shop, "Novák Jiří") == [c["jiri"]]
    assert await found(uow_factory, shop, "@kavovar.cz") == [c["jiri"], c["ruzena"]]
    assert await found(uow_factory, shop, "@KAV") == [c["cyril"], c["jiri"], c["ruzena"]]
    assert await found(uow_factory, shop, "@jinde") == [c["pavel"], c["hana"]]  # then by id
    assert await found(uow_factory, shop, "ruzena.r@kav") == [c["ruzena"]]
    # code-point order of the keys, whatever the database's collation: "ch" is c, h
    assert await found(uow_factory, shop, "c") == [c["cyril"], c["pavel"]]  # cerny, chmelar
    assert await found(uow_factory, shop, "ch") == [c["pavel"]]
    assert await found(uow_factory, shop, "cerny") == [c["cyril"]]
    assert await found(uow_factory, shop, "d") == [c["dana"]]


async def test_pages_read_backwards_are_the_pages_read_forwards_and_counts_match(
    uow_factory: UnitOfWorkFactory,
) -> None:
    await pages_both_ways(uow_factory)


async def pages_both_ways(uow_factory: UnitOfWorkFactory) -> None:
    shop, _ = await czech_shop(uow_factory)
    for first, last in [("Nora", "Adams"), ("Ann", "Novak"), ("Noah", "Novák"), ("Bea", "Nolan")]:
        await add(uow_factory, shop, f"{first.lower()}@example.cz", first, last)
    for text in ("", "no", "n", "c", "h", "novak", "noah novak", "@", "@j", "nobody"):
        whole = await found(uow_factory, shop, text)
        forward = [whole[i : i + 2] for i in range(0, len(whole), 2)]
        if forward:
            assert await pages_back(uow_factory, shop, text, forward[-1]) == forward, text
        async with uow_factory(read_only=True) as uow:
            query = parse_customer_query(text)
            assert await uow.views.count_customers(shop, query, at_most=100) == len(whole), text
            capped = await uow.views.count_customers(shop, query, at_most=2)
        assert capped == min(len(whole), 3), text  # it stops counting at at_most + 1


@pytest.fixture(scope="module")
async def czech_collated_postgres() -> AsyncIterator[Database]:
    """A PostgreSQL database created with the Czech ICU collation, where ``ch`` sorts after
    ``h`` (as a Czech merchant's database may well be)."""
    name = f"ellity_test_cs_{os.getpid()}"
    await admin_statements(
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'cs-CZ'",
    )
    url = make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(migrate.upgrade, url)
    database = create_database(url)
    try:
        yield database
    finally:
        await database.dispose()
        await admin_statements(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_the_search_is_the_same_on_a_database_with_czech_collation(
    czech_collated_postgres: Database,
) -> None:
    async with czech_collated_postgres.engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT 'ch' > 'h' AND 'c' < 'd'"))  # Czech order
    uow_factory = SqlUnitOfWorkFactory(czech_collated_postgres)
    await search_as_czechs_type(uow_factory)
    await empty_tables(czech_collated_postgres)
    await pages_both_ways(uow_factory)


async def test_a_cursor_from_another_merchant_gives_an_empty_page(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop")
    other = await make_merchant(uow_factory, "other")
    await add(uow_factory, shop, "ann@example.cz", "Ann", "Novak")
    foreign = await add(uow_factory, other, "ann@example.cz", "Ann", "Novak")
    assert await found(uow_factory, shop, "ann", after=foreign) == []


async def test_daily_totals_split_issued_spent_and_expired_by_local_day(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop", validity_months=1)
    other = await make_merchant(uow_factory, "other")
    ann = await add(uow_factory, shop, "ann@example.cz", "Ann", "Novak")
    bob = await add(uow_factory, other, "bob@example.cz", "Bob", "Brown")
    clock = FakeClock(datetime(2024, 3, 9, 22, 30, tzinfo=UTC))  # 23:30 on 9 March in Prague
    await points.earn_points(
        shop, ann, Points.parse("100"), order_ref="o1", uow=uow_factory(), clock=clock
    )
    clock.set(datetime(2024, 3, 9, 23, 30, tzinfo=UTC))  # 00:30 on 10 March in Prague
    await points.earn_points(
        shop, ann, Points.parse("20.50"), order_ref="o2", uow=uow_factory(), clock=clock
    )
    await points.spend_points(shop, ann, Points.parse("30"), uow=uow_factory(), clock=clock)
    await points.adjust_points(
        shop, ann, Points.parse("-5"), note="typo", uow=uow_factory(), clock=clock
    )
    await points.earn_points(
        other, bob, Points.parse("999"), order_ref="o1", uow=uow_factory(), clock=clock
    )
    clock.set(datetime(2024, 4, 11, 8, 0, tzinfo=UTC))
    await points.expire_due_points(shop, uow_factory=uow_factory, clock=clock)

    periods = day_periods(date(2024, 4, 11), 34, "Europe/Prague")
    async with uow_factory(read_only=True) as uow:
        totals = await uow.views.daily_totals(shop, periods)
    assert totals == [
        DayTotals(date(2024, 3, 9), Points(10000), Points(0), Points(0)),
        DayTotals(date(2024, 3, 10), Points(2050), Points(3500), Points(0)),
        DayTotals(date(2024, 4, 11), Points(0), Points(0), Points(8550)),
    ]


async def test_upcoming_expiries_sum_the_open_lots_per_last_valid_day(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop", validity_months=1)
    ann = await add(uow_factory, shop, "ann@example.cz", "Ann", "Novak")
    bea = await add(uow_factory, shop, "bea@example.cz", "Bea", "Novak")
    clock = FakeClock(NOW)
    for customer, ref in ((ann, "a1"), (bea, "b1")):
        await points.earn_points(
            shop, customer, Points.parse("10"), order_ref=ref, uow=uow_factory(), clock=clock
        )
    await points.spend_points(shop, bea, Points.parse("4"), uow=uow_factory(), clock=clock)
    clock.advance(days=3)
    await points.earn_points(
        shop, ann, Points.parse("1"), order_ref="a2", uow=uow_factory(), clock=clock
    )
    async with uow_factory(read_only=True) as uow:
        ahead = await uow.views.upcoming_expiries(
            shop, first_day=date(2024, 4, 10), last_day=date(2024, 4, 12)
        )
    assert ahead == [ExpiryTotal(date(2024, 4, 10), Points(1600), 2)]


async def consent(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_id: CustomerId,
    value: MarketingConsent,
) -> None:
    async with uow_factory() as uow:
        customer = await uow.customers.get(merchant_id, customer_id, for_update=True)
        assert customer is not None
        customer.set_consent(value, ConsentSource.STAFF, at=NOW)
        await uow.customers.update(customer)
        await uow.commit()


async def test_consent_counts_count_customers_with_an_email_by_consent_and_those_without(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop")
    other = await make_merchant(uow_factory, "other")
    async with uow_factory(read_only=True) as uow:
        assert await uow.views.consent_counts(shop) == ConsentCounts()
    seeded = {
        "ann": MarketingConsent.GRANTED,
        "bea": MarketingConsent.GRANTED,
        "cyril": MarketingConsent.REFUSED,
        "dana": MarketingConsent.UNKNOWN,
        "emil": MarketingConsent.UNKNOWN,
        "fero": MarketingConsent.UNKNOWN,
    }
    for name, value in seeded.items():
        customer_id = await add(uow_factory, shop, f"{name}@example.cz", name.title(), "Novak")
        if value is not MarketingConsent.UNKNOWN:
            await consent(uow_factory, shop, customer_id, value)
    without = await add(uow_factory, shop, None, "Gustav", "Novak")  # counted whatever it says
    await consent(uow_factory, shop, without, MarketingConsent.GRANTED)
    await add(uow_factory, shop, None, "Hana", "Novak")
    refusing = await add(uow_factory, other, "ann@example.cz", "Ann", "Novak")  # never counted
    await consent(uow_factory, other, refusing, MarketingConsent.REFUSED)

    async with uow_factory(read_only=True) as uow:
        assert await uow.views.consent_counts(shop) == ConsentCounts(
            granted=2, refused=1, unknown=3, without_email=2
        )
        assert await uow.views.consent_counts(other) == ConsentCounts(refused=1)


async def test_staff_are_found_by_email_case_insensitively_and_by_id(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop")
    async with uow_factory(read_only=True) as uow:
        admin = await uow.staff.find_by_email("ADMIN@shop.EXAMPLE.cz")
        assert admin is not None
        assert (admin.merchant_id, admin.email) == (shop, "Admin@shop.example.cz")
        assert admin.password_hash == "fake-hash:a long password"
        assert await uow.staff.get(admin.id) == admin
        assert await uow.staff.find_by_email("nobody@shop.example.cz") is None
        assert await uow.staff.get(StaffId(admin.id + 100)) is None


async def test_the_first_merchant_is_stored_only_while_there_is_none(
    uow_factory: UnitOfWorkFactory,
) -> None:
    settings = MerchantSettings(name="First")

    async def attempt(slug: str) -> Merchant | None:
        async with uow_factory() as uow:
            stored = await uow.merchants.add_first(Merchant(slug, settings), at=NOW)
            await asyncio.sleep(0.01)  # hold the transaction open while the others try
            await uow.commit()
        return stored

    results = await asyncio.gather(*(attempt(f"shop-{i}") for i in range(5)))
    assert len([r for r in results if r is not None]) == 1
    async with uow_factory(read_only=True) as uow:
        assert await uow.merchants.count() == 1


# -- sessions and log-in attempts --------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def web_state(request: pytest.FixtureRequest) -> tuple[SessionStore, LoginAttempts]:
    if request.param == "memory":
        return InMemorySessionStore(), InMemoryLoginAttempts()
    database: Database = request.getfixturevalue(f"clean_{request.param}")
    return SqlSessionStore(database), SqlLoginAttempts(database)


async def test_a_session_lives_until_it_expires_and_is_gone_once_deleted(
    web_state: tuple[SessionStore, LoginAttempts],
) -> None:
    sessions, _ = web_state
    await sessions.set("abc", b'{"staff_id": 1}', expires_at=NOW + timedelta(hours=1))
    stored = await sessions.get("abc", now=NOW)
    assert stored is not None
    assert (stored.data, stored.expires_at) == (b'{"staff_id": 1}', NOW + timedelta(hours=1))
    assert await sessions.get("abd", now=NOW) is None
    assert await sessions.get("abc", now=NOW + timedelta(hours=1)) is None

    await sessions.set("abc", b"{}", expires_at=NOW + timedelta(hours=2))
    await sessions.renew("abc", expires_at=NOW + timedelta(hours=3))
    again = await sessions.get("abc", now=NOW + timedelta(hours=2))
    assert again is not None
    assert again.data == b"{}"
    await sessions.set("old", b"{}", expires_at=NOW)
    assert await sessions.prune(now=NOW + timedelta(minutes=1)) == 1
    await sessions.delete("abc")
    await sessions.delete("never-there")
    assert await sessions.get("abc", now=NOW) is None


async def test_the_sql_session_store_keeps_only_a_digest_of_the_id(sql_database: Database) -> None:
    store = SqlSessionStore(sql_database)
    await store.set("the-secret-session-id", b"{}", expires_at=NOW + timedelta(hours=1))
    async with sql_database.engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT id_digest FROM web_sessions"))).scalars().all()
    assert len(stored) == 1
    assert "the-secret-session-id" not in stored[0]


async def test_attempts_count_within_a_window_and_start_over_after_it(
    web_state: tuple[SessionStore, LoginAttempts],
) -> None:
    _, attempts = web_state
    window = timedelta(minutes=15)
    counts = [await attempts.add("email:ann", at=NOW, window=window) for _ in range(3)]
    assert [c.attempts for c in counts] == [1, 2, 3]
    assert {c.window_ends_at for c in counts} == {NOW + window}
    assert (await attempts.add("client:1.2.3.4", at=NOW, window=window)).attempts == 1

    await attempts.forgive("email:ann")
    assert (await attempts.add("email:ann", at=NOW, window=window)).attempts == 3
    await attempts.forgive("email:ann", reset=True)
    assert (await attempts.add("email:ann", at=NOW, window=window)).attempts == 1

    later = NOW + window
    fresh = await attempts.add("email:ann", at=later, window=window)
    assert (fresh.attempts, fresh.window_ends_at) == (1, later + window)
    assert await attempts.prune(now=later + timedelta(seconds=1)) == 1  # the client's counter


async def test_concurrent_attempts_are_each_counted_once(
    web_state: tuple[SessionStore, LoginAttempts],
) -> None:
    _, attempts = web_state
    counts = await asyncio.gather(
        *(attempts.add("email:ann", at=NOW, window=timedelta(minutes=15)) for _ in range(20))
    )
    assert sorted(c.attempts for c in counts) == list(range(1, 21))


async def test_kept_dashboard_days_and_forecast_read_back_as_kept_and_are_replaced(
    uow_factory: UnitOfWorkFactory,
) -> None:
    shop = await make_merchant(uow_factory, "shop")
    other = await make_merchant(uow_factory, "other")
    periods = day_periods(TODAY, 3, "Europe/Prague")

    def kept(n: int, cents: int, up_to: datetime | None = None) -> KeptDay:
        day = periods[n]
        totals = DayTotals(day.day, Points(cents), Points(cents + 1), Points(2**40))
        return KeptDay(totals, time_zone="Europe/Prague", up_to=up_to or day.end)

    midday = periods[2].start + timedelta(hours=12)
    forecast = ExpiryForecast(
        first_day=TODAY,
        counted_at=NOW,
        days=(
            ExpiryTotal(TODAY, Points(1250), 3),
            ExpiryTotal(TODAY + timedelta(days=1), Points(0), 0),
        ),
    )
    async with uow_factory() as uow:
        await uow.dashboard.keep_days(shop, [kept(2, 5, midday), kept(0, 1), kept(1, 2)])
        await uow.dashboard.keep_days(other, [kept(0, 99)])
        await uow.dashboard.keep_forecast(shop, forecast)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        days = await uow.dashboard.kept_days(shop, first_day=periods[0].day, last_day=TODAY)
        assert await uow.dashboard.kept_days(
            shop, first_day=periods[1].day, last_day=periods[1].day
        ) == [kept(1, 2)]
        assert await uow.dashboard.kept_forecast(shop) == forecast
        assert await uow.dashboard.kept_forecast(other) is None
    assert days == [kept(0, 1), kept(1, 2), kept(2, 5, midday)]

    later = dataclasses.replace(forecast, counted_at=NOW + timedelta(days=1), days=())
    async with uow_factory() as uow:  # the next run: today kept whole, a new forecast
        await uow.dashboard.keep_days(shop, [kept(2, 7)])
        await uow.dashboard.keep_forecast(shop, later)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert (await uow.dashboard.kept_days(shop, first_day=TODAY, last_day=TODAY)) == [
            kept(2, 7)
        ]
        assert await uow.dashboard.kept_forecast(shop) == later
        assert await uow.dashboard.kept_days(other, first_day=periods[0].day, last_day=TODAY) == [
            kept(0, 99)
        ]


async def test_setup_facts_are_each_read_from_the_merchants_own_rows(
    uow_factory: UnitOfWorkFactory,
) -> None:
    anna = await make_merchant(uow_factory, "anna")
    bob = await make_merchant(uow_factory, "bob")
    nothing = SetupFacts(
        api_token=False, ecomail_active=False, notification_received=False, test_email_sent=False
    )

    async def facts() -> SetupFacts:
        async with uow_factory(read_only=True) as uow:
            return await uow.views.setup_facts(anna)

    # everything set up for Bob only
    async with uow_factory() as uow:
        await uow.api_tokens.add(bob, name="shop", token_digest="b" * 64, hint="bbbb", at=NOW)
        await uow.ecomail.save_key(bob, encrypted="key", hint="abcd", at=NOW)
        await uow.ecomail.activate(bob, list_id="1", list_name="Zákazníci", at=NOW)
        await uow.newsletter.enqueue(
            bob,
            Notification("ann@example.cz", SubscriptionChange.SUBSCRIBED, "1"),
            received_at=NOW,
            at=NOW,
        )
        await uow.merchants.record_test_email(bob, at=NOW)
        await uow.commit()
    assert await facts() == nothing

    async with uow_factory() as uow:
        token = await uow.api_tokens.add(
            anna, name="shop", token_digest="a" * 64, hint="aaaa", at=NOW
        )
        await uow.api_tokens.revoke(anna, token.id, at=NOW)
        await uow.ecomail.save_key(anna, encrypted="key", hint="abcd", at=NOW)
        await uow.commit()
    assert await facts() == nothing  # a revoked token, a key not yet active

    async with uow_factory() as uow:
        await uow.api_tokens.add(anna, name="shop 2", token_digest="c" * 64, hint="cccc", at=NOW)
        await uow.commit()
    assert await facts() == dataclasses.replace(nothing, api_token=True)
    async with uow_factory() as uow:
        await uow.ecomail.activate(anna, list_id="1", list_name="Zákazníci", at=NOW)
        await uow.commit()
    assert await facts() == dataclasses.replace(nothing, api_token=True, ecomail_active=True)
    async with uow_factory() as uow:
        await uow.newsletter.enqueue(
            anna,
            Notification("ann@example.cz", SubscriptionChange.UNSUBSCRIBED, "1"),
            received_at=NOW,
            at=NOW,
        )
        await uow.merchants.record_test_email(anna, at=NOW)
        await uow.commit()
    assert await facts() == SetupFacts(
        api_token=True, ecomail_active=True, notification_received=True, test_email_sent=True
    )
    async with uow_factory() as uow:
        await uow.ecomail.deactivate(anna, at=NOW)
        await uow.commit()
    assert (await facts()).ecomail_active is False
