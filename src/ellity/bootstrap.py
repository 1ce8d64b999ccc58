"""The one composition root: builds the adapters once and hands out a ``Deps`` bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ellity.adapters.arq_queue import ArqJobQueue, NoJobQueue
from ellity.adapters.csv_export import CsvTableEncoder
from ellity.adapters.ecomail.limiter import request_limiter
from ellity.adapters.ecomail.platforms import EcomailPlatforms, EcomailSettings
from ellity.adapters.email_templates import JinjaEmailTemplates
from ellity.adapters.passwords import Argon2PasswordHasher
from ellity.adapters.redis_operations import (
    LocalWorkCounters,
    NoWorkerHeartbeats,
    RedisOperations,
)
from ellity.adapters.secret_box import FernetSecretBox
from ellity.adapters.smtp_mailer import SmtpMailer
from ellity.adapters.sql.database import Database, create_database
from ellity.adapters.sql.export_rows import SqlCustomerRowSource
from ellity.adapters.sql.migrate import SqlSchemaVersion
from ellity.adapters.sql.queue_stats import SqlQueueStats
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.sql.web_state import SqlLoginAttempts, SqlSessionStore
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.deps import Deps
from ellity.settings import Settings


def open_database(settings: Settings) -> Database:
    """The process's one engine and pool, sized by the settings."""
    return create_database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )


@asynccontextmanager
async def build_deps(settings: Settings) -> AsyncIterator[Deps]:
    database = open_database(settings)
    queue = (
        ArqJobQueue(settings.redis_url, queue_name=settings.queue_name)
        if settings.redis_url
        else NoJobQueue()
    )
    operations = (
        RedisOperations(settings.redis_url, namespace=settings.queue_name)
        if settings.redis_url
        else None
    )
    counters = operations.counters if operations else LocalWorkCounters()
    limiter = request_limiter(settings.redis_url)
    marketing = EcomailPlatforms(
        limiter, EcomailSettings(base_url=settings.ecomail_api_url), counters=counters
    )
    try:
        yield Deps(
            settings=settings,
            uow=SqlUnitOfWorkFactory(database, on_outbox_work=queue.nudge_delivery),
            clock=SystemClock(),
            rng=SecretsRandom(),
            hasher=Argon2PasswordHasher(),
            secret_box=FernetSecretBox(settings.secret_key),
            ping_database=database.ping,
            export_encoder=CsvTableEncoder(),
            export_rows=SqlCustomerRowSource(database),
            mailer=SmtpMailer(JinjaEmailTemplates(), allow_private=settings.smtp_allow_private),
            marketing=marketing,
            queue=queue,
            sessions=SqlSessionStore(database),
            login_attempts=SqlLoginAttempts(database),
            heartbeats=operations.heartbeats if operations else NoWorkerHeartbeats(),
            counters=counters,
            queue_stats=SqlQueueStats(database),
            request_budget=limiter,
            schema=SqlSchemaVersion(database),
        )
    finally:
        if operations is not None:
            await operations.aclose()
        await marketing.aclose()
        await queue.close()
        await database.dispose()
