"""Sessions and log-in attempt counters in the database, shared by all web processes.

Each call is its own short transaction. Counters are changed with one ``INSERT ... ON
CONFLICT DO UPDATE ... RETURNING`` statement, atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa

from ellity.adapters.sql.database import Database
from ellity.adapters.sql.tables.columns import dialect_insert, instant
from ellity.adapters.sql.tables.web_state import login_attempts, web_sessions
from ellity.ports.web_state import AttemptCount, LoginAttempts, SessionStore, StoredSession


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class SqlSessionStore(SessionStore):
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, session_id: str, *, now: datetime) -> StoredSession | None:
        async with self._db.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(web_sessions.c.data, web_sessions.c.expires_at).where(
                        web_sessions.c.id_digest == _digest(session_id),
                        web_sessions.c.expires_at > instant(now),
                    )
                )
            ).first()
        return (
            None if row is None else StoredSession(data=bytes(row.data), expires_at=row.expires_at)
        )

    async def set(self, session_id: str, data: bytes, *, expires_at: datetime) -> None:
        insert = dialect_insert(self._db.engine.dialect, web_sessions).values(
            id_digest=_digest(session_id), data=data, expires_at=expires_at
        )
        async with self._db.write_engine.begin() as conn:
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[web_sessions.c.id_digest],
                    set_={"data": insert.excluded.data, "expires_at": insert.excluded.expires_at},
                )
            )

    async def renew(self, session_id: str, *, expires_at: datetime) -> None:
        async with self._db.write_engine.begin() as conn:
            await conn.execute(
                web_sessions.update()
                .where(web_sessions.c.id_digest == _digest(session_id))
                .values(expires_at=expires_at)
            )

    async def delete(self, session_id: str) -> None:
        async with self._db.write_engine.begin() as conn:
            await conn.execute(
                web_sessions.delete().where(web_sessions.c.id_digest == _digest(session_id))
            )

    async def prune(self, *, now: datetime) -> int:
        async with self._db.write_engine.begin() as conn:
            result = await conn.execute(
                web_sessions.delete().where(web_sessions.c.expires_at <= instant(now))
            )
        return int(result.rowcount)


class SqlLoginAttempts(LoginAttempts):
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, key: str, *, at: datetime, window: timedelta) -> AttemptCount:
        insert = dialect_insert(self._db.engine.dialect, login_attempts).values(
            key=key, attempts=1, window_ends_at=at + window
        )
        ended = login_attempts.c.window_ends_at <= instant(at)
        statement = insert.on_conflict_do_update(
            index_elements=[login_attempts.c.key],
            set_={
                "attempts": sa.case((ended, 1), else_=login_attempts.c.attempts + 1),
                "window_ends_at": sa.case(
                    (ended, insert.excluded.window_ends_at), else_=login_attempts.c.window_ends_at
                ),
            },
        ).returning(login_attempts.c.attempts, login_attempts.c.window_ends_at)
        async with self._db.write_engine.begin() as conn:
            row = (await conn.execute(statement)).one()
        return AttemptCount(attempts=int(row.attempts), window_ends_at=row.window_ends_at)

    async def forgive(self, key: str, *, reset: bool = False) -> None:
        async with self._db.write_engine.begin() as conn:
            if reset:
                await conn.execute(login_attempts.delete().where(login_attempts.c.key == key))
            else:
                await conn.execute(
                    login_attempts.update()
                    .where(login_attempts.c.key == key, login_attempts.c.attempts > 0)
                    .values(attempts=login_attempts.c.attempts - 1)
                )

    async def prune(self, *, now: datetime) -> int:
        async with self._db.write_engine.begin() as conn:
            result = await conn.execute(
                login_attempts.delete().where(login_attempts.c.window_ends_at < instant(now))
            )
        return int(result.rowcount)
