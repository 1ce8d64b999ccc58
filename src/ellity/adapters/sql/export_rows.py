"""The customer export's CSV rows written by the database (``ports.export.CustomerRowSource``).

Every value is formatted in SQL the way ``contact_snapshot`` and ``CsvTableEncoder`` do it in
Python; tests/integration/test_export_rows_contract.py holds the two to the same bytes on
SQLite and PostgreSQL. The rules, column by column (``domain.services.export.EXPORT_TABLE``):

- every string cell is quoted with ``"`` doubled inside, ints are bare
  (``csv.QUOTE_NONNUMERIC``), and each line ends with ``\\r\\n``;
- text cells (email, names, PIN, registered, referral code and link) that start with one of
  ``FORMULA_STARTS`` get a ``'`` in front; number and date cells are made here from integers
  and dates, so they are always strictly numbers or ISO dates and are never touched;
- display numbers: ``-`` when negative, whole points grouped by thousands (``1 250`` cs,
  ``1,250`` en), then the decimal mark and two digits only when there are hundredths;
- whole numbers round down (``-0.50`` is ``-1``);
- nothing expiring or no change yet: empty cells and ``0``; a registered member's PIN is empty;
- the referral link is the template with the shop URL (no trailing slash) and the code, or
  empty while the template needs a shop URL that is not set.

A page is one query over a range of customer ids, whose one value is all its lines
concatenated in id order by the database (``group_concat`` / ``string_agg``) and returned as
bytes: Python only passes them on. Where each page ends is read first (an index-only query),
so ``PAGES_IN_FLIGHT`` pages are formatted at once on their own connections while the one
before them is handed over.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.csv_export import CSV_FORMAT, FORMULA_STARTS, inert
from ellity.adapters.sql.database import Database
from ellity.adapters.sql.valid_points import STALE_SQL, STORED_SQL, VALID_SQL, ValidSummary
from ellity.domain.model.contact import ProgrammeLook
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.referral import referral_link
from ellity.ports.export import CustomerRowSource, EncodedRows

#: The thousands separator and the decimal mark of ``Points.display`` per locale.
SEPARATORS: dict[str, tuple[str, str]] = {"cs": (" ", ","), "en": (",", ".")}

# The export's columns, by how each is written (see the module docstring).
_TEXT, _NUMBER, _INT, _PLAIN = "text", "number", "int", "plain"
_CELLS: tuple[str, ...] = (
    *(_TEXT, _TEXT, _TEXT),  # email, first_name, last_name
    *(_NUMBER, _INT, _TEXT, _PLAIN),  # credit, credit_num, pin, registered
    *(_PLAIN, _NUMBER, _INT),  # next expiration: date, value, value_num
    *(_PLAIN, _NUMBER),  # last change: date, value
    *(_TEXT, "link"),  # referral code and link
)


def _valid_on_today(line: Callable[[ValidSummary], str]) -> str:
    """A customer's line with the points valid on ``:today`` (``valid_points``): built from
    the stored summary, or, for a row holding points past their expiry, from its lots."""
    return f"CASE WHEN {STALE_SQL} THEN {line(VALID_SQL)} ELSE {line(STORED_SQL)} END"


# -- SQLite ----------------------------------------------------------------------------------
#
# SQLite 3.40 builds a line fastest with one printf per row ("%w" doubles double quotes), and
# every argument and every function call on a row costs (even on constants, inside a CASE).
# So: a cell that may need a "'" tests its first character with a comparison before it calls
# GLOB; a display number is two arguments (whole points, hundredths as "%02d") and the line's
# format is one of eight, chosen by which of the three numbers have hundredths; and what is
# the same on every row, the referral link around its code, is worked out by a first query
# (``_SQLITE_LINK``) and goes into the formats, so a row only adds its code.


def _glob_class(chars: tuple[str, ...]) -> str:
    """A GLOB pattern for text that starts with one of ``chars`` (single characters)."""
    if any(len(char) != 1 or char in "]^" for char in chars):
        raise ValueError("formula starts must be single characters other than ] and ^")
    ordered = sorted(chars, key=lambda char: char == "-")  # a "-" is literal only at the end
    return "[" + "".join(ordered) + "]*"


#: GLOB pattern of text a spreadsheet may run as a formula (``FORMULA_STARTS``).
FORMULA_GLOB = _glob_class(FORMULA_STARTS)
#: Text from this one on starts after every formula start, so it needs no GLOB.
FORMULA_ABOVE = chr(max(map(ord, FORMULA_STARTS)) + 1)


def _sqlite_text(value: str) -> str:
    return (
        f"CASE WHEN {value} < :formula_above AND {value} GLOB :formula_glob"
        f" THEN '''' || {value} ELSE {value} END"
    )


def _sqlite_whole(cents: str) -> str:
    """The signed whole points of display text (an int while no grouping is needed)."""
    return (
        f"CASE WHEN {cents} BETWEEN 0 AND 99999 THEN {cents} / 100"
        f" WHEN {cents} < 0 AND {cents} > -100 THEN '-0'"
        f" WHEN {cents} BETWEEN -99999 AND 99999 THEN {cents} / 100"
        f" ELSE replace(printf('%,d', {cents} / 100), ',', :thousands) END"
    )


def _rounded_down(cents: str) -> str:
    """Whole points rounded towards minus infinity (integer division truncates)."""
    return f"CASE WHEN {cents} >= 0 THEN {cents} / 100 ELSE ({cents} + 1) / 100 - 1 END"


def _unless(condition: str, value: str, otherwise: str = "''") -> str:
    return f"CASE WHEN {condition} THEN {otherwise} ELSE {value} END"


_FILLED = (  # the template with the shop URL filled in, or empty while that is missing
    "CASE WHEN instr(:template, '{shop_url}') > 0 AND :shop_url = '' THEN ''"
    " ELSE replace(:template, '{shop_url}', rtrim(:shop_url, '/')) END"
)


def _sqlite_link_query() -> str:
    """The filled template, the link cell's printf format, and whether the format holds it.

    When the filled template has one ``{code}`` after some text, the format is that text
    (escaped, with a "'" when it starts like a formula) around a ``%w`` for the code, and the
    row's second link argument is skipped. Otherwise the row gives the whole link, neutralised
    like any text cell, as its second argument, and its first one (the code) is skipped.
    """
    at = "instr(filled, '{code}')"
    head, tail = f"substr(filled, 1, {at} - 1)", f"substr(filled, {at} + 6)"
    around_code = f"{at} > 1 AND instr({tail}, '{{code}}') = 0"

    def escaped(text: str) -> str:
        return f"""replace(replace({text}, '%', '%%'), '"', '""')"""

    quote = f"CASE WHEN {head} GLOB :formula_glob THEN '''' ELSE '' END"
    cell = (
        f"""CASE WHEN filled = '' THEN '""%.0s%.0s'"""
        f""" WHEN {around_code} THEN '"' || {quote} || {escaped(head)} || '%w'"""
        f""" || {escaped(tail)} || '"%.0s' ELSE '"%.0s%w"' END"""
    )
    holds = f"filled = '' OR ({around_code})"
    return f"SELECT filled, {cell}, {holds} FROM (SELECT {_FILLED} AS filled) AS look"  # noqa: S608


_SQLITE_LINK = _sqlite_link_query()

#: Where the link cell's format goes in a line's format.
_LINK_CELL = "{link}"


def _sqlite_formats(decimal_mark: str, link_cell: str) -> list[str]:
    """The eight printf formats of a line; bit ``1 << k`` set: number ``k`` has hundredths."""
    mark = decimal_mark.replace("%", "%%")
    cells = {_TEXT: '"%w"', _INT: "%d", _PLAIN: '"%s"', "link": link_cell}
    formats = []
    for variant in range(8):
        parts, number = [], 0
        for kind in _CELLS:
            if kind == _NUMBER:
                hundredths = f"{mark}%02d" if variant & (1 << number) else "%.0s"
                parts.append(f'"%s{hundredths}"')
                number += 1
            else:
                parts.append(cells[kind])
        formats.append(",".join(parts) + "\r\n")
    return formats


def _sqlite_line(held: ValidSummary) -> str:
    balance, expiring = held.balance_cents, held.next_expiry_cents
    changed = "coalesce(c.last_change_cents, 0)"
    no_expiry, no_change = f"{held.next_expiry_on} IS NULL", "c.last_change_on IS NULL"
    has_hundredths = [
        f"{balance} % 100 <> 0",
        f"{expiring} % 100 <> 0 AND NOT {no_expiry}",
        f"{changed} % 100 <> 0 AND NOT {no_change}",
    ]

    def line_format(bit: int = 2, variant: int = 0) -> str:
        if bit < 0:
            return f":format{variant}"
        with_bit = line_format(bit - 1, variant | (1 << bit))
        without = line_format(bit - 1, variant)
        return f"CASE WHEN {has_hundredths[bit]} THEN {with_bit} ELSE {without} END"

    whole_link = _sqlite_text("replace(:filled, '{code}', c.referral_code)")
    arguments = [
        _sqlite_text("coalesce(c.email, '')"),
        _sqlite_text("c.first_name"),
        _sqlite_text("c.last_name"),
        _sqlite_whole(balance),
        f"abs({balance}) % 100",
        _rounded_down(balance),
        _unless("c.registered", _sqlite_text("coalesce(c.pin, '')")),
        "CASE WHEN c.registered THEN 'registered' ELSE 'anonymous' END",
        f"coalesce({held.next_expiry_on}, '')",
        _unless(no_expiry, _sqlite_whole(expiring)),
        f"abs({expiring}) % 100",
        _unless(no_expiry, _rounded_down(expiring), "0"),
        "coalesce(c.last_change_on, '')",
        _unless(no_change, _sqlite_whole(changed)),
        f"abs({changed}) % 100",
        _sqlite_text("c.referral_code"),
        "c.referral_code",
        _unless(":link_in_format", whole_link),
    ]
    return f"printf({line_format()}, {', '.join(arguments)})"


# Built from the constant fragments above; every value is a bound parameter. The LIMIT keeps
# the ORDER BY, and group_concat takes the rows in the order they come.
_SQLITE_PAGE = f"""
SELECT count(*), max(id), count(line), CAST(group_concat(line, '') AS BLOB) FROM (
  SELECT c.id, {_valid_on_today(_sqlite_line)} AS line
  FROM customers c
  WHERE c.merchant_id = :merchant_id AND c.id > :after_id AND c.id <= :last_id
  ORDER BY c.id LIMIT :cap
)"""  # noqa: S608


async def _sqlite_parameters(conn: AsyncConnection, look: ProgrammeLook) -> dict[str, Any]:
    thousands, decimal_mark = SEPARATORS[look.locale]
    parameters: dict[str, Any] = {
        "thousands": thousands,
        "template": look.referral_link_template,
        "shop_url": look.shop_url,
        "formula_glob": FORMULA_GLOB,
        "formula_above": FORMULA_ABOVE,
    }
    filled, link_cell, in_format = (await conn.execute(_SQLITE_LINK_SQL, parameters)).one()
    formats = _sqlite_formats(decimal_mark, link_cell)
    parameters |= {f"format{variant}": text for variant, text in enumerate(formats)}
    return parameters | {"filled": filled, "link_in_format": bool(in_format)}


_SQLITE_LINK_SQL = sa.text(_SQLITE_LINK)


# -- PostgreSQL ------------------------------------------------------------------------------


# What a PostgreSQL page costs is the work of each row's expressions (the index gives a page's
# 20,000 rows in milliseconds), so each rule takes its cheapest form: a formula start is found
# by the code of the first character (``ascii``: integer comparisons); a number below 1,000
# points is a plain cast (``to_char`` is slow, only the grouping needs it); a date is a cast,
# ISO under the page's ``DateStyle``; the referral link's template is filled once, in Python
# (``referral_link`` with the code left as ``{code}``); and a line is one ``concat`` of its
# pieces (a chain of ``||`` copies the growing line at every step).
_FORMULA_CODES = ", ".join(str(ord(char)) for char in FORMULA_STARTS)
_QUOTE = """'"'"""


def _pg_text(value: str) -> list[str]:
    neutral = (
        f"CASE WHEN ascii({value}) IN ({_FORMULA_CODES}) THEN '''' || {value} ELSE {value} END"
    )
    return [_QUOTE, f"""replace({neutral}, '"', '""')""", _QUOTE]


def _pg_number(cents: str) -> list[str]:
    whole = (
        f"CASE WHEN {cents} > -100 AND {cents} < 0 THEN '-0'"
        f" WHEN {cents} > -100000 AND {cents} < 100000 THEN CAST({cents} / 100 AS TEXT)"
        f" ELSE replace(to_char({cents} / 100, 'FM999,999,999,999,999,999,990'), ',',"
        " CAST(:thousands AS TEXT)) END"
    )
    hundredths = (
        f"CASE WHEN {cents} % 100 = 0 THEN ''"
        f" ELSE CAST(:decimal_mark AS TEXT) || substr(CAST(abs({cents}) % 100 + 100 AS TEXT), 2)"
        " END"
    )
    return [_QUOTE, whole, hundredths, _QUOTE]


def _concat(pieces: list[str]) -> str:
    return f"concat({', '.join(pieces)})"


def _pg_line(held: ValidSummary) -> str:
    link = "replace(CAST(:filled AS TEXT), '{code}', c.referral_code)"
    no_expiry, no_change = f"{held.next_expiry_on} IS NULL", "c.last_change_on IS NULL"
    empty = """'""'"""
    cells = [
        _pg_text("coalesce(c.email, '')"),
        _pg_text("c.first_name"),
        _pg_text("c.last_name"),
        _pg_number(held.balance_cents),
        [f"CAST({_rounded_down(held.balance_cents)} AS TEXT)"],
        [_unless("c.registered", _concat(_pg_text("coalesce(c.pin, '')")), empty)],
        ["""CASE WHEN c.registered THEN '"registered"' ELSE '"anonymous"' END"""],
        [_unless(no_expiry, f"""'"' || CAST({held.next_expiry_on} AS TEXT) || '"'""", empty)],
        [_unless(no_expiry, _concat(_pg_number(held.next_expiry_cents)), empty)],
        [_unless(no_expiry, f"CAST({_rounded_down(held.next_expiry_cents)} AS TEXT)", "'0'")],
        [_unless(no_change, """'"' || CAST(c.last_change_on AS TEXT) || '"'""", empty)],
        [_unless(no_change, _concat(_pg_number("coalesce(c.last_change_cents, 0)")), empty)],
        _pg_text("c.referral_code"),
        [
            # the link's cell around the code, made once (``_pg_parameters``), when it can be
            """CASE WHEN CAST(:link_around_code AS BOOLEAN) THEN concat(CAST(:link_head AS TEXT),"""
            """ replace(c.referral_code, '"', '""'), CAST(:link_tail AS TEXT))"""
            f" ELSE {_concat(_pg_text(link))} END"
        ],
    ]
    pieces = [piece for cell in cells for piece in (*cell, "','")]
    return _concat([*pieces[:-1], "chr(13)", "chr(10)"])


_PG_PAGE = f"""
SELECT count(*), max(id), count(line),
  convert_to(string_agg(line, '' ORDER BY id), 'UTF8') FROM (
  SELECT c.id, {_valid_on_today(_pg_line)} AS line
  FROM customers c
  WHERE c.merchant_id = :merchant_id AND c.id > :after_id AND c.id <= :last_id
  ORDER BY c.id LIMIT :cap
) AS page"""  # noqa: S608


async def _pg_parameters(_: AsyncConnection, look: ProgrammeLook) -> dict[str, Any]:
    thousands, decimal_mark = SEPARATORS[look.locale]
    filled = referral_link(look.referral_link_template, shop_url=look.shop_url, code="{code}")
    head, code, tail = filled.partition("{code}")
    # One code after some text: that text decides whether the cell needs a "'", and the
    # cell is the quoted text around the row's code; otherwise each row works out its link.
    around_code = bool(code and head) and "{code}" not in tail
    return {
        "thousands": thousands,
        "decimal_mark": decimal_mark,
        "filled": filled,
        "link_around_code": around_code,
        "link_head": '"' + inert(head).replace('"', '""'),
        "link_tail": tail.replace('"', '""') + '"',
    }


# -- both --------------------------------------------------------------------------------------


#: The last customer id of the page that starts after ``:after_id``: an index-only read of the
#: page's ids, milliseconds, so that the page after it can start before this one is formatted.
_PAGE_END = sa.text(
    "SELECT max(id) FROM (SELECT id FROM customers"
    " WHERE merchant_id = :merchant_id AND id > :after_id ORDER BY id LIMIT :limit) AS ids"
)

#: Pages formatted at once, each by its own connection. The database formats a page on one
#: core; with two in flight a second core works too, while Python hands the lines over.
PAGES_IN_FLIGHT = 2

#: The page query's own LIMIT, well above ``batch_size``: it keeps the subquery's ORDER BY on
#: SQLite, and a page that reached it (customers committed into a range after its end was
#: read, twice a page's worth) is refused rather than cut short.
_CAP_FACTOR = 2

#: PostgreSQL settings of each page's transaction (``set_config(..., true)``: that
#: transaction only), whatever the server's defaults:
#: - ``jit``: a page's cost estimate is above ``jit_above_cost``, and compiling its
#:   expressions takes longer (seconds) than running them without JIT (a fraction of that);
#: - ``work_mem``: the ``string_agg(... ORDER BY id)`` sort of a page's lines (some MB) then
#:   stays in memory instead of spilling to a temporary file under the default 4 MB;
#: - ``DateStyle``: ``CAST(date AS TEXT)`` is ``YYYY-MM-DD``.
_PG_SESSION = sa.text(
    "SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true),"
    " set_config('DateStyle', 'ISO, YMD', true)"
)


class SqlCustomerRowSource(CustomerRowSource):
    """``CustomerRowSource`` in ``CsvTableEncoder``'s CSV, on SQLite or PostgreSQL."""

    format = CSV_FORMAT

    def __init__(self, database: Database) -> None:
        self._database = database
        self.page_parameters: Callable[[AsyncConnection, ProgrammeLook], Awaitable[dict[str, Any]]]
        if database.is_sqlite:
            self.page_sql, self.page_parameters = sa.text(_SQLITE_PAGE), _sqlite_parameters
        else:
            self.page_sql, self.page_parameters = sa.text(_PG_PAGE), _pg_parameters

    async def pages(
        self, merchant_id: MerchantId, look: ProgrammeLook, *, batch_size: int, today: date
    ) -> AsyncIterator[EncodedRows]:
        if batch_size < 1:
            raise ValueError("a page holds at least one customer")
        async with self._database.engine.connect() as conn:
            shape = await self.page_parameters(conn, look)
        # SQLite keeps dates as ISO text; PostgreSQL compares real dates.
        on = today.isoformat() if self._database.is_sqlite else today
        shape |= {"merchant_id": merchant_id, "today": on}
        bounds = {"merchant_id": merchant_id, "limit": batch_size}
        cap = batch_size * _CAP_FACTOR
        in_flight: deque[asyncio.Future[EncodedRows | None]] = deque()
        after_id: int | None = 0
        try:
            while True:
                while after_id is not None and len(in_flight) < PAGES_IN_FLIGHT:
                    last_id = await self._page_end({**bounds, "after_id": after_id})
                    if last_id is not None:
                        ids = {"after_id": after_id, "last_id": last_id, "cap": cap}
                        in_flight.append(asyncio.ensure_future(self._page(shape | ids)))
                    after_id = last_id
                if not in_flight:
                    return
                page = await in_flight.popleft()
                if page is not None:
                    yield page
        finally:
            for waiting in in_flight:
                waiting.cancel()

    async def read_page(
        self, conn: AsyncConnection, parameters: dict[str, Any]
    ) -> tuple[int, int, bytes | None]:
        """How many customers, how many lines, and the lines, of the page query run in
        ``conn``'s transaction with the page's settings (``_PG_SESSION``)."""
        if not self._database.is_sqlite:
            await conn.execute(_PG_SESSION)
        count, _, lines, data = (await conn.execute(self.page_sql, parameters)).one()
        return int(count), int(lines), data

    async def _page_end(self, parameters: dict[str, Any]) -> int | None:
        async with self._database.engine.connect() as conn:
            last_id = (await conn.execute(_PAGE_END, parameters)).scalar_one()
        return None if last_id is None else int(last_id)

    async def _page(self, parameters: dict[str, Any]) -> EncodedRows | None:
        """The lines of the customers in ``(after_id, last_id]``; ``None`` when there are none
        (all deleted meanwhile)."""
        async with self._database.engine.connect() as conn:
            count, lines, data = await self.read_page(conn, parameters)
        if not count or data is None:
            return None
        if count >= parameters["cap"]:
            raise RuntimeError(f"{count} customers in one export page, more than it may hold")
        if lines != count:  # a NULL line would vanish from the page without a trace
            raise RuntimeError(f"{count - lines} of {count} export lines came out empty")
        return EncodedRows(bytes(data), count)
