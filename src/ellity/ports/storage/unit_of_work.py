"""The unit of work: one transaction and the repositories inside it."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from ellity.ports.storage.contact_sync import ContactSyncRepository, EcomailRepository
from ellity.ports.storage.customers import CustomerRepository
from ellity.ports.storage.dashboard import DashboardRepository
from ellity.ports.storage.ledger import LedgerRepository
from ellity.ports.storage.merchants import (
    ApiTokenRepository,
    MerchantRepository,
    StaffRepository,
)
from ellity.ports.storage.newsletter import NewsletterRepository
from ellity.ports.storage.outbox import OutboxRepository
from ellity.ports.storage.reconciliation import ReconciliationRepository
from ellity.ports.storage.views import Views


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without ``commit()`` rolls everything back."""

    merchants: MerchantRepository
    staff: StaffRepository
    api_tokens: ApiTokenRepository
    customers: CustomerRepository
    ledgers: LedgerRepository
    outbox: OutboxRepository
    ecomail: EcomailRepository
    contacts: ContactSyncRepository
    newsletter: NewsletterRepository
    reconciliation: ReconciliationRepository
    views: Views
    dashboard: DashboardRepository

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        """A new unit of work; ``read_only`` ones never take write locks."""
        ...
