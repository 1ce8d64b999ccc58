"""The CSV export: the encoder's rules, then the whole path on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import sqlalchemy as sa

from ellity.adapters.csv_export import CsvTableEncoder
from ellity.adapters.sql.database import Database
from ellity.adapters.sql.export_rows import SqlCustomerRowSource
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.contact import FIELD_NAMES
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import customers, export, merchants, points
from ellity.ports.export import Column
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakePasswordHasher

CLOCK, RNG = SystemClock(), SecretsRandom()
ENCODER = CsvTableEncoder()
P = Points.parse


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# -- the encoder ----------------------------------------------------------------------------

TEXT, NUMBER, DATE = Column("t"), Column("n", "number"), Column("d", "date")


@pytest.mark.parametrize(
    ("column", "value", "written"),
    [
        (TEXT, '=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        (TEXT, "+420 123", "'+420 123"),
        (TEXT, "-2+3", "'-2+3"),
        (TEXT, "@SUM(A1)", "'@SUM(A1)"),
        (TEXT, "\t=1+1", "'\t=1+1"),
        (TEXT, "\r=1+1", "'\r=1+1"),
        (TEXT, "-120", "'-120"),  # a name is text even when it looks like a number
        (TEXT, "Anna =1+1", "Anna =1+1"),
        (TEXT, "", ""),
        (NUMBER, "-120", "-120"),
        (NUMBER, "-1 250,50", "-1 250,50"),
        (NUMBER, "-1,250.50", "-1,250.50"),
        (NUMBER, "-1+2", "'-1+2"),
        (NUMBER, "-1  2", "'-1  2"),
        (NUMBER, "-", "'-"),
        (NUMBER, "=120", "'=120"),
        (DATE, "2025-01-31", "2025-01-31"),
        (DATE, "-2025-01-31", "'-2025-01-31"),
    ],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_quote_in_front_unless_its_column_holds_numbers(
    column: Column, value: str, written: str
) -> None:
    data = ENCODER.rows([column], [[value]])
    assert parse(data) == [[written]]


def test_a_negative_int_is_written_as_a_bare_number() -> None:
    assert ENCODER.rows([NUMBER, TEXT], [[-120, "x"]]) == b'-120,"x"\r\n'


def test_text_is_quoted_so_another_list_separator_cannot_split_a_cell() -> None:
    data = ENCODER.rows([TEXT, TEXT, NUMBER], [["Ann;=1+1", 'say "hi",\r\nbye', 7]])
    assert data == b'"Ann;=1+1","say ""hi"",\r\nbye",7\r\n'
    assert parse(data) == [["Ann;=1+1", 'say "hi",\r\nbye', "7"]]


def test_the_output_is_utf8_without_a_bom_with_a_header_row() -> None:
    data = ENCODER.header([Column("jméno"), NUMBER]) + ENCODER.rows([TEXT, NUMBER], [["Ž", 1]])
    assert data == '"jméno","n"\r\n"Ž",1\r\n'.encode()
    assert not data.startswith(b"\xef\xbb\xbf")


def test_a_row_with_the_wrong_number_of_cells_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells for 1 columns"):
        ENCODER.rows([TEXT], [["a", "b"]])


# -- the whole export on SQLite and PostgreSQL --------------------------------------------


async def make_merchant(uow_factory: UnitOfWorkFactory, slug: str) -> MerchantId:
    merchant = await merchants.create_merchant(
        slug=slug,
        settings=MerchantSettings(name=slug, shop_url=f"https://{slug}.example.cz"),
        admin_email=f"admin@{slug}.example.cz",
        admin_password="a long password",
        uow=uow_factory(),
        clock=CLOCK,
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    return merchant.id


async def add_customer(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, **fields: object
) -> CustomerId:
    created = await customers.upsert_customer(
        merchant_id,
        customers.CustomerInput(**fields),  # type: ignore[arg-type]
        uow=uow_factory(),
        clock=CLOCK,
        rng=RNG,
    )
    assert created.view.customer.id is not None
    return created.view.customer.id


async def export_csv(
    uow_factory: SqlUnitOfWorkFactory, merchant_id: MerchantId, **options: Any
) -> bytes:
    """The whole file, its rows written by the database as in production."""
    rows = SqlCustomerRowSource(uow_factory.database)
    chunks = [
        chunk
        async for chunk in export.export_customers(
            merchant_id, uow_factory=uow_factory, encoder=ENCODER, rows=rows, **options, clock=CLOCK
        )
    ]
    return b"".join(chunks)


def cell(row: list[str], column: str) -> str:
    return row[export.EXPORT_COLUMNS.index(column)]


async def test_customers_named_like_formulas_come_out_inert(sql_database: Database) -> None:
    uow = SqlUnitOfWorkFactory(sql_database)
    shop = await make_merchant(uow, "shop")
    await add_customer(uow, shop, email="=x@shop.cz", first_name='=HYPERLINK("http://x")')
    await add_customer(uow, shop, email="+y@shop.cz", first_name="+cmd", last_name="-2+3")
    await add_customer(uow, shop, email="z@shop.cz", first_name="@SUM(1)", last_name="Nová")
    tabbed = await add_customer(uow, shop, email="t@shop.cz")
    # Names are refused with control characters today; rows written before (or by another
    # tool) are neutralised all the same.
    async with sql_database.write_engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE customers SET first_name = :tab, last_name = :cr WHERE id = :id"),
            {"tab": "\t=1+1", "cr": "\r=2+2", "id": tabbed},
        )

    rows = parse(await export_csv(uow, shop))[1:]

    names = [(r[0], r[1], r[2]) for r in rows]
    assert names == [
        ("'=x@shop.cz", '\'=HYPERLINK("http://x")', ""),
        ("'+y@shop.cz", "'+cmd", "'-2+3"),
        ("z@shop.cz", "'@SUM(1)", "Nová"),
        ("t@shop.cz", "'\t=1+1", "'\r=2+2"),
    ]


async def test_a_negative_last_change_stays_a_number(sql_database: Database) -> None:
    uow = SqlUnitOfWorkFactory(sql_database)
    shop = await make_merchant(uow, "shop")
    ann = await add_customer(uow, shop, email="ann@shop.cz")
    await points.earn_points(shop, ann, P("1250.50"), order_ref="o-1", uow=uow(), clock=CLOCK)
    await points.adjust_points(shop, ann, P("-120"), note="correction", uow=uow(), clock=CLOCK)

    data = await export_csv(uow, shop)
    (row,) = parse(data)[1:]

    assert cell(row, "ellity_last_change_value") == "-120"
    assert cell(row, "ellity_credit") == "1 130,50"
    assert b',"-120",' in data  # neither prefixed nor turned into anything else


async def test_the_csv_round_trips_to_the_contact_snapshots(sql_database: Database) -> None:
    uow = SqlUnitOfWorkFactory(sql_database)
    shop = await make_merchant(uow, "shop")
    ann = await add_customer(
        uow, shop, email="ann@shop.cz", first_name="Anna", last_name='Nová, "Ančí"'
    )
    bob = await add_customer(uow, shop, email="bob@shop.cz", registered=True)
    eva = await add_customer(uow, shop, shop_customer_id="s-3", first_name="Eva")
    await points.earn_points(shop, ann, P("1250.50"), order_ref="o-1", uow=uow(), clock=CLOCK)
    await points.spend_points(shop, ann, P("0.25"), uow=uow(), clock=CLOCK)
    await points.earn_points(shop, bob, P("7"), order_ref="o-2", uow=uow(), clock=CLOCK)

    table = parse(await export_csv(uow, shop))

    snapshots = await customers.contact_snapshots(
        shop, [ann, bob, eva], uow=uow(read_only=True), clock=CLOCK
    )
    assert table[0] == list(export.EXPORT_COLUMNS)
    assert table[1:] == [
        [s.email or "", s.first_name, s.last_name, *[str(s.fields[f]) for f in FIELD_NAMES]]
        for s in snapshots
    ]
    assert cell(table[3], "email") == ""  # exported without an email


async def test_the_export_streams_a_chunk_per_batch(sql_database: Database) -> None:
    uow = SqlUnitOfWorkFactory(sql_database)
    shop = await make_merchant(uow, "shop")
    for n in range(7):
        await add_customer(uow, shop, email=f"c{n}@shop.cz")

    rows = SqlCustomerRowSource(sql_database)
    chunks = [
        chunk
        async for chunk in export.export_customers(
            shop, uow_factory=uow, encoder=ENCODER, rows=rows, batch_size=3, clock=CLOCK
        )
    ]

    assert [len(parse(chunk)) for chunk in chunks] == [1, 3, 3, 1]
    assert b"".join(chunks) == await export_csv(uow, shop)


async def test_another_merchants_customers_are_never_in_the_file(sql_database: Database) -> None:
    uow = SqlUnitOfWorkFactory(sql_database)
    alpha = await make_merchant(uow, "alpha")
    beta = await make_merchant(uow, "beta")
    await add_customer(uow, alpha, email="ann@alpha.cz")
    await add_customer(uow, beta, email="bob@beta.cz", first_name="Bob")
    await add_customer(uow, alpha, email="cyril@alpha.cz")

    data = await export_csv(uow, alpha, batch_size=1)

    assert [row[0] for row in parse(data)[1:]] == ["ann@alpha.cz", "cyril@alpha.cz"]
    assert b"beta" not in data and b"Bob" not in data


async def test_customers_are_counted_per_merchant_on_every_backend(
    uow_factory: UnitOfWorkFactory,
) -> None:
    alpha = await make_merchant(uow_factory, "alpha")
    beta = await make_merchant(uow_factory, "beta")
    for n in range(3):
        await add_customer(uow_factory, alpha, email=f"c{n}@alpha.cz")
    await add_customer(uow_factory, beta, shop_customer_id="b-1")
    async with uow_factory(read_only=True) as uow:
        assert await uow.customers.count(alpha) == 3
        assert await uow.customers.count(beta) == 1
        assert await uow.customers.count(MerchantId(404)) == 0
