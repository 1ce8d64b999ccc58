"""PINs let anonymous customers identify themselves at checkout."""

from __future__ import annotations

from collections.abc import Callable

PIN_DIGITS = 6

#: ``randbelow(n)`` returns a uniform integer in ``[0, n)``; production passes a CSPRNG.
RandomBelow = Callable[[int], int]


def generate_pin(randbelow: RandomBelow) -> str:
    """Six digits, leading zeros kept (``004217``)."""
    return f"{randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"
