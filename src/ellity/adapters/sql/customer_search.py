"""The customer search in SQL: every alternative is one index range read, keyset-paged.

A prefix becomes ``key >= prefix AND key < prefix_end(prefix)`` on the ``(merchant_id, key)``
index, plus an exact ``substr`` check. The keys are compared in code-point order on both
databases (``columns.search_key``: PostgreSQL's "C" column collation), so the range holds
exactly the keys starting with the prefix whatever the database's collation. The cursor is
the id of a customer shown: the last of a page for the next page (``after_id``), the first
for the previous one (``before_id``, read backwards); its keys say which alternative the page
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
    "email_domain": customers.c.email_domain_key,
    "first_name": customers.c.first_name_key,
    "last_name": customers.c.last_name_key,
}


def _starts_with(
    prefix: Prefix, *, from_key: str | None = None, up_to_key: str | None = None
) -> sa.ColumnElement[bool]:
    """``from_key`` / ``up_to_key`` (a continuing page's cursor key) replace the prefix's
    bound on the side the page is read from: given both, SQLite may start the index read at
    the prefix and filter its way to the cursor, which makes deep pages slow."""
    key = _KEY[prefix.field]
    conditions = [
        key >= (prefix.text if from_key is None else from_key),
        sa.func.substr(key, 1, len(prefix.text)) == prefix.text,
    ]
    if up_to_key is not None:
        conditions.append(key <= up_to_key)
    elif (end := prefix_end(prefix.text)) is not None:
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


def _of_merchant(conn: AsyncConnection, merchant_id: MerchantId) -> sa.ColumnElement[bool]:
    """SQLite's statistics average over merchants and may pick a rowid scan for one
    merchant's customers, which walks past every other merchant's: telling it the merchant
    is selective keeps it on the ``(merchant_id, id)`` index."""
    mine: sa.ColumnElement[bool] = customers.c.merchant_id == merchant_id
    if conn.dialect.name == "sqlite":
        mine = sa.func.likelihood(mine, sa.literal_column("0.001"))
    return mine


def _alternative_select(
    columns: Sequence[sa.ColumnElement[Any]],
    merchant_id: MerchantId,
    alternatives: Sequence[Alternative],
    index: int,
    *,
    cursor: tuple[str, CustomerId] | None = None,
    backwards: bool = False,
) -> sa.Select[Any]:
    """The customers listed under ``alternatives[index]`` (those no earlier one matches), in
    its order or (``backwards``) the reverse, from the cursor on (excluded)."""
    alternative = alternatives[index]
    key = _KEY[alternative.order_field]
    first, *others = alternative.prefixes
    bound = {} if cursor is None else {"up_to_key" if backwards else "from_key": cursor[0]}
    select = sa.select(*columns).where(
        customers.c.merchant_id == merchant_id,
        _starts_with(first, **bound),
        *(_starts_with(p) for p in others),
        *(sa.not_(_matched_earlier(earlier)) for earlier in alternatives[:index]),
    )
    if cursor is None:
        pass
    elif backwards:
        select = select.where(sa.tuple_(key, customers.c.id) < sa.tuple_(*cursor))
    else:
        select = select.where(sa.tuple_(key, customers.c.id) > sa.tuple_(*cursor))
    if backwards:
        return select.order_by(key.desc(), customers.c.id.desc())
    return select.order_by(key, customers.c.id)


async def search_rows(
    conn: AsyncConnection,
    columns: Sequence[sa.ColumnElement[Any]],
    merchant_id: MerchantId,
    query: CustomerQuery,
    *,
    after_id: CustomerId | None,
    limit: int,
    before_id: CustomerId | None = None,
) -> list[Any]:
    """A page in the listing's order: after ``after_id``, or the ``limit`` customers right
    before ``before_id`` (read backwards, returned in the listing's order)."""
    mine = customers.c.merchant_id == merchant_id
    cursor_id = after_id if before_id is None else before_id
    backwards = before_id is not None
    if query.referral_code is not None:
        if cursor_id is not None:
            return []
        found = await conn.execute(
            sa.select(*columns).where(mine, customers.c.referral_code == query.referral_code)
        )
        return list(found)
    if query.is_everyone:  # the (merchant_id, id) index, newest first
        everyone = sa.select(*columns).where(_of_merchant(conn, merchant_id))
        if backwards:
            everyone = everyone.where(customers.c.id > cursor_id).order_by(customers.c.id)
            return list(reversed(list(await conn.execute(everyone.limit(limit)))))
        if cursor_id is not None:
            everyone = everyone.where(customers.c.id < cursor_id)
        return list(await conn.execute(everyone.order_by(customers.c.id.desc()).limit(limit)))

    alternatives = query.alternatives
    start, cursor = (len(alternatives) - 1 if backwards else 0), None
    if cursor_id is not None:
        keys_row = (
            await conn.execute(sa.select(*_KEY.values()).where(mine, customers.c.id == cursor_id))
        ).first()
        if keys_row is None:
            return []
        keys: dict[SearchField, str | None] = dict(zip(_KEY, keys_row, strict=True))
        start = next((i for i, alt in enumerate(alternatives) if alt.matches(keys)), -1)
        if start < 0:
            return []
        cursor = (keys[alternatives[start].order_field] or "", cursor_id)

    rows: list[Any] = []
    order = range(start, -1, -1) if backwards else range(start, len(alternatives))
    for index in order:
        select = _alternative_select(
            columns,
            merchant_id,
            alternatives,
            index,
            cursor=cursor if index == start else None,
            backwards=backwards,
        )
        rows.extend(await conn.execute(select.limit(limit - len(rows))))
        if len(rows) >= limit:
            break
    return list(reversed(rows)) if backwards else rows


async def count_rows(
    conn: AsyncConnection, merchant_id: MerchantId, query: CustomerQuery, *, at_most: int
) -> int:
    """How many customers the query lists, counting at most ``at_most + 1`` (a count of a
    million customers would cost as much as reading them)."""
    mine = customers.c.merchant_id == merchant_id
    if query.referral_code is not None:
        selects = [
            sa.select(customers.c.id).where(mine, customers.c.referral_code == query.referral_code)
        ]
    elif query.is_everyone:
        selects = [sa.select(customers.c.id).where(_of_merchant(conn, merchant_id))]
    else:
        selects = [
            _alternative_select([customers.c.id], merchant_id, query.alternatives, index).order_by(
                None
            )
            for index in range(len(query.alternatives))
        ]
    counted = 0
    for select in selects:
        capped = select.limit(at_most + 1 - counted).subquery()
        counted += int(
            (await conn.execute(sa.select(sa.func.count()).select_from(capped))).scalar_one()
        )
        if counted > at_most:
            break
    return counted
