"""What the adapter's three work queues share: outbox items, contacts to write to Ecomail and
newsletter notifications are each claimed by one worker at a time for a lease (a token and
``claimed_until``), settled only while that claim still holds, and the worker is woken at the
earliest instant one of them can be claimed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.columns import UtcDateTime

NO_CLAIM: Mapping[str, Any] = {"claim_token": None, "claimed_until": None}


async def claim_due(
    conn: AsyncConnection,
    key: sa.Column[Any],
    *,
    due: Sequence[Any],
    order_by: Sequence[Any],
    limit: int,
    locks_rows: bool,
    values: Mapping[str, Any],
    returning: Sequence[Any],
) -> list[sa.Row[Any]]:
    """Claim up to ``limit`` rows that are ``due``, in ``order_by``: their keys first
    (PostgreSQL skips rows another worker is claiming this moment), then one ``UPDATE ...
    RETURNING`` that writes the claim ``values``."""
    query = sa.select(key).where(*due).order_by(*order_by).limit(limit)
    if locks_rows:
        query = query.with_for_update(skip_locked=True)
    keys = list((await conn.execute(query)).scalars())
    if not keys:
        return []
    claimed = sa.update(key.table).where(key.in_(keys)).values(**values).returning(*returning)
    return list(await conn.execute(claimed))


def unclaimed(claimed_until: sa.Column[Any], now: datetime) -> Any:
    """No claim holds the row at ``now`` (never claimed, or the lease ran out)."""
    return sa.or_(claimed_until.is_(None), claimed_until <= now)


async def settle_claimed(
    conn: AsyncConnection, table: sa.Table, *where: Any, token: str, values: Mapping[str, Any]
) -> bool:
    """Write ``values`` and drop the claim, if the row (``where``) is still claimed with
    ``token``; ``False`` when the claim was lost to another worker."""
    result = await conn.execute(
        table.update().where(*where, table.c.claim_token == token).values(**{**NO_CLAIM, **values})
    )
    return result.rowcount == 1


async def renew_claim(
    conn: AsyncConnection, table: sa.Table, *, token: str, until: datetime
) -> int:
    """Extend the claim ``token`` to ``until`` on the rows it still holds; how many."""
    result = await conn.execute(
        table.update().where(table.c.claim_token == token).values(claimed_until=until)
    )
    return int(result.rowcount)


async def drop_claim(
    conn: AsyncConnection, table: sa.Table, *, token: str, values: Mapping[str, Any]
) -> int:
    """End the claim ``token`` on the rows it still holds, writing ``values``; how many."""
    result = await conn.execute(
        table.update().where(table.c.claim_token == token).values(**{**NO_CLAIM, **values})
    )
    return int(result.rowcount)


def available_or_claim_end(available_at: sa.Column[Any], claimed_until: sa.Column[Any]) -> Any:
    """When a pending row can be claimed: when it is due, or when its claim runs out."""
    return sa.case((claimed_until > available_at, claimed_until), else_=available_at)


async def earliest(conn: AsyncConnection, instant: Any, *where: Any) -> datetime | None:
    """The earliest ``instant`` of the rows ``where``, as an aware UTC datetime."""
    due: datetime | None = (
        await conn.execute(sa.select(sa.func.min(instant)).where(*where))
    ).scalar_one_or_none()
    if due is not None and due.tzinfo is None:  # min() of a CASE loses the column type
        due = UtcDateTime().process_result_value(due, conn.dialect)
    return due
