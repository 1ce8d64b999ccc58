"""Points: exact parsing, display in both locales, the whole-number form."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.money import MAX_HUNDREDTHS, Points


@pytest.mark.parametrize(
    ("value", "hundredths"),
    [
        ("12.50", 1250),
        ("12.5", 1250),
        ("12", 1200),
        (" 7.05 ", 705),
        ("0.05", 5),
        ("-3", -300),
        ("12.500", 1250),
        (12, 1200),
        (0, 0),
        (Decimal("12.5"), 1250),
        (Decimal("0.01"), 1),
        ("1000000000", MAX_HUNDREDTHS),
        ("-1000000000.00", -MAX_HUNDREDTHS),
    ],
)
def test_parse_reads_decimal_strings_ints_and_decimals_exactly(
    value: object, hundredths: int
) -> None:
    assert Points.parse(value) == Points(hundredths)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(12.5, id="float"),
        pytest.param(0.1, id="float-0.1"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
        pytest.param("1.234", id="three-decimals"),
        pytest.param(Decimal("0.001"), id="decimal-three-decimals"),
        pytest.param("1.0000000000000000000000000001", id="beyond-decimal-precision"),
        pytest.param("abc", id="text"),
        pytest.param("", id="empty"),
        pytest.param("12,50", id="decimal-comma"),
        pytest.param("NaN", id="nan"),
        pytest.param("Infinity", id="infinity"),
        pytest.param("-Infinity", id="minus-infinity"),
        pytest.param(Decimal("NaN"), id="decimal-nan"),
        pytest.param("1000000000.01", id="just-over-the-limit"),
        pytest.param(10**12, id="huge-int"),
        pytest.param(10**5000, id="int-too-long-to-print"),
        pytest.param("1e999999", id="decimal-overflow"),
        pytest.param("-1e40", id="huge-negative"),
        pytest.param("1e2", id="exponent-notation"),
        pytest.param("1_000", id="underscore-grouping"),
        pytest.param("\u0661\u0662", id="non-ascii-digits"),
        pytest.param("12.", id="trailing-point"),
    ],
)
def test_parse_refuses_anything_but_an_exact_amount_within_the_limit(value: object) -> None:
    with pytest.raises(InvalidInput):
        Points.parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hundredths", "text"),
    [
        (125050, "1 250,50"),
        (-12000, "-120"),
        (0, "0"),
        (5, "0,05"),
        (50, "0,50"),
        (100_000_000, "1 000 000"),
        (99_999, "999,99"),
        (-125050, "-1 250,50"),
        (123_456_789_01, "123 456 789,01"),
    ],
)
def test_czech_display_groups_thousands_with_spaces_and_uses_a_decimal_comma(
    hundredths: int, text: str
) -> None:
    assert Points(hundredths).display("cs") == text


@pytest.mark.parametrize(
    ("hundredths", "text"),
    [
        (125050, "1,250.50"),
        (-12000, "-120"),
        (0, "0"),
        (5, "0.05"),
        (100_000_000, "1,000,000"),
    ],
)
def test_english_display_groups_thousands_with_commas_and_uses_a_decimal_point(
    hundredths: int, text: str
) -> None:
    assert Points(hundredths).display("en") == text


@pytest.mark.parametrize(
    ("hundredths", "whole"),
    [(125050, 1250), (199, 1), (99, 0), (100, 1), (0, 0), (-50, -1), (-150, -2), (-100, -1)],
)
def test_whole_number_form_rounds_down(hundredths: int, whole: int) -> None:
    assert Points(hundredths).whole() == whole


@pytest.mark.parametrize(
    ("hundredths", "text"), [(1250, "12.50"), (-300, "-3.00"), (5, "0.05"), (0, "0.00")]
)
def test_api_form_always_has_two_decimals(hundredths: int, text: str) -> None:
    assert Points(hundredths).decimal_string() == text
    assert str(Points(hundredths)) == text


def test_api_form_parses_back_to_the_same_amount() -> None:
    for hundredths in (0, 1, 99, 1250, -300, MAX_HUNDREDTHS):
        assert Points.parse(Points(hundredths).decimal_string()) == Points(hundredths)


def test_points_add_subtract_negate_and_compare_exactly() -> None:
    a, b = Points.parse("0.10"), Points.parse("0.20")
    assert a + b == Points.parse("0.30")
    assert b - a == a
    assert -a == Points(-10)
    assert a < b
    assert not Points.zero()
    assert a.is_positive() and not (-a).is_positive() and not Points.zero().is_positive()
