"""Points: exact amounts with two decimal places, kept as integer hundredths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from ellity.domain.model.errors import InvalidInput

Locale = Literal["cs", "en"]
LOCALES: tuple[Locale, ...] = ("cs", "en")

#: The largest amount one operation may carry (a guard against typos and overflow).
MAX_HUNDREDTHS = 100_000_000_000  # 1 000 000 000.00 points
_MAX_POINTS = Decimal(MAX_HUNDREDTHS).scaleb(-2)
_CENT = Decimal("0.01")

_DECIMAL_TEXT = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$", re.ASCII)

_SEPARATORS: dict[str, tuple[str, str]] = {"cs": (" ", ","), "en": (",", ".")}


@dataclass(frozen=True, order=True, slots=True)
class Points:
    """An exact number of points. Never a float: ``hundredths`` is the whole truth."""

    hundredths: int

    @classmethod
    def zero(cls) -> Points:
        return cls(0)

    @classmethod
    def parse(cls, value: str | int | Decimal) -> Points:
        """Read a decimal string (``"12.50"``), an int or a Decimal; at most two decimals."""
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            raise InvalidInput("Points must be a decimal number such as 12.50.")
        if isinstance(value, str) and not _DECIMAL_TEXT.match(value.strip()):
            raise InvalidInput(
                "'%(value)s' is not a number of points such as 12.50.", value=value[:40]
            )
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise InvalidInput("'%(value)s' is not a number of points.", value=value) from None
        if not number.is_finite():
            raise InvalidInput("'%(value)s' is not a number of points.", value=value)
        # Compare before any arithmetic: Decimal arithmetic rounds to 28 digits and can
        # overflow, which would silently accept extra decimals or raise decimal.Overflow.
        if number.copy_abs() > _MAX_POINTS:
            # Not echoed: str() of a huge int raises ValueError (int_max_str_digits).
            raise InvalidInput(
                "That is more points than one operation may carry (at most %(max)s).",
                max=_MAX_POINTS,
            )
        cents = number.quantize(_CENT)
        if cents != number:
            raise InvalidInput("'%(value)s' has more than two decimal places.", value=value)
        return cls(int(cents.scaleb(2)))

    def __add__(self, other: Points) -> Points:
        return Points(self.hundredths + other.hundredths)

    def __sub__(self, other: Points) -> Points:
        return Points(self.hundredths - other.hundredths)

    def __neg__(self) -> Points:
        return Points(-self.hundredths)

    def __bool__(self) -> bool:
        return self.hundredths != 0

    def is_positive(self) -> bool:
        return self.hundredths > 0

    def whole(self) -> int:
        """The whole-number form: rounded down (towards minus infinity)."""
        return self.hundredths // 100

    def decimal_string(self) -> str:
        """The API form: always two decimals, ``"12.50"``, ``"-3.00"``."""
        sign = "-" if self.hundredths < 0 else ""
        units, cents = divmod(abs(self.hundredths), 100)
        return f"{sign}{units}.{cents:02d}"

    def display(self, locale: Locale) -> str:
        """Display text for people: ``1 250,50`` (cs), ``1,250.50`` (en), ``-120``.

        Decimals are shown only when the amount has a fractional part.
        """
        return display_of(self.hundredths, locale)

    def __str__(self) -> str:
        return self.decimal_string()


def display_of(hundredths: int, locale: Locale) -> str:
    """``Points(hundredths).display(locale)``, without making the ``Points`` (a snapshot of
    every customer formats three amounts each, so amounts below 1,000 points, the usual ones,
    take a short way)."""
    if 0 <= hundredths < 100_000:
        units, cents = divmod(hundredths, 100)
        return f"{units}{_MARKS[locale]}{_TWO_DIGITS[cents]}" if cents else str(units)
    thousands, decimal_mark = _SEPARATORS[locale]
    sign = "-" if hundredths < 0 else ""
    units, cents = divmod(abs(hundredths), 100)
    grouped = str(units) if units < 1000 else f"{units:,}".replace(",", thousands)
    if cents:
        return f"{sign}{grouped}{decimal_mark}{cents:02d}"
    return f"{sign}{grouped}"


_MARKS = {locale: mark for locale, (_, mark) in _SEPARATORS.items()}
_TWO_DIGITS = [f"{cents:02d}" for cents in range(100)]
