"""The storage ports in memory, one module per concept as in ``ellity.ports.storage``.

The fake keeps plain domain objects in one ``StoreState``. A unit of work works on a deep
copy of it and publishes the copy on ``commit()``; leaving the block without committing
discards it. Writers hold the store's lock from ``__aenter__`` to ``__aexit__`` (SQLite's
``BEGIN IMMEDIATE``), readers work on the state as it was when they began. Every repository
call yields to the event loop once, like real I/O, so concurrent use cases really interleave.

What is stored is a copy: changing a returned ``Customer`` changes nothing until ``update()``
writes it back, as with a database. Like the SQL adapter, ``add`` sets the id on the object it
is given and ``LedgerRepository.save`` marks the ledger saved.
"""

from tests.fakes.storage.contact_sync import InMemoryContactSyncRepository
from tests.fakes.storage.customers import InMemoryCustomerRepository
from tests.fakes.storage.ecomail import InMemoryEcomailRepository
from tests.fakes.storage.ledger import (
    EMPTY_SUMMARY,
    InMemoryLedgerRepository,
    expired_in,
    summary_of,
)
from tests.fakes.storage.merchants import (
    InMemoryApiTokenRepository,
    InMemoryMerchantRepository,
    InMemoryStaffRepository,
)
from tests.fakes.storage.newsletter import InMemoryNewsletterRepository
from tests.fakes.storage.outbox import InMemoryOutboxRepository
from tests.fakes.storage.state import (
    ContactRecord,
    EcomailRecord,
    EntryRow,
    ExpiryNoticeRecord,
    LotRow,
    NotificationRow,
    OldAddressRecord,
    OutboxRecord,
    RewardRow,
    StaffUser,
    StoreState,
    WebhookRecord,
)
from tests.fakes.storage.unit_of_work import InMemoryStore, InMemoryUnitOfWork, StallingNightly
from tests.fakes.storage.views import InMemoryViews, search_in_memory

__all__ = [
    "EMPTY_SUMMARY",
    "ContactRecord",
    "EcomailRecord",
    "EntryRow",
    "ExpiryNoticeRecord",
    "InMemoryApiTokenRepository",
    "InMemoryContactSyncRepository",
    "InMemoryCustomerRepository",
    "InMemoryEcomailRepository",
    "InMemoryLedgerRepository",
    "InMemoryMerchantRepository",
    "InMemoryNewsletterRepository",
    "InMemoryOutboxRepository",
    "InMemoryStaffRepository",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "InMemoryViews",
    "LotRow",
    "NotificationRow",
    "OldAddressRecord",
    "OutboxRecord",
    "RewardRow",
    "StaffUser",
    "StallingNightly",
    "StoreState",
    "WebhookRecord",
    "expired_in",
    "search_in_memory",
    "summary_of",
]
