"""SQL for what follows one chunk of the set-based expiry, in the same transaction.

The customers an expiry chunk hit are those of its id range with its expiry entry (kind
``expire`` at the run's instant). Each test is bounded by the chunk's id range on the entries
too (``entry.customer_id`` in the range, besides ``= customers.id``), so however the planner
joins (one probe of the partial index of expiry entries per customer, or one range scan of
it), it reads only the chunk's entries, never every entry of the run so far: that set grows
with each chunk and would make the run quadratic. The kind is written into the SQL, not
bound, so that both databases can prove the index's ``WHERE kind = 'expire'`` from the query
and use it.

The outbox items that follow a chunk carry no payload of their own, only the customer's
expiry entry and the next expiration after it (``SqlOutboxRepository.add_for_expired``): the
domain builds the payload from them when the item is claimed, as for any balance change.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import instant
from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import ledger_entries
from ellity.domain.model.ledger import EntryKind
from ellity.ports.storage import ExpiredChunk


def in_range(column: Any, chunk: ExpiredChunk) -> list[Any]:
    bounds = [column > chunk.after_id]
    if chunk.up_to_id is not None:
        bounds.append(column <= chunk.up_to_id)
    return bounds


def entry_of_customer(chunk: ExpiredChunk) -> tuple[Any, list[Any]]:
    """The chunk's expiry entries (an alias) and the conditions that find the one of the
    customer row being read or updated."""
    entry = ledger_entries.alias("expiry_entry")
    return entry, [
        entry.c.customer_id == customers.c.id,
        *in_range(entry.c.customer_id, chunk),
        entry.c.kind == sa.literal_column(f"'{EntryKind.EXPIRE.value}'"),
        entry.c.at == instant(chunk.at),
    ]


def expired_in(chunk: ExpiredChunk) -> Any:
    """The customer row being read or updated is one the chunk's expiry hit."""
    _, found = entry_of_customer(chunk)
    return sa.exists().where(*found).correlate(customers)


def expiry_entry_id(chunk: ExpiredChunk) -> Any:
    """The id of the chunk's expiry entry of the customer row being read. A probe per
    customer, not a join: SQLite would drive a join from the entries, through another index
    (by instant) that reads every entry of the run so far."""
    entry, found = entry_of_customer(chunk)
    return sa.select(entry.c.id).where(*found).correlate(customers).scalar_subquery()


def hit_by(chunk: ExpiredChunk) -> list[Any]:
    """Conditions on ``customers``: the chunk's customers with an email that it hit."""
    return [
        customers.c.merchant_id == chunk.merchant_id,
        *in_range(customers.c.id, chunk),
        customers.c.email.is_not(None),
        expired_in(chunk),
    ]
