"""The customer table as a file for Excel: numbers Excel reads, separators that never split a
cell, and the same formula guard as the file for Ecomail."""

from __future__ import annotations

import csv
import io

import pytest

from ellity.adapters.csv_export import ExcelCsvEncoder, excel_number
from ellity.ports.export import Column


@pytest.mark.parametrize(
    ("shown", "for_excel"),
    [
        ("1 250,50", "1250,50"),  # cs
        ("-1 234 567,05", "-1234567,05"),
        ("12,50", "12,50"),  # a decimal comma is not grouping
        ("1,250.50", "1250.50"),  # en
        ("1,250", "1250"),
        ("12.50", "12.50"),
        ("-120", "-120"),
        ("0", "0"),
    ],
)
def test_display_numbers_lose_their_grouping_and_keep_their_decimal_mark(
    shown: str, for_excel: str
) -> None:
    assert excel_number(shown) == for_excel


def test_the_file_starts_with_a_bom_and_separates_cells_with_semicolons() -> None:
    encoder = ExcelCsvEncoder()
    columns = [Column("email"), Column("ellity_credit", "number"), Column("n", "number")]
    data = encoder.header(columns) + encoder.rows(
        columns,
        [["=1+1;x", "1 250,50", 1250], ["Jiří", "-1 250,50", -1250], ["a@b.cz", "-nope", 0]],
    )
    assert data.startswith("\ufeff".encode())
    assert data.count(b"\r\n") == 4
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert table == [
        ["email", "ellity_credit", "n"],
        ["'=1+1;x", "1250,50", "1250"],
        ["Jiří", "-1250,50", "-1250"],
        ["a@b.cz", "'-nope", "0"],  # not a number: guarded as text
    ]
