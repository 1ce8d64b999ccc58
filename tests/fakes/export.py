"""Export fakes: a table encoder whose output tests can read back, and the customer rows
from the in-memory store."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from ellity.adapters.csv_export import CsvTableEncoder
from ellity.domain.services.export import SnapshotRows
from ellity.ports.export import Cell, Column, CustomerRowSource, TableEncoder
from tests.fakes.storage.unit_of_work import InMemoryStore


class JsonLinesTableEncoder(TableEncoder):
    """A table as JSON lines: ints stay ints, so tests see exactly what the use case handed
    over. ``decode`` reads the bytes back."""

    media_type = "application/jsonl"
    file_extension = "jsonl"
    format = "jsonl"

    def header(self, columns: Sequence[Column]) -> bytes:
        return self._lines([{"header": [column.name for column in columns]}])

    def rows(self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> bytes:
        return self._lines([{"row": list(row)} for row in rows])

    @staticmethod
    def _lines(items: Iterable[object]) -> bytes:
        return b"".join(json.dumps(item, ensure_ascii=False).encode() + b"\n" for item in items)

    @staticmethod
    def decode(data: bytes) -> tuple[list[str], list[list[Cell]]]:
        """The header and the rows."""
        items = [json.loads(line) for line in data.decode().split("\n") if line]
        if not items or "header" not in items[0]:
            raise ValueError("the table does not start with its header")
        return items[0]["header"], [item["row"] for item in items[1:]]


class InMemoryCustomerRowSource(SnapshotRows, CustomerRowSource):
    """The export's rows from the in-memory store in CSV, the Python way (contact snapshots
    and ``CsvTableEncoder``): the bytes ``SqlCustomerRowSource`` must write for the same data."""

    def __init__(self, store: InMemoryStore) -> None:
        super().__init__(store.unit_of_work, CsvTableEncoder())
