"""Pages that read thousands of rows are never JIT-compiled on PostgreSQL, and read the same
whatever the server's settings.

Such a page's cost estimate is above the default ``jit_above_cost``, and compiling it takes
longer than running it (the export's 20,000-customer page: seconds against a fraction of one).
The sessions here make the server compile every query (``jit_above_cost = 0``); the page's
own transaction must turn that off: EXPLAIN ANALYZE of the same query in that transaction
shows no ``JIT`` section. Each test first shows that the query is compiled otherwise.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.export_rows import SqlCustomerRowSource
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.sql.valid_points import loyalty_columns
from ellity.adapters.sql.views import SqlViews
from ellity.adapters.system_clock import SystemClock
from ellity.domain.model.contact import ProgrammeLook
from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import merchants
from tests.fakes import FakePasswordHasher

TODAY = date(2026, 2, 1)
LOOK = ProgrammeLook("cs", "https://shop.example.cz", "{shop_url}/?ref={code}")


async def _merchant(database: Database) -> MerchantId:
    merchant = await merchants.create_merchant(
        slug="jit",
        settings=MerchantSettings(name="JIT"),
        admin_email="admin@jit.cz",
        admin_password="a long password",
        uow=SqlUnitOfWorkFactory(database)(),
        clock=SystemClock(),
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    return merchant.id


async def _jit_in_plan(
    conn: AsyncConnection, query: sa.TextClause | sa.Select[Any], parameters: dict[str, Any]
) -> bool:
    """Whether EXPLAIN ANALYZE of the query in ``conn``'s transaction shows JIT at work."""
    if isinstance(query, sa.TextClause):
        text = query.text
    else:  # the values written in, for the EXPLAIN
        text = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    explain = sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {text}")
    (plan,) = (await conn.execute(explain, parameters)).one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return "JIT" in plan[0]


async def _compiling_everything(conn: AsyncConnection) -> None:
    await conn.execute(sa.text("SET jit = on"))
    await conn.execute(sa.text("SET jit_above_cost = 0"))


async def test_an_export_page_is_not_jit_compiled(clean_postgres: Database) -> None:
    merchant_id = await _merchant(clean_postgres)
    source = SqlCustomerRowSource(clean_postgres)
    async with clean_postgres.engine.connect() as conn:
        await _compiling_everything(conn)
        parameters = await source.page_parameters(conn, LOOK)
        parameters |= {
            "merchant_id": merchant_id,
            "today": TODAY,
            "after_id": 0,
            "last_id": 10**9,
            "cap": 10,
        }
        await conn.commit()
        if not await _jit_in_plan(conn, source.page_sql, parameters):
            pytest.skip("this PostgreSQL server has no JIT")
        await conn.rollback()

        await source.read_page(conn, parameters)
        assert not await _jit_in_plan(conn, source.page_sql, parameters)


async def test_a_snapshot_page_is_not_jit_compiled(clean_postgres: Database) -> None:
    merchant_id = await _merchant(clean_postgres)
    query = (
        sa.select(*loyalty_columns(TODAY))
        .where(customers.c.merchant_id == merchant_id, customers.c.id > 0)
        .order_by(customers.c.id)
        .limit(5000)
    )
    async with clean_postgres.engine.connect() as conn:
        await _compiling_everything(conn)
        await conn.commit()
        if not await _jit_in_plan(conn, query, {}):
            pytest.skip("this PostgreSQL server has no JIT")
        await conn.rollback()

        views = SqlViews(conn)
        await views.loyalty_rows_page(merchant_id, after_id=CustomerId(0), limit=5000, today=TODAY)
        assert not await _jit_in_plan(conn, query, {})
        await conn.rollback()

        await views.loyalty_page(merchant_id, after_id=CustomerId(0), limit=5000, today=TODAY)
        assert not await _jit_in_plan(conn, query, {})


async def test_a_snapshot_page_has_iso_dates_whatever_the_date_style(
    clean_postgres: Database,
) -> None:
    """Its dates come as ISO text (``LoyaltyRow``), also in a session whose ``DateStyle``
    would write them otherwise."""
    merchant_id = await _merchant(clean_postgres)
    at = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    uow_factory = SqlUnitOfWorkFactory(clean_postgres)
    async with uow_factory() as uow:
        merchant = await uow.merchants.get(merchant_id)
        assert merchant is not None
        customer = await uow.customers.add(
            Customer(merchant_id=merchant_id, referral_code="DATES02", created_at=at, updated_at=at)
        )
        assert customer.id is not None
        ledger = await uow.ledgers.get(merchant_id, customer.id, merchant.settings.expiry_policy)
        ledger.earn(Points(1050), at=at)
        await uow.ledgers.save(merchant_id, ledger, at=at)
        await uow.commit()
    async with clean_postgres.engine.connect() as conn:
        await conn.execute(sa.text("SET DateStyle = 'German, DMY'"))
        await conn.commit()
        (row,) = await SqlViews(conn).loyalty_rows_page(
            merchant_id, after_id=CustomerId(0), limit=10, today=TODAY
        )
    assert (row[8], row[10]) == ("2027-01-15", "2026-01-15")
