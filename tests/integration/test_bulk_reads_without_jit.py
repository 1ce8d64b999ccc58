"""Pages that read thousands of rows are never JIT-compiled on PostgreSQL.

Such a page's cost estimate is above the default ``jit_above_cost``, and compiling it takes
longer than running it (the export's 20,000-customer page: seconds against a fraction of one).
The sessions here make the server compile every query (``jit_above_cost = 0``); the page's
own transaction must turn that off: EXPLAIN ANALYZE of the same query in that transaction
shows no ``JIT`` section. Each test first shows that the query is compiled otherwise.
"""

from __future__ import annotations

import json
from datetime import date
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
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings
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
