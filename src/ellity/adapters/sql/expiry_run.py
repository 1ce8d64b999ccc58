"""SQL for what follows one chunk of the set-based expiry, in the same transaction.

The customers an expiry chunk hit are those of its id range with its expiry entry (kind
``expire`` at the run's instant). Each test is one probe of the partial index of expiry
entries (``ix_ledger_entries_expiry_customer_at_points``, correlated on ``customer_id``),
never a walk through every entry of the run so far: that set grows with each chunk and would
make the run quadratic. The kind is written into the SQL, not bound, so that both databases
can prove the index's ``WHERE kind = 'expire'`` from the query and use it.

The outbox payloads of the chunk's ``credit`` events and "points changed" emails are built
here in SQL from the customers' summaries, so that a chunk of tens of thousands of customers
costs one ``INSERT ... SELECT`` and no Python per customer. They must read exactly as
``integration.credit_event_value`` and ``system_email.PointsChanged.to_payload`` write them
for one customer; the storage contract tests compare the two. Plain string concatenation
(``||``, ``CAST(... AS TEXT)``, integer ``/`` and ``%``) reads the same on SQLite and
PostgreSQL; every value spliced in is a number, an ISO date or a fixed word, so nothing needs
JSON escaping.
"""

from __future__ import annotations

import json
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


def _entry_of_customer(chunk: ExpiredChunk) -> tuple[Any, list[Any]]:
    entry = ledger_entries.alias("expiry_entry")
    return entry, [
        entry.c.customer_id == customers.c.id,
        *in_range(entry.c.customer_id, chunk),
        entry.c.kind == sa.literal_column(f"'{EntryKind.EXPIRE.value}'"),
        entry.c.at == instant(chunk.at),
    ]


def expired_in(chunk: ExpiredChunk) -> Any:
    """The customer row being read or updated is one the chunk's expiry hit."""
    _, found = _entry_of_customer(chunk)
    return sa.exists().where(*found).correlate(customers)


def expiry_change(chunk: ExpiredChunk) -> Any:
    """The points of the chunk's expiry entry of the customer row being updated."""
    entry, found = _entry_of_customer(chunk)
    return sa.select(entry.c.points_cents).where(*found).correlate(customers).scalar_subquery()


def hit_by(chunk: ExpiredChunk) -> list[Any]:
    """Conditions on ``customers``: the chunk's customers with an email that it hit."""
    return [
        customers.c.merchant_id == chunk.merchant_id,
        *in_range(customers.c.id, chunk),
        customers.c.email.is_not(None),
        expired_in(chunk),
    ]


# -- payloads --------------------------------------------------------------------------------


def _cat(*parts: Any) -> Any:
    text = [part if isinstance(part, sa.ColumnElement) else sa.literal(part) for part in parts]
    joined = text[0]
    for part in text[1:]:
        joined = joined.op("||")(part)
    return joined


def _text(value: Any) -> Any:
    return sa.cast(value, sa.Text)


def _decimal(cents: Any) -> Any:
    """``Points.decimal_string()`` of integer hundredths: ``-12.50``, ``0.05``, ``120.00``."""
    magnitude = sa.func.abs(cents)
    return _cat(
        sa.case((cents < 0, "-"), else_=""),
        _text(magnitude // 100),
        ".",
        sa.case((magnitude % 100 < 10, "0"), else_=""),
        _text(magnitude % 100),
    )


def _quoted(value: Any) -> Any:
    return _cat('"', value, '"')


def _or_null(value: Any) -> Any:
    """JSON ``null`` while the customer has no next expiration, ``value`` otherwise."""
    return sa.case((customers.c.next_expiry_on.is_(None), "null"), else_=value)


def credit_event_payload(chunk: ExpiredChunk) -> Any:
    """``{"label": "credit", "value": credit_event_value(entry, next_expiration=...)}``."""
    change, balance = customers.c.last_change_cents, customers.c.balance_cents
    return _cat(
        '{"label":"credit","value":{"change":',
        _quoted(_decimal(change)),
        ',"balance":',
        _quoted(_decimal(balance)),
        f',"reason":"{EntryKind.EXPIRE.value}","note":null,"order_ref":null,"at":',
        json.dumps(chunk.at.isoformat()),
        ',"next_expiration_date":',
        _or_null(_quoted(_text(customers.c.next_expiry_on))),
        ',"next_expiration_points":',
        _or_null(_quoted(_decimal(customers.c.next_expiry_cents))),
        "}}",
    )


def points_changed_payload(chunk: ExpiredChunk) -> Any:
    """``PointsChanged.of(entry, next_expiration).to_payload()``."""
    return _cat(
        f'{{"kind":"{EntryKind.EXPIRE.value}","change":',
        _text(customers.c.last_change_cents),
        ',"balance":',
        _text(customers.c.balance_cents),
        ',"next_expiry_on":',
        _or_null(_quoted(_text(customers.c.next_expiry_on))),
        ',"next_expiry_points":',
        _or_null(_text(customers.c.next_expiry_cents)),
        ',"at":',
        json.dumps(chunk.at.isoformat()),
        "}",
    )
