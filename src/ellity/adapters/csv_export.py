"""CSV for the export: UTF-8 without a BOM, a header row, RFC 4180 quoting, ``\\r\\n`` line ends.

**Formula injection.** A spreadsheet opening the file runs a cell that starts with ``=``,
``+``, ``-`` or ``@`` as a formula (tab and carriage return are stripped first by some, so
they count too): a customer who calls herself ``=HYPERLINK("http://evil", "Click")`` must not
get a live link into the merchant's spreadsheet. Following OWASP ("CSV Injection"), such a cell
gets a single quote in front (``'=HYPERLINK(...)``), which makes it inert text. What a cell
may hold comes from its column's kind (``ports.export.Column``):

- ``text`` (email, first_name, last_name, ellity_pin, ellity_registered,
  ellity_referral_code, ellity_referral_link, and any column not declared otherwise):
  neutralised whenever it starts with one of the characters above. Names and emails are
  typed by customers and shops; codes, PINs and links are only neutralised if they ever
  start that way, which they do not today.
- ``number`` (the ``*_num`` ints ellity_credit_num and ellity_next_expiration_value_num,
  and the display numbers ellity_credit, ellity_next_expiration_value and
  ellity_last_change_value): an int is written as it is (``-120``: a number cannot carry a
  formula); display text is kept only when it is strictly a number — an optional minus,
  digits, and single spaces, commas or points between digits (``-1 250,50``, ``1,250.50``).
  A spreadsheet reads that as a number or as a harmless arithmetic error, never as a call.
  Anything else in a number column is treated as text.
- ``date`` (ellity_next_expiration_date, ellity_last_change_date): kept when it is
  ``YYYY-MM-DD``, otherwise treated as text.

Every string cell is quoted (``csv.QUOTE_NONNUMERIC``; ints are not). Quoting keeps a
separator inside a value from splitting the cell when a spreadsheet uses another list
separator than the comma (Czech Excel splits on ``;``), which would otherwise start a new
cell in the middle of a name: ``Ann;=1+1``.

No BOM: the file is meant for Ecomail's import, and a BOM ends up in the first header name
of importers that do not expect one. Excel needs "Data → From Text/CSV" (UTF-8) for Czech
diacritics instead of a double-click.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence

from ellity.ports.export import Cell, Column

#: ``TableEncoder.format`` of this CSV: ``adapters.sql.export_rows`` writes the same bytes.
CSV_FORMAT = "csv"

#: Cell starts a spreadsheet may run as a formula (OWASP CSV Injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_STRICT_NUMBER = re.compile(r"-?[0-9]+(?:[ ,.][0-9]+)*", re.ASCII)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def inert(value: str) -> str:
    """The text as a spreadsheet will show it but never run it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def safe_cell(value: Cell, kind: str) -> Cell:
    """One cell made safe for a spreadsheet according to its column's kind."""
    if isinstance(value, int):
        return value
    if not value.startswith(FORMULA_STARTS):
        return value
    if kind == "number" and _STRICT_NUMBER.fullmatch(value):
        return value
    if kind == "date" and _ISO_DATE.fullmatch(value):
        return value
    return "'" + value


class CsvTableEncoder:
    media_type = "text/csv; charset=utf-8"
    file_extension = "csv"
    format = CSV_FORMAT

    def header(self, columns: Sequence[Column]) -> bytes:
        return self._encode([[inert(column.name) for column in columns]])

    def rows(self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bytes:
        kinds = [column.kind for column in columns]
        width = len(kinds)
        safe: list[list[Cell]] = []
        for row in rows:
            if len(row) != width:
                raise ValueError(f"a row has {len(row)} cells for {width} columns")
            # Most cells start safely; only those that might not take the slower path.
            safe.append(
                [
                    safe_cell(value, kind)
                    if isinstance(value, str) and value.startswith(FORMULA_STARTS)
                    else value
                    for value, kind in zip(row, kinds)  # noqa: B905 - length checked above
                ]
            )
        return self._encode(safe)

    @staticmethod
    def _encode(rows: Sequence[Sequence[Cell]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")


#: ``TableEncoder.format`` of the file for Excel (``ExcelCsvEncoder``).
EXCEL_FORMAT = "excel-csv"

# A grouping separator of a display number: a space, comma or point before three digits that
# end the number or come before another separator (``1 250,50``, ``1,250.50``, ``12 345``).
_GROUPING = re.compile(r"[ ,.](?=[0-9]{3}(?:[ ,.]|$))", re.ASCII)


def excel_number(value: str) -> str:
    """A display number as a spreadsheet of the same language reads a number: without the
    grouping, with the decimal mark kept (``1 250,50`` → ``1250,50``, ``1,250.50`` →
    ``1250.50``, ``-120`` as it is)."""
    return _GROUPING.sub("", value)


class ExcelCsvEncoder(CsvTableEncoder):
    """The same table for a double-click in Excel, Czech Excel included: UTF-8 with a BOM (so
    Excel reads the diacritics), ``;`` between cells (the list separator of Czech Excel,
    which splits on it) and display numbers without grouping, keeping the merchant's decimal
    mark (a comma for ``cs``), so Excel reads them as numbers. Dates stay ``YYYY-MM-DD``
    (Excel reads them as dates). The cells are made safe exactly as in the CSV for Ecomail:
    a formula never runs."""

    media_type = "text/csv; charset=utf-8"
    file_extension = "csv"
    format = EXCEL_FORMAT

    def header(self, columns: Sequence[Column]) -> bytes:
        return "\ufeff".encode() + super().header(columns)

    def rows(self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bytes:
        numbers = [i for i, column in enumerate(columns) if column.kind == "number"]
        shown: list[list[Cell]] = []
        for row in rows:
            cells = list(row)
            for i in numbers:
                value = cells[i] if i < len(cells) else 0
                if isinstance(value, str) and _STRICT_NUMBER.fullmatch(value):
                    cells[i] = excel_number(value)
            shown.append(cells)
        return super().rows(columns, shown)

    @staticmethod
    def _encode(rows: Sequence[Sequence[Cell]]) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(
            buffer, delimiter=";", quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n"
        )
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")
