"""State the web pages share between all web processes: sessions and log-in attempts.

Both live in the database, so any number of web processes (and a restart) see the same
sessions and the same throttling counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredSession:
    data: bytes
    expires_at: datetime


class SessionStore(Protocol):
    """Sessions by id. Implementations keep only a digest of the id: a copy of the store
    does not let anyone take over a session."""

    async def get(self, session_id: str, *, now: datetime) -> StoredSession | None:
        """The session, unless it does not exist or has expired by ``now``."""
        ...

    async def set(self, session_id: str, data: bytes, *, expires_at: datetime) -> None:
        """Create or replace the session."""
        ...

    async def renew(self, session_id: str, *, expires_at: datetime) -> None: ...

    async def delete(self, session_id: str) -> None:
        """Remove the session; nothing happens if it does not exist."""
        ...

    async def prune(self, *, now: datetime) -> int:
        """Remove the sessions that expired before ``now``; returns how many."""
        ...


@dataclass(frozen=True, slots=True)
class AttemptCount:
    attempts: int
    window_ends_at: datetime


class LoginAttempts(Protocol):
    """Counters of log-in attempts in fixed windows, by key (an email, a client address)."""

    async def add(self, key: str, *, at: datetime, window: timedelta) -> AttemptCount:
        """Count one more attempt, atomically even against other processes. A window that
        has ended by ``at`` starts over: the attempt is the first of a new window."""
        ...

    async def forgive(self, key: str, *, reset: bool = False) -> None:
        """Take one attempt back (a successful log-in), or all of them with ``reset``."""
        ...

    async def prune(self, *, now: datetime) -> int:
        """Remove counters whose window ended before ``now``."""
        ...
