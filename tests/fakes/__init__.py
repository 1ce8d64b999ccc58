"""Hand-written in-memory fakes of every port, one module per port module: the storage ports'
in ``tests.fakes.storage``, the others beside it. Every name is importable from here too.

Each fake subclasses the Protocol it implements, so mypy (``make lint``) checks it against its
port: a method missing or a signature that differs is an error, not a surprise in a test.
"""

from tests.fakes.clock import DEFAULT_NOW, FakeClock, FakePasswordHasher, FakeRandom
from tests.fakes.export import InMemoryCustomerRowSource, JsonLinesTableEncoder
from tests.fakes.mailer import FakeMailer, SentEmail
from tests.fakes.marketing import (
    FAKE_WRONG_KEY,
    FakeContactList,
    FakeMarketingPlatform,
    FakeMarketingPlatforms,
    FakeMember,
    FakeSpendingBudget,
)
from tests.fakes.operations import (
    FakeRequestBudget,
    FakeSchemaVersion,
    FakeWorkCounters,
    FakeWorkerHeartbeats,
    InMemoryQueueStats,
)
from tests.fakes.queue import FakeJobQueue
from tests.fakes.secrets import FakeSecretBox
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
from tests.fakes.storage.outbox import InMemoryOutboxRepository, payload_of
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
from tests.fakes.web_state import InMemoryLoginAttempts, InMemorySessionStore

__all__ = [
    "DEFAULT_NOW",
    "EMPTY_SUMMARY",
    "FAKE_WRONG_KEY",
    "ContactRecord",
    "EcomailRecord",
    "EntryRow",
    "ExpiryNoticeRecord",
    "FakeClock",
    "FakeContactList",
    "FakeJobQueue",
    "FakeMailer",
    "FakeMarketingPlatform",
    "FakeMarketingPlatforms",
    "FakeMember",
    "FakePasswordHasher",
    "FakeRandom",
    "FakeRequestBudget",
    "FakeSchemaVersion",
    "FakeSecretBox",
    "FakeSpendingBudget",
    "FakeWorkCounters",
    "FakeWorkerHeartbeats",
    "InMemoryApiTokenRepository",
    "InMemoryContactSyncRepository",
    "InMemoryCustomerRepository",
    "InMemoryCustomerRowSource",
    "InMemoryEcomailRepository",
    "InMemoryLedgerRepository",
    "InMemoryLoginAttempts",
    "InMemoryMerchantRepository",
    "InMemoryNewsletterRepository",
    "InMemoryOutboxRepository",
    "InMemoryQueueStats",
    "InMemorySessionStore",
    "InMemoryStaffRepository",
    "InMemoryStore",
    "InMemoryUnitOfWork",
    "InMemoryViews",
    "JsonLinesTableEncoder",
    "LotRow",
    "NotificationRow",
    "OldAddressRecord",
    "OutboxRecord",
    "RewardRow",
    "SentEmail",
    "StaffUser",
    "StallingNightly",
    "StoreState",
    "WebhookRecord",
    "expired_in",
    "payload_of",
    "search_in_memory",
    "summary_of",
]
