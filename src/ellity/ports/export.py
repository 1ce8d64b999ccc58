"""Export port: a table turned into bytes a piece at a time, for a download or a file.

The use case says what each column holds (``Column.kind``); the encoder decides what that
means for its format (CSV quoting, neutralising spreadsheet formulas). An encoder keeps no
state between calls, so the one instance in ``Deps`` serves any number of exports at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

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

    def header(self, columns: Sequence[Column]) -> bytes:
        """The header row."""
        ...

    def rows(self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bytes:
        """A batch of rows, each with one cell per column, in the order of ``columns``."""
        ...
