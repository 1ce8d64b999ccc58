"""The web pages' shared state in memory: sessions and log-in attempts."""

from __future__ import annotations

from datetime import datetime, timedelta

from ellity.ports.web_state import AttemptCount, LoginAttempts, SessionStore, StoredSession
from tests.fakes.storage.state import round_trip


class InMemorySessionStore(SessionStore):
    def __init__(self) -> None:
        self.sessions: dict[str, StoredSession] = {}

    async def get(self, session_id: str, *, now: datetime) -> StoredSession | None:
        await round_trip()
        found = self.sessions.get(session_id)
        return found if found is not None and found.expires_at > now else None

    async def set(self, session_id: str, data: bytes, *, expires_at: datetime) -> None:
        await round_trip()
        self.sessions[session_id] = StoredSession(data, expires_at)

    async def renew(self, session_id: str, *, expires_at: datetime) -> None:
        await round_trip()
        if session_id in self.sessions:
            self.sessions[session_id] = StoredSession(self.sessions[session_id].data, expires_at)

    async def delete(self, session_id: str) -> None:
        await round_trip()
        self.sessions.pop(session_id, None)

    async def prune(self, *, now: datetime) -> int:
        await round_trip()
        gone = [key for key, s in self.sessions.items() if s.expires_at <= now]
        for key in gone:
            del self.sessions[key]
        return len(gone)


class InMemoryLoginAttempts(LoginAttempts):
    def __init__(self) -> None:
        self.counts: dict[str, AttemptCount] = {}

    async def add(self, key: str, *, at: datetime, window: timedelta) -> AttemptCount:
        await round_trip()
        current = self.counts.get(key)
        if current is None or current.window_ends_at <= at:
            current = AttemptCount(0, at + window)
        self.counts[key] = AttemptCount(current.attempts + 1, current.window_ends_at)
        return self.counts[key]

    async def forgive(self, key: str, *, reset: bool = False) -> None:
        await round_trip()
        current = self.counts.get(key)
        if current is None:
            return
        if reset:
            del self.counts[key]
        else:
            self.counts[key] = AttemptCount(max(0, current.attempts - 1), current.window_ends_at)

    async def prune(self, *, now: datetime) -> int:
        await round_trip()
        gone = [key for key, c in self.counts.items() if c.window_ends_at < now]
        for key in gone:
            del self.counts[key]
        return len(gone)
