"""Export port: a table turned into bytes a piece at a time, for a download or a file.

The use case says what each column holds (``Column.kind``); the encoder decides what that
means for its format (CSV quoting, neutralising spreadsheet formulas). An encoder keeps no
state between calls, so the one instance in ``Deps`` serves any number of exports at once.

A ``CustomerRowSource`` is storage that writes the customer export's rows itself, already
encoded, so that a large export does not turn every value into a Python object and back
(PRODUCT §3 at a million customers). Its bytes must be exactly those the use case would get
from the contact snapshots and the encoder of the same ``format``; a contract test on every
backend holds it to that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol

from ellity.domain.model.contact import ProgrammeLook
from ellity.domain.model.ids import MerchantId

#: ``number``: an int, or a number as display text (``1 250,50``, ``-120``);
#: ``date``: ``YYYY-MM-DD``; ``text``: anything else (names, emails, codes, links, PINs).
CellKind = Literal["text", "number", "date"]

#: An empty string is an empty cell.
Cell = str | int


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: CellKind = "text"


class TableEncoder(Protocol):
    #: What a download of the encoded table is served as, e.g. ``text/csv; charset=utf-8``.
    media_type: str
    #: The file name extension without the dot, e.g. ``csv``.
    file_extension: str
    #: Names the exact bytes the encoder writes (``csv``: the CSV of ``adapters.csv_export``);
    #: a ``CustomerRowSource`` of the same format writes the same bytes for the same rows.
    format: str

    def header(self, columns: Sequence[Column]) -> bytes:
        """The header row."""
        ...

    def rows(self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bytes:
        """A batch of rows, each with one cell per column, in the order of ``columns``."""
        ...


@dataclass(frozen=True, slots=True)
class EncodedRows:
    """``count`` rows of a table, already encoded (no header)."""

    data: bytes
    count: int


class CustomerRowSource(Protocol):
    """The customer export's rows (``domain.services.export.EXPORT_TABLE``), encoded by storage.

    One row per customer of the merchant, in id order, a page of at most ``batch_size`` rows at
    a time, each page read in a short read-only transaction; memory stays constant however
    many customers there are. ``look`` shapes the values as in ``contact_snapshot``.
    """

    #: The ``TableEncoder.format`` whose bytes the pages hold.
    format: str

    def pages(
        self, merchant_id: MerchantId, look: ProgrammeLook, *, batch_size: int, today: date
    ) -> AsyncIterator[EncodedRows]:
        """Pages with at least one row each; none for a merchant without customers. The
        values are those valid on ``today`` (the merchant's local date): points past their
        expiry are left out even before the nightly run has expired them."""
        ...
