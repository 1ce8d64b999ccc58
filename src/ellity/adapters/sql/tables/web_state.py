"""The merchant pages' sessions and log-in attempt counters."""

from __future__ import annotations

import sqlalchemy as sa

from ellity.adapters.sql.tables.columns import metadata, timestamp

#: Server-side sessions of the merchant pages; ``id_digest`` is the SHA-256 of the id.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_digest", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    timestamp("expires_at", index=True),
)

#: Log-in attempts per key (``email:...``, ``client:...``) in a fixed window.
login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("key", sa.String(260), primary_key=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    timestamp("window_ends_at", index=True),
)
