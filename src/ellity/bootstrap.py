"""The one composition root: builds the adapters once and hands out a ``Deps`` bundle.

Only the database's adapters are imported with this module. Those of the web app and the
worker (Redis, arq, Ecomail's HTTP client, e-mail templates, password hashing, migrations)
are imported by ``build_deps`` when it runs, so that ``ellity export`` (``export_deps``) does
not wait for them: a user waits for the interpreter's start-up with every export.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ellity.adapters.csv_export import CsvTableEncoder, ExcelCsvEncoder
from ellity.adapters.sql.database import Database, create_database
from ellity.adapters.sql.export_rows import SqlCustomerRowSource
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SystemClock
from ellity.deps import Deps, ExportDeps
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
    # see the module docstring
    from ellity.adapters.arq_queue import ArqJobQueue, NoJobQueue  # noqa: PLC0415
    from ellity.adapters.ecomail.limiter import request_limiter  # noqa: PLC0415
    from ellity.adapters.ecomail.platforms import EcomailPlatforms, EcomailSettings  # noqa: PLC0415
    from ellity.adapters.email_templates import JinjaEmailTemplates  # noqa: PLC0415
    from ellity.adapters.passwords import Argon2PasswordHasher  # noqa: PLC0415
    from ellity.adapters.redis_operations import (  # noqa: PLC0415
        LocalWorkCounters,
        NoWorkerHeartbeats,
        RedisOperations,
    )
    from ellity.adapters.secret_box import FernetSecretBox  # noqa: PLC0415
    from ellity.adapters.smtp_mailer import SmtpMailer  # noqa: PLC0415
    from ellity.adapters.sql.migrate import SqlSchemaVersion  # noqa: PLC0415
    from ellity.adapters.sql.queue_stats import SqlQueueStats  # noqa: PLC0415
    from ellity.adapters.sql.web_state import SqlLoginAttempts, SqlSessionStore  # noqa: PLC0415
    from ellity.adapters.system_clock import SecretsRandom  # noqa: PLC0415

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
            excel_encoder=ExcelCsvEncoder(),
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


@asynccontextmanager
async def export_deps(settings: Settings) -> AsyncIterator[ExportDeps]:
    """What ``ellity export`` works with: the database's adapters only (read-only use)."""
    database = open_database(settings)
    try:
        yield ExportDeps(
            uow=SqlUnitOfWorkFactory(database),
            clock=SystemClock(),
            export_encoder=CsvTableEncoder(),
            export_rows=SqlCustomerRowSource(database),
            excel_encoder=ExcelCsvEncoder(),
        )
    finally:
        await database.dispose()
