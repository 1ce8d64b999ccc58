"""Time and randomness come from outside the domain."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class RandomSource(Protocol):
    def randbelow(self, n: int) -> int:
        """A uniform integer in ``[0, n)``; production uses a CSPRNG."""
        ...


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...
