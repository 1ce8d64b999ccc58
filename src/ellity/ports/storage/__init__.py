"""Storage ports: repositories scoped by merchant, the read-side views, and the unit of work
that owns a transaction. One module per concept; every name is importable from here too.

Every method that reads or writes customer data takes the ``merchant_id``: nothing can be
reached without naming the merchant it belongs to.
"""

from ellity.domain.model.newsletter import AddAttempt
from ellity.ports.storage.contact_sync import (
    ClaimedContact,
    ContactSyncRepository,
    EcomailRepository,
    OldAddress,
)
from ellity.ports.storage.customers import CustomerRepository
from ellity.ports.storage.dashboard import DashboardRepository
from ellity.ports.storage.errors import TransientConflict, UniqueViolation
from ellity.ports.storage.ledger import (
    ExpiredChunk,
    ExpiryNotice,
    LedgerRepository,
    OrderUse,
    StoredEntry,
)
from ellity.ports.storage.merchants import (
    ApiTokenRepository,
    MerchantRepository,
    NightlySchedule,
    StaffRepository,
)
from ellity.ports.storage.newsletter import KeptSignup, NewsletterRepository
from ellity.ports.storage.outbox import OutboxRepository
from ellity.ports.storage.unit_of_work import UnitOfWork, UnitOfWorkFactory
from ellity.ports.storage.views import (
    ContactSyncFailure,
    ContactSyncHealth,
    ContactSyncRow,
    SentEvent,
    Views,
)

__all__ = [
    "AddAttempt",
    "ApiTokenRepository",
    "ClaimedContact",
    "ContactSyncFailure",
    "ContactSyncHealth",
    "ContactSyncRepository",
    "ContactSyncRow",
    "CustomerRepository",
    "DashboardRepository",
    "EcomailRepository",
    "ExpiredChunk",
    "ExpiryNotice",
    "KeptSignup",
    "LedgerRepository",
    "MerchantRepository",
    "NewsletterRepository",
    "NightlySchedule",
    "OldAddress",
    "OrderUse",
    "OutboxRepository",
    "SentEvent",
    "StaffRepository",
    "StoredEntry",
    "TransientConflict",
    "UniqueViolation",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "Views",
]
