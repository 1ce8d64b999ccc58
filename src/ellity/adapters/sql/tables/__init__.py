"""The database schema, one module per concept, in SQLAlchemy Core. SQLAlchemy lives only in
the ``ellity.adapters.sql`` package.

Importing this package declares every table, so ``metadata`` (what the migrations are
compared with) always holds the whole schema, whichever table module was asked for. The
migrations name the column type ``ellity.adapters.sql.tables.UtcDateTime``.
"""

from ellity.adapters.sql.tables import (
    contact_sync,
    customers,
    dashboard,
    ledger,
    merchants,
    newsletter,
    outbox,
    reconciliation,
    web_state,
)
from ellity.adapters.sql.tables.columns import UtcDateTime, metadata

__all__ = [
    "UtcDateTime",
    "contact_sync",
    "customers",
    "dashboard",
    "ledger",
    "merchants",
    "metadata",
    "newsletter",
    "outbox",
    "reconciliation",
    "web_state",
]
