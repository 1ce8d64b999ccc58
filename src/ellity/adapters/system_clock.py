"""The real clock and the real CSPRNG."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SecretsRandom:
    """Randomness for PINs and referral codes, from the operating system's CSPRNG."""

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)
