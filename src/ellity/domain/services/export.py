"""The customer export (PRODUCT §3): every customer of one merchant, one row each, streamed.

Columns: ``email``, ``first_name``, ``last_name``, then the eleven ``ellity_*`` fields in the
order of ``FIELD_NAMES``, with exactly the values the sync writes (they come from the same
contact snapshot): dates ``YYYY-MM-DD``, empty cells for what does not exist, ``0`` in the
whole-number fields. Customers without an email are exported too, with an empty email cell.

Memory stays constant: customers are read a page per short read-only transaction and each
page is encoded and handed over before much more is read. The export is not one snapshot of
the database: a customer created or changed while it runs may or may not be in the file, as
it would be had the export started a moment earlier or later.

Where the rows are encoded: ``SnapshotRows`` builds each customer's contact snapshot and hands
the cells to the encoder; that is the definition of the file. Storage may instead write the
encoded rows itself (``ports.export.CustomerRowSource``; the SQL adapter does it for CSV, an
order of magnitude faster at a million customers, see bench/export.py), held to the same bytes
by a contract test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from datetime import date
from operator import itemgetter
from typing import cast

from ellity.domain.model.contact import (
    FIELD_NAMES,
    FIELD_TYPES,
    ContactSnapshot,
    CustomerLoyalty,
    ProgrammeLook,
    contact_snapshot,
)
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.services.common import load_merchant, look_of, today_of
from ellity.ports.clock import Clock
from ellity.ports.export import (
    Cell,
    CellKind,
    Column,
    CustomerRowSource,
    EncodedRows,
    TableEncoder,
)
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

#: Customers per page (and per chunk handed over).
EXPORT_BATCH = 20_000

#: The ``ellity_*`` fields that hold a number as display text (``1 250,50``, ``-120``).
DISPLAY_NUMBER_FIELDS = frozenset(
    {"ellity_credit", "ellity_next_expiration_value", "ellity_last_change_value"}
)

_KIND_OF_FIELD_TYPE: dict[str, CellKind] = {"int": "number", "date": "date", "string": "text"}


def _field_column(name: str) -> Column:
    if name in DISPLAY_NUMBER_FIELDS:
        return Column(name, "number")
    return Column(name, _KIND_OF_FIELD_TYPE[FIELD_TYPES[name]])


#: The export's columns with what each holds; ``EXPORT_COLUMNS`` are their names.
EXPORT_TABLE: tuple[Column, ...] = (
    Column("email"),
    Column("first_name"),
    Column("last_name"),
    *(_field_column(name) for name in FIELD_NAMES),
)
EXPORT_COLUMNS: tuple[str, ...] = tuple(column.name for column in EXPORT_TABLE)

_fields = itemgetter(*FIELD_NAMES)  # the eleven values in order, in one C call


def export_row(snapshot: ContactSnapshot) -> list[Cell]:
    """One customer's cells, in the order of ``EXPORT_COLUMNS``."""
    return [
        snapshot.email or "",
        snapshot.first_name,
        snapshot.last_name,
        *_fields(snapshot.fields),
    ]


class SnapshotRows:
    """The reference ``CustomerRowSource``: contact snapshots encoded in Python by ``encoder``.

    Serves any encoder's format. The next page is read while the caller works on this one.
    """

    def __init__(self, uow_factory: UnitOfWorkFactory, encoder: TableEncoder) -> None:
        self.uow_factory = uow_factory
        self.encoder = encoder
        self.format = encoder.format

    async def pages(
        self, merchant_id: MerchantId, look: ProgrammeLook, *, batch_size: int, today: date
    ) -> AsyncIterator[EncodedRows]:
        async def page(after_id: CustomerId) -> list[CustomerLoyalty]:
            async with self.uow_factory(read_only=True) as uow:
                return await uow.views.loyalty_page(
                    merchant_id, after_id=after_id, limit=batch_size, today=today
                )

        rows = await page(BEFORE_FIRST_CUSTOMER)
        while rows:
            following = asyncio.ensure_future(page(rows[-1].customer_id))
            try:
                cells = [export_row(contact_snapshot(row, look)) for row in rows]
                yield EncodedRows(self.encoder.rows(EXPORT_TABLE, cells), len(rows))
                rows = await following
            finally:
                following.cancel()


async def export_customers(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    encoder: TableEncoder,
    clock: Clock,
    rows: CustomerRowSource | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = EXPORT_BATCH,
) -> AsyncGenerator[bytes, None]:
    """The header chunk, then one chunk per page of customers (in id order).

    ``rows`` writes the encoded rows itself and must have the encoder's format; without it
    they come from ``SnapshotRows``. An unknown merchant raises ``MerchantNotFound`` before
    any chunk is produced. ``progress`` is told how many customers have been handed over so
    far, after each page the caller has taken.
    """
    source = rows if rows is not None else SnapshotRows(uow_factory, encoder)
    if source.format != encoder.format:
        raise ValueError(f"rows in {source.format!r} cannot go into a {encoder.format!r} table")
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
    yield encoder.header(EXPORT_TABLE)
    # An async generator, declared as an iterator: closed at once when the caller stops early.
    pages = cast(
        AsyncGenerator[EncodedRows, None],
        source.pages(
            merchant_id, look_of(merchant), batch_size=batch_size, today=today_of(merchant, clock)
        ),
    )
    done = 0
    async with aclosing(pages):
        async for page in pages:
            yield page.data
            done += page.count
            if progress is not None:
                progress(done)


async def count_customers(merchant_id: MerchantId, *, uow: UnitOfWork) -> int:
    """How many customers the merchant has (the total behind an export's progress)."""
    async with uow:
        await load_merchant(uow, merchant_id)
        return await uow.customers.count(merchant_id)
