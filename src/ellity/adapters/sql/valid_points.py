"""A customer's summary as of a local date, read from the stored summary columns.

Customer rows keep their ledger summary (``balance_cents``, ``next_expiry_on``,
``next_expiry_cents``) as the last change or nightly expiry left it. Between the expiry
instant of a lot (local midnight after its last valid day) and the nightly run that writes its
``expire`` entry, those columns still count the lot. Every read therefore asks for the summary
*on* the merchant's local date: a row whose ``next_expiry_on`` lies before that date holds
points past their expiry, and only for such a row the values are worked out again from its
open lots (``ix_point_lots_open_by_customer``), leaving out the lots whose last valid day has
passed. Every other row costs one comparison and reads its stored columns.

``valid_summary`` gives the three values as SQLAlchemy expressions on ``customers``;
``valid_summary_sql`` the same as SQL text for the hand-written export queries (alias ``c``,
the date bound as ``:today``); ``loyalty_columns`` selects a customer's identity and marketing
consent with that summary and ``loyalty_of`` reads such a row back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa

from ellity.adapters.sql.tables.customers import customers
from ellity.adapters.sql.tables.ledger import point_lots
from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.ledger import Expiration, LastChange, LedgerSummary
from ellity.domain.model.money import Points

# Written into the SQL, not bound, so that both databases can prove the partial index's
# ``WHERE remaining_cents > 0`` from the query.
_HOLDS: sa.ColumnClause[int] = sa.literal_column("0", sa.BigInteger())


@dataclass(frozen=True, slots=True)
class ValidSummary:
    balance_cents: Any
    next_expiry_on: Any
    next_expiry_cents: Any


def valid_summary(today: date | sa.BindParameter[date]) -> ValidSummary:
    """The balance and next expiration of the ``customers`` row being read, on ``today`` (a
    day, or a value bound when the query runs)."""
    day = today if isinstance(today, sa.BindParameter) else sa.literal(today, sa.Date())
    stale = customers.c.next_expiry_on < day
    past, first, held = (point_lots.alias(name) for name in ("past_lot", "first_lot", "held_lot"))
    # sum() of a BIGINT is a NUMERIC on PostgreSQL: cast back to whole hundredths.
    expired = (
        sa.select(sa.cast(sa.func.coalesce(sa.func.sum(past.c.remaining_cents), 0), sa.BigInteger))
        .where(past.c.customer_id == customers.c.id, past.c.remaining_cents > _HOLDS)
        .where(past.c.expires_on < day)
        .correlate(customers)
        .scalar_subquery()
    )
    first_day = (
        sa.select(sa.func.min(first.c.expires_on))
        .where(first.c.customer_id == customers.c.id, first.c.remaining_cents > _HOLDS)
        .where(first.c.expires_on >= day)
        .correlate(customers)
        .scalar_subquery()
    )
    # What the first valid day's lots hold: one ordered probe of the index, first group only.
    on_first_day = (
        sa.select(sa.cast(sa.func.sum(held.c.remaining_cents), sa.BigInteger))
        .where(held.c.customer_id == customers.c.id, held.c.remaining_cents > _HOLDS)
        .where(held.c.expires_on >= day)
        .group_by(held.c.expires_on)
        .order_by(held.c.expires_on)
        .limit(1)
        .correlate(customers)
        .scalar_subquery()
    )
    return ValidSummary(
        balance_cents=sa.case(
            (stale, customers.c.balance_cents - expired), else_=customers.c.balance_cents
        ),
        next_expiry_on=sa.case((stale, first_day), else_=customers.c.next_expiry_on),
        next_expiry_cents=sa.case(
            (stale, sa.func.coalesce(on_first_day, 0)), else_=customers.c.next_expiry_cents
        ),
    )


#: Is the row ``c`` holding points past their expiry on ``:today``?
STALE_SQL = "c.next_expiry_on < :today"

_FIRST_DAY_SQL = (
    "(SELECT min(l.expires_on) FROM point_lots l WHERE l.customer_id = c.id"
    " AND l.remaining_cents > 0 AND l.expires_on >= :today)"
)

#: Valid-on-``:today`` values of row ``c``, for rows where ``STALE_SQL`` holds.
VALID_SQL = ValidSummary(
    balance_cents=(
        "(c.balance_cents - (SELECT CAST(coalesce(sum(l.remaining_cents), 0) AS BIGINT)"
        " FROM point_lots l"
        " WHERE l.customer_id = c.id AND l.remaining_cents > 0 AND l.expires_on < :today))"
    ),
    next_expiry_on=_FIRST_DAY_SQL,
    next_expiry_cents=(
        "coalesce((SELECT CAST(sum(l.remaining_cents) AS BIGINT) FROM point_lots l"
        " WHERE l.customer_id = c.id AND l.remaining_cents > 0 AND l.expires_on >= :today"
        " GROUP BY l.expires_on ORDER BY l.expires_on LIMIT 1), 0)"
    ),
)

#: The stored values of row ``c`` (right for every row where ``STALE_SQL`` does not hold).
STORED_SQL = ValidSummary(
    balance_cents="c.balance_cents",
    next_expiry_on="c.next_expiry_on",
    next_expiry_cents="c.next_expiry_cents",
)


def loyalty_columns(today: date | sa.BindParameter[date]) -> tuple[Any, ...]:
    """Identity and the summary valid on ``today`` (``valid_points``)."""
    held = valid_summary(today)
    return (
        customers.c.id,
        customers.c.email,
        customers.c.first_name,
        customers.c.last_name,
        customers.c.registered,
        customers.c.pin,
        customers.c.referral_code,
        held.balance_cents,
        held.next_expiry_on,
        held.next_expiry_cents,
        customers.c.last_change_on,
        customers.c.last_change_cents,
        customers.c.marketing_consent,
    )


def loyalty_of(row: Any) -> CustomerLoyalty:
    (
        cid,
        email,
        first,
        last,
        registered,
        pin,
        code,
        balance,
        nxt_on,
        nxt_cents,
        last_on,
        last_cents,
        consent,
    ) = row
    return CustomerLoyalty(
        customer_id=CustomerId(cid),
        email=email,
        first_name=first,
        last_name=last,
        registered=registered,
        pin=pin,
        referral_code=code,
        summary=LedgerSummary(
            balance=Points(balance),
            next_expiration=Expiration(nxt_on, Points(nxt_cents)) if nxt_on is not None else None,
            last_change=LastChange(last_on, Points(last_cents)) if last_on is not None else None,
        ),
        marketing_consent=MarketingConsent(consent),
    )
