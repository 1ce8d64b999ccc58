"""The bundle of ready adapters every edge (web, worker, CLI) works with; typed by ports only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from ellity.ports.clock import Clock, PasswordHasher, RandomSource
from ellity.ports.export import CustomerRowSource, TableEncoder
from ellity.ports.mailer import Mailer
from ellity.ports.marketing import MarketingPlatforms
from ellity.ports.operations import (
    QueueStatsSource,
    RequestBudget,
    SchemaVersion,
    WorkCounters,
    WorkerHeartbeats,
)
from ellity.ports.queue import JobQueue
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWorkFactory
from ellity.ports.web_state import LoginAttempts, SessionStore
from ellity.settings import Settings


@dataclass(frozen=True)
class Deps:
    settings: Settings
    uow: UnitOfWorkFactory
    clock: Clock
    rng: RandomSource
    hasher: PasswordHasher
    secret_box: SecretBox
    ping_database: Callable[[], Awaitable[None]]
    export_encoder: TableEncoder
    export_rows: CustomerRowSource  # the export's rows written by the database, in CSV
    excel_encoder: TableEncoder  # the same table as a file for Excel
    mailer: Mailer
    marketing: MarketingPlatforms  # Ecomail, reached with each merchant's key
    queue: JobQueue  # nudges the worker; the unit of work nudges after outbox commits
    sessions: SessionStore  # the merchant pages' sessions, shared by all web processes
    login_attempts: LoginAttempts  # log-in throttling counts, shared likewise
    heartbeats: WorkerHeartbeats  # the workers' heartbeats (/ready)
    counters: WorkCounters  # what the processes did, summed across them (/metrics)
    queue_stats: QueueStatsSource  # the work queues' depth and age (/metrics)
    request_budget: RequestBudget  # the Ecomail requests taken per window (/metrics)
    schema: SchemaVersion  # the database's migration revision (/ready)


@dataclass(frozen=True)
class ExportDeps:
    """What the customer export works with (``ellity export``), and nothing else."""

    uow: UnitOfWorkFactory
    clock: Clock
    export_encoder: TableEncoder
    export_rows: CustomerRowSource
    excel_encoder: TableEncoder


#: How an edge gets its ``Deps``: ``bootstrap.build_deps`` bound to the settings, or test fakes.
DepsProvider = Callable[[], AbstractAsyncContextManager[Deps]]
