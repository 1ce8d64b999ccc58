"""The customer export (PRODUCT §3): every customer of one merchant, one row each, streamed.

Columns: ``email``, ``first_name``, ``last_name``, then the eleven ``ellity_*`` fields in the
order of ``FIELD_NAMES``, with exactly the values the sync writes (they come from the same
contact snapshot): dates ``YYYY-MM-DD``, empty cells for what does not exist, ``0`` in the
whole-number fields. Customers without an email are exported too, with an empty email cell.

Memory stays constant: customers are read a batch per short read-only transaction
(``all_contact_snapshots``) and each batch is encoded and handed over before the next one is
needed. The export is not one snapshot of the database: a customer created or changed while
it runs may or may not be in the file, as it would be had the export started a moment
earlier or later.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from operator import itemgetter
from typing import cast

from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES, ContactSnapshot
from ellity.domain.services.common import load_merchant
from ellity.domain.services.customers import SNAPSHOT_BATCH, all_contact_snapshots
from ellity.ports.export import Cell, CellKind, Column, TableEncoder
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

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


async def export_customers(
    merchant_id: int,
    *,
    uow_factory: UnitOfWorkFactory,
    encoder: TableEncoder,
    progress: Callable[[int], None] | None = None,
    batch_size: int = SNAPSHOT_BATCH,
) -> AsyncGenerator[bytes, None]:
    """The header chunk, then one chunk per batch of customers (in id order).

    An unknown merchant raises ``MerchantNotFound`` before any chunk is produced.
    ``progress`` is told how many customers have been handed over so far, after each batch
    the caller has taken.
    """
    # An async generator, declared as an iterator: closed at once when the caller stops early.
    snapshots = cast(
        AsyncGenerator[list[ContactSnapshot], None],
        all_contact_snapshots(merchant_id, uow_factory=uow_factory, batch_size=batch_size),
    )
    async with aclosing(snapshots) as batches:
        batch = await anext(batches, None)  # loads the merchant first: errors come before bytes
        yield encoder.header(EXPORT_TABLE)
        done = 0
        while batch is not None:
            yield encoder.rows(EXPORT_TABLE, [export_row(snapshot) for snapshot in batch])
            done += len(batch)
            if progress is not None:
                progress(done)
            batch = await anext(batches, None)


async def count_customers(merchant_id: int, *, uow: UnitOfWork) -> int:
    """How many customers the merchant has (the total behind an export's progress)."""
    async with uow:
        await load_merchant(uow, merchant_id)
        return await uow.customers.count(merchant_id)
