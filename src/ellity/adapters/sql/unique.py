"""Unique-index failures as the storage port's ``UniqueViolation``, named by the field whose
index the database's error mentions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import IntegrityError

from ellity.ports.storage.errors import UniqueViolation

_UNIQUE_FIELDS = ("shop_customer_id", "referral_code", "order_ref", "email", "slug")


@asynccontextmanager
async def unique_violations() -> AsyncIterator[None]:
    """Turn a unique-index failure into the port's ``UniqueViolation`` naming the field."""
    try:
        yield
    except IntegrityError as exc:
        text = str(exc.orig)
        for field in _UNIQUE_FIELDS:
            if field in text:
                raise UniqueViolation(field) from None
        raise
