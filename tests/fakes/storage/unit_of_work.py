"""The in-memory database and its unit of work, and a unit-of-work factory that stalls a
nightly run in the middle."""

from __future__ import annotations

import asyncio
import copy
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.ports.storage import TransientConflict, UnitOfWork, UnitOfWorkFactory
from tests.fakes.storage.contact_sync import InMemoryContactSyncRepository
from tests.fakes.storage.customers import InMemoryCustomerRepository
from tests.fakes.storage.dashboard import InMemoryDashboardRepository
from tests.fakes.storage.ecomail import InMemoryEcomailRepository
from tests.fakes.storage.ledger import InMemoryLedgerRepository
from tests.fakes.storage.merchants import (
    InMemoryApiTokenRepository,
    InMemoryMerchantRepository,
    InMemoryStaffRepository,
)
from tests.fakes.storage.newsletter import InMemoryNewsletterRepository
from tests.fakes.storage.outbox import InMemoryOutboxRepository
from tests.fakes.storage.reconciliation import InMemoryReconciliationRepository
from tests.fakes.storage.state import StoreState, round_trip
from tests.fakes.storage.views import InMemoryViews


class InMemoryUnitOfWork(UnitOfWork):
    """One transaction on a private copy of the store's state."""

    def __init__(self, store: InMemoryStore, *, read_only: bool = False) -> None:
        self._store = store
        self.read_only = read_only
        self._state: StoreState | None = None
        self.merchants = InMemoryMerchantRepository(self)
        self.staff = InMemoryStaffRepository(self)
        self.api_tokens = InMemoryApiTokenRepository(self)
        self.customers = InMemoryCustomerRepository(self)
        self.ledgers = InMemoryLedgerRepository(self)
        self.outbox = InMemoryOutboxRepository(self)
        self.ecomail = InMemoryEcomailRepository(self)
        self.contacts = InMemoryContactSyncRepository(self)
        self.newsletter = InMemoryNewsletterRepository(self)
        self.reconciliation = InMemoryReconciliationRepository(self)
        self.views = InMemoryViews(self)
        self.dashboard = InMemoryDashboardRepository(self)
        self.made_outbox_work = False  # outbox items or contact marks: the worker has work

    @property
    def state(self) -> StoreState:
        if self._state is None:
            raise RuntimeError("use the unit of work inside `async with`")
        return self._state

    async def __aenter__(self) -> InMemoryUnitOfWork:
        if self._state is not None:
            raise RuntimeError("this unit of work is already open")
        if not self.read_only:
            await self._store.write_lock.acquire()
            self._store.writers += 1
        self._state = copy.deepcopy(self._store.state)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = None  # whatever was not committed is gone
        if not self.read_only:
            self._store.write_lock.release()

    async def commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        await round_trip()
        if self._store.conflicts:  # the database aborts this transaction: nothing is stored
            self._store.conflicts -= 1
            raise TransientConflict("deadlock detected (a fake one)")
        self._store.state = copy.deepcopy(self.state)
        self._store.commits += 1
        if self.made_outbox_work:
            self.made_outbox_work = False
            self._store.outbox_commits += 1


class InMemoryStore:
    """The database: committed state, the writers' lock, and the unit-of-work factory."""

    def __init__(self) -> None:
        self.state = StoreState()
        self.write_lock = asyncio.Lock()
        self.commits = 0
        # writing units of work opened, committed or not (on SQLite each takes the one
        # writer's lock)
        self.writers = 0
        # commits that gave the worker work: outbox items, contact marks, retries (the SQL
        # unit of work nudges the worker then)
        self.outbox_commits = 0
        # how many of the next commits fail as the database does when it aborts a
        # transaction for a conflict with a concurrent one (``TransientConflict``)
        self.conflicts = 0

    def unit_of_work(self, *, read_only: bool = False) -> InMemoryUnitOfWork:
        """Matches ``UnitOfWorkFactory``: pass ``store.unit_of_work`` where one is needed."""
        return InMemoryUnitOfWork(self, read_only=read_only)


class StallingNightly(UnitOfWorkFactory):
    """A unit-of-work factory around a real one, for cancelling a nightly run in the middle:
    the ``stall_at``-th chunk of ``merchant_id`` waits for ever (until its task is cancelled)
    and ``stalled`` is set. With ``inside="expiry"`` it waits inside the chunk's write
    transaction, after expiring the chunk's points (not committed); with ``inside="read"``
    while looking up where the chunk ends (no write transaction is open, so other merchants'
    runs are not held up). Other merchants and other calls pass straight through."""

    def __init__(
        self, inner: UnitOfWorkFactory, merchant_id: MerchantId, *, stall_at: int = 2, inside: str
    ) -> None:
        self._inner = inner
        self.merchant_id = merchant_id
        self.stall_at = stall_at
        self.inside = inside
        self.chunks = 0
        self.stalled = asyncio.Event()

    def __call__(self, *, read_only: bool = False) -> Any:
        return _StallingUnitOfWork(self._inner(read_only=read_only), self)

    async def maybe_stall(self, merchant_id: MerchantId, inside: str) -> None:
        if merchant_id != self.merchant_id or inside != self.inside:
            return
        self.chunks += 1
        if self.chunks >= self.stall_at:
            self.stalled.set()
            await asyncio.Event().wait()


class _StallingUnitOfWork:
    def __init__(self, inner: Any, owner: StallingNightly) -> None:
        self._inner = inner
        self._owner = owner

    async def __aenter__(self) -> _StallingUnitOfWork:
        self._inner = await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    async def commit(self) -> None:
        await self._inner.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def ledgers(self) -> _StallingLedgers:
        return _StallingLedgers(self._inner.ledgers, self._owner)

    @property
    def customers(self) -> _StallingCustomers:
        return _StallingCustomers(self._inner.customers, self._owner)


class _StallingLedgers:
    def __init__(self, inner: Any, owner: StallingNightly) -> None:
        self._inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def expire_due(self, merchant_id: MerchantId, **kw: Any) -> int:
        expired: int = await self._inner.expire_due(merchant_id, **kw)
        await self._owner.maybe_stall(merchant_id, "expiry")
        return expired


class _StallingCustomers:
    def __init__(self, inner: Any, owner: StallingNightly) -> None:
        self._inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def chunk_end(self, merchant_id: MerchantId, **kw: Any) -> CustomerId | None:
        await self._owner.maybe_stall(merchant_id, "read")
        end: CustomerId | None = await self._inner.chunk_end(merchant_id, **kw)
        return end


if TYPE_CHECKING:  # the store's factory method is a ``UnitOfWorkFactory``
    _factory: UnitOfWorkFactory = InMemoryStore().unit_of_work
