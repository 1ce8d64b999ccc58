"""What the work queues (outbox items, Ecomail contacts, newsletter notifications) share: a
worker keeps its claim alive while it works, and gives back what it will not finish."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class ClaimKeeping(Protocol):
    async def renew_claim(self, *, token: str, until: datetime) -> int:
        """Extend the claim ``token`` to ``until`` on what it still holds (whether or not its
        lease ran out meanwhile: nobody took it over); returns how many."""
        ...

    async def drop_claim(self, *, token: str) -> int:
        """Give back what the claim ``token`` still holds, due at once, as if this claim had
        not been made (its attempt is not counted; for an outbox item whose call began, it
        is); returns how many."""
        ...
