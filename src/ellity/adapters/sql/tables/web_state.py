"""The merchant pages' sessions and log-in attempt counters."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ellity.adapters.sql.tables.columns import timestamp


class WebSessionRow(SQLModel, table=True):
    """Server-side sessions of the merchant pages; ``id_digest`` is the SHA-256 of the id."""

    __tablename__ = "web_sessions"

    id_digest: str = Field(max_length=64, primary_key=True)
    data: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    expires_at: datetime = timestamp(index=True)


class LoginAttemptRow(SQLModel, table=True):
    """Log-in attempts per key (``email:...``, ``client:...``) in a fixed window."""

    __tablename__ = "login_attempts"

    key: str = Field(max_length=260, primary_key=True)
    attempts: int
    window_ends_at: datetime = timestamp(index=True)


web_sessions = WebSessionRow.__table__  # type: ignore[attr-defined]
login_attempts = LoginAttemptRow.__table__  # type: ignore[attr-defined]
