"""The SQL unit of work: one connection, one transaction, rolled back unless committed.

A transaction PostgreSQL aborts to break a deadlock or a serialization conflict leaves the
unit of work as the port's ``TransientConflict`` (the use case runs it again). The worker is
nudged after the transaction is over and the writer's turn handed on, so a slow queue never
holds up the other writers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from ellity.adapters.sql.api_tokens import SqlApiTokenRepository
from ellity.adapters.sql.contact_sync import SqlContactSyncRepository
from ellity.adapters.sql.customers import SqlCustomerRepository
from ellity.adapters.sql.dashboard_store import SqlDashboardRepository
from ellity.adapters.sql.database import Database, WritersTurn
from ellity.adapters.sql.ecomail import SqlEcomailRepository
from ellity.adapters.sql.ledger import SqlLedgerRepository
from ellity.adapters.sql.merchants import SqlMerchantRepository
from ellity.adapters.sql.newsletter import SqlNewsletterRepository
from ellity.adapters.sql.outbox import SqlOutboxRepository
from ellity.adapters.sql.reconciliation import SqlReconciliationRepository
from ellity.adapters.sql.staff import SqlStaffRepository
from ellity.adapters.sql.views import SqlViews
from ellity.ports.storage import (
    ApiTokenRepository,
    ContactSyncRepository,
    CustomerRepository,
    EcomailRepository,
    LedgerRepository,
    MerchantRepository,
    NewsletterRepository,
    OutboxRepository,
    StaffRepository,
    TransientConflict,
    Views,
)
from ellity.ports.storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

#: Called when a unit of work whose commit gave the worker something to do is over, its
#: writer's turn handed on (``JobQueue.nudge_delivery``).
OutboxWorkHook = Callable[[], Awaitable[None]]

#: SQLSTATEs of a transaction aborted for a conflict with another one: serialization_failure,
#: deadlock_detected. Run again, it is expected to succeed.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})


def transient_conflict(exc: BaseException | None) -> TransientConflict | None:
    """The port's error for a database error that aborted the transaction for a conflict."""
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in TRANSIENT_SQLSTATES:
        return TransientConflict(str(exc.orig))
    return None


class SqlUnitOfWork(UnitOfWork):
    merchants: MerchantRepository
    staff: StaffRepository
    api_tokens: ApiTokenRepository
    customers: CustomerRepository
    ledgers: LedgerRepository
    outbox: OutboxRepository
    ecomail: EcomailRepository
    contacts: ContactSyncRepository
    newsletter: NewsletterRepository
    views: Views

    def __init__(
        self,
        database: Database,
        *,
        read_only: bool = False,
        on_outbox_work: OutboxWorkHook | None = None,
    ) -> None:
        self._database = database
        self._read_only = read_only
        self._on_outbox_work = on_outbox_work
        self._outbox: SqlOutboxRepository | None = None
        self._contacts: SqlContactSyncRepository | None = None
        self._newsletter: SqlNewsletterRepository | None = None
        self._ecomail: SqlEcomailRepository | None = None
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._turn: WritersTurn | None = None
        self._committed_work = False  # a commit gave the worker work: nudge it on the way out

    async def __aenter__(self) -> SqlUnitOfWork:
        engine = self._database.engine if self._read_only else self._database.write_engine
        turn = None if self._read_only else self._database.writers_turn
        self._committed_work = False
        if turn is not None:
            await turn.acquire()
            self._turn = turn
        try:
            self._conn = await engine.connect()
            self._tx = await self._conn.begin()
        except BaseException:
            await self._finish()
            raise
        conn = self._conn
        self.merchants = SqlMerchantRepository(conn)
        self.staff = SqlStaffRepository(conn)
        self.api_tokens = SqlApiTokenRepository(conn)
        self.customers = SqlCustomerRepository(conn)
        self.ledgers = SqlLedgerRepository(conn, locks_rows=not self._database.is_sqlite)
        self.outbox = self._outbox = SqlOutboxRepository(
            conn, locks_rows=not self._database.is_sqlite
        )
        self.ecomail = self._ecomail = SqlEcomailRepository(conn)
        self.contacts = self._contacts = SqlContactSyncRepository(
            conn, locks_rows=not self._database.is_sqlite
        )
        self.newsletter = self._newsletter = SqlNewsletterRepository(
            conn, locks_rows=not self._database.is_sqlite
        )
        self.reconciliation = SqlReconciliationRepository(conn)
        self.views = SqlViews(conn)
        self.dashboard = SqlDashboardRepository(conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            await self._finish()
        if self._committed_work:
            self._committed_work = False
            if self._on_outbox_work is not None:
                await self._on_outbox_work()
        conflict = transient_conflict(exc)
        if conflict is not None:
            raise conflict from exc

    async def _finish(self) -> None:
        """The transaction is over: the next writer's turn, then the connection back."""
        if self._turn is not None:
            self._turn.release()
            self._turn = None
        try:
            if self._conn is not None:
                await self._conn.close()
        finally:
            self._conn = self._tx = None

    async def commit(self) -> None:
        if self._tx is None:
            raise RuntimeError("commit() outside the unit of work")
        await self._tx.commit()
        made_work = False
        for repository in (self._outbox, self._contacts, self._newsletter, self._ecomail):
            if repository is not None and repository.made_work:
                repository.made_work = False
                made_work = True
        self._committed_work = made_work


class SqlUnitOfWorkFactory(UnitOfWorkFactory):
    def __init__(self, database: Database, *, on_outbox_work: OutboxWorkHook | None = None) -> None:
        self.database = database
        self.on_outbox_work = on_outbox_work

    def __call__(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.database, read_only=read_only, on_outbox_work=self.on_outbox_work)
