"""The customer search in SQL: every alternative is one index range read, keyset-paged.

A prefix becomes ``key >= prefix AND key < prefix_end(prefix)`` on the ``(merchant_id, key)``
index, plus an exact ``substr`` check that keeps the result right under any collation. The
cursor is the id of the last customer shown; its keys say which alternative the page
continues and where.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.customers import customers
from ellity.domain.model.customer_query import (
    Alternative,
    CustomerQuery,
    Prefix,
    SearchField,
    prefix_end,
)
from ellity.domain.model.ids import CustomerId, MerchantId

_KEY: dict[SearchField, sa.ColumnElement[Any]] = {
    "email": customers.c.email_key,
    "first_name": customers.c.first_name_key,
    "last_name": customers.c.last_name_key,
}


def _starts_with(prefix: Prefix, *, from_key: str | None = None) -> sa.ColumnElement[bool]:
    """``from_key`` (a continuing page's cursor key) replaces the prefix as the range's lower
    bound: given both, SQLite may start the index read at the prefix and filter its way to
    the cursor, which makes deep pages slow."""
    key = _KEY[prefix.field]
    start = prefix.text if from_key is None else from_key
    conditions = [key >= start, sa.func.substr(key, 1, len(prefix.text)) == prefix.text]
    end = prefix_end(prefix.text)
    if end is not None:
        conditions.append(key < end)
    return sa.and_(*conditions)


def _matched_earlier(alternative: Alternative) -> sa.ColumnElement[bool]:
    """True (never NULL) for a customer the alternative matches."""
    return sa.and_(
        *(
            sa.func.substr(sa.func.coalesce(_KEY[p.field], ""), 1, len(p.text)) == p.text
            for p in alternative.prefixes
        )
    )


async def search_rows(
    conn: AsyncConnection,
    columns: Sequence[sa.ColumnElement[Any]],
    merchant_id: MerchantId,
    query: CustomerQuery,
    *,
    after_id: CustomerId | None,
    limit: int,
) -> list[Any]:
    mine = customers.c.merchant_id == merchant_id
    if query.referral_code is not None:
        if after_id is not None:
            return []
        found = await conn.execute(
            sa.select(*columns).where(mine, customers.c.referral_code == query.referral_code)
        )
        return list(found)
    if query.is_everyone:
        # Read the (merchant_id, id) index backwards. SQLite's statistics average over
        # merchants and may pick a rowid scan instead, which walks past every other
        # merchant's customers: telling it the merchant is selective keeps it on the index.
        merchant = mine
        if conn.dialect.name == "sqlite":
            merchant = sa.func.likelihood(mine, sa.literal_column("0.001"))
        everyone = sa.select(*columns).where(merchant)
        if after_id is not None:
            everyone = everyone.where(customers.c.id < after_id)
        return list(await conn.execute(everyone.order_by(customers.c.id.desc()).limit(limit)))

    alternatives = query.alternatives
    start, cursor = 0, None
    if after_id is not None:
        keys_row = (
            await conn.execute(sa.select(*_KEY.values()).where(mine, customers.c.id == after_id))
        ).first()
        if keys_row is None:
            return []
        keys: dict[SearchField, str | None] = dict(zip(_KEY, keys_row, strict=True))
        start = next((i for i, alt in enumerate(alternatives) if alt.matches(keys)), -1)
        if start < 0:
            return []
        cursor = (keys[alternatives[start].order_field] or "", after_id)

    rows: list[Any] = []
    for index in range(start, len(alternatives)):
        alternative = alternatives[index]
        key = _KEY[alternative.order_field]
        continuing = cursor if index == start else None
        first, *others = alternative.prefixes
        select = sa.select(*columns).where(
            mine,
            _starts_with(first, from_key=continuing[0] if continuing else None),
            *(_starts_with(p) for p in others),
            *(sa.not_(_matched_earlier(earlier)) for earlier in alternatives[:index]),
        )
        if continuing is not None:
            select = select.where(sa.tuple_(key, customers.c.id) > sa.tuple_(*continuing))
        select = select.order_by(key, customers.c.id).limit(limit - len(rows))
        rows.extend(await conn.execute(select))
        if len(rows) >= limit:
            break
    return rows
