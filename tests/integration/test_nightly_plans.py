"""The nightly run stays linear on PostgreSQL: each statement of a chunk reads only the rows
of that chunk, never those of the chunks run before it or after it.

The statements of one chunk are explained as they run (``EXPLAIN (ANALYZE, FORMAT JSON)`` in a
savepoint rolled back before the statement runs for real) with sequential scans off, as the
planner treats a large table; every scan of a table must read (rows returned plus rows filtered
out, each time it runs) no more rows than the table holds for the chunk's customers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import event

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.customer import Customer
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import nightly
from ellity.domain.services.points import earn_points
from ellity.ports.storage import ExpiredChunk
from tests.fakes import FakeClock

PRAGUE = ZoneInfo("Europe/Prague")
T0 = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
AT = datetime(2025, 3, 11, 2, tzinfo=PRAGUE).astimezone(UTC)  # T0's points are past due
TODAY = date(2025, 3, 11)
#: The tables the chunk's statements read, and how a row belongs to a customer.
OWNED_BY = {
    "customers": "id",
    "point_lots": "customer_id",
    "ledger_entries": "customer_id",
    "ecomail_contacts": "customer_id",
    "outbox": "customer_id",
    "expiry_notices": "customer_id",
}
SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")


async def _shop(database: Database) -> tuple[MerchantId, list[CustomerId]]:
    uow_factory = SqlUnitOfWorkFactory(database)
    async with uow_factory() as uow:
        settings = MerchantSettings(name="Anna", send_system_emails=True)
        merchant = await uow.merchants.add(Merchant(slug="anna", settings=settings), at=T0)
        assert merchant.id is not None
        await uow.ecomail.save_key(merchant.id, encrypted="sealed", hint="1234", at=T0)
        await uow.ecomail.activate(merchant.id, list_id="7", list_name="List", at=T0)
        ids = []
        for n in range(12):
            customer = await uow.customers.add(
                Customer(
                    merchant_id=merchant.id,
                    referral_code=f"ANN{n:05d}",
                    created_at=T0,
                    updated_at=T0,
                    email=f"c{n}@example.cz",
                )
            )
            assert customer.id is not None
            ids.append(customer.id)
        await uow.commit()
    for customer_id in ids:
        for at, points in ((T0, "10"), (T0 + timedelta(days=40), "2.50")):
            await earn_points(
                merchant.id,
                customer_id,
                Points.parse(points),
                order_ref=f"o-{customer_id}-{points}",
                uow=uow_factory(),
                clock=FakeClock(at),
            )
    return merchant.id, ids


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _rows_read(node: dict[str, Any]) -> int:
    """Rows a scan read each time it ran (a probe repeated for each row of a join reads the
    chunk's rows again, not others)."""
    return int(
        node.get("Actual Rows", 0)
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
    )


async def _explained_chunk(database: Database, chunk: ExpiredChunk) -> list[tuple[str, Any]]:
    """The chunk's expiry (and what follows it) run for real; each statement's plan."""
    plans: list[tuple[str, Any]] = []

    def explain(
        _conn: Any, cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if many or not any(table in statement for table in OWNED_BY):
            return
        cursor.execute("SAVEPOINT plan_check")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        [[found]] = cursor.fetchall()
        plans.append((statement, json.loads(found) if isinstance(found, str) else found))
        cursor.execute("ROLLBACK TO SAVEPOINT plan_check")

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", explain)
    try:
        await nightly._expire_chunk(chunk, today=TODAY, uow_factory=SqlUnitOfWorkFactory(database))
    finally:
        event.remove(engine, "before_cursor_execute", explain)
    return plans


async def test_each_statement_of_an_expiry_chunk_reads_only_the_rows_of_its_chunk(
    clean_postgres: Database,
) -> None:
    merchant_id, ids = await _shop(clean_postgres)
    uow_factory = SqlUnitOfWorkFactory(clean_postgres)
    before = ExpiredChunk(merchant_id, at=AT, after_id=CustomerId(0), up_to_id=ids[8])
    assert await nightly._expire_chunk(before, today=TODAY, uow_factory=uow_factory)
    chunk = ExpiredChunk(merchant_id, at=AT, after_id=ids[8], up_to_id=ids[10])

    plans = await _explained_chunk(clean_postgres, chunk)

    async with clean_postgres.engine.connect() as conn:
        held = {
            table: (
                await conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE {column} > :a AND {column} <= :b"),
                    {"a": chunk.after_id, "b": chunk.up_to_id},
                )
            ).scalar_one()
            for table, column in OWNED_BY.items()
        }
        expired = (
            await conn.execute(sa.text("SELECT count(*) FROM ledger_entries WHERE kind = 'expire'"))
        ).scalar_one()
    assert expired == 11  # the chunk ran: 9 before it, its 2
    assert len(plans) >= 5  # locks, entries, lots, summaries, marks, events, emails
    read_too_much = [
        (node["Node Type"], node["Relation Name"], _rows_read(node), statement)
        for statement, [explained] in plans
        for node in _nodes(explained["Plan"])
        if node["Node Type"] in SCANS
        and node.get("Relation Name") in OWNED_BY
        and _rows_read(node) > held[node["Relation Name"]]
    ]
    assert read_too_much == []
