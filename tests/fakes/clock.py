"""Time, randomness and password hashes for tests."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from ellity.ports.clock import Clock, PasswordHasher, RandomSource

DEFAULT_NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)


class FakeClock(Clock):
    """A clock that stands still until a test moves it; always aware UTC."""

    def __init__(self, now: datetime = DEFAULT_NOW) -> None:
        self._now = DEFAULT_NOW
        self.set(now)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware datetime")
        self._now = at.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**units)``; returns the new now."""
        self._now += delta if delta is not None else timedelta(**units)
        return self._now


class FakeRandom(RandomSource):
    """Deterministic ``randbelow``: scripted values first, then a seeded generator."""

    def __init__(self, seed: int = 0, *, script: Iterable[int] = ()) -> None:
        self._random = random.Random(seed)
        self._script: deque[int] = deque(script)

    def queue(self, *values: int) -> None:
        """The next calls return these values, in order."""
        self._script.extend(values)

    def randbelow(self, n: int) -> int:
        if self._script:
            value = self._script.popleft()
            if not 0 <= value < n:
                raise ValueError(f"scripted value {value} is not in [0, {n})")
            return value
        return self._random.randrange(n)


class FakePasswordHasher(PasswordHasher):
    """Readable, not secure: ``hash("secret")`` is ``"fake-hash:secret"``."""

    PREFIX = "fake-hash:"

    def hash(self, password: str) -> str:
        return self.PREFIX + password

    def verify(self, password_hash: str, password: str) -> bool:
        return password_hash == self.PREFIX + password
