"""The one composition root: builds the adapters once and hands out a ``Deps`` bundle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ellity.adapters.passwords import Argon2PasswordHasher
from ellity.adapters.secret_box import FernetSecretBox
from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.deps import Deps
from ellity.settings import Settings


@asynccontextmanager
async def build_deps(settings: Settings) -> AsyncIterator[Deps]:
    database = create_database(settings.database_url)
    try:
        yield Deps(
            settings=settings,
            uow=SqlUnitOfWorkFactory(database),
            clock=SystemClock(),
            rng=SecretsRandom(),
            hasher=Argon2PasswordHasher(),
            secret_box=FernetSecretBox(settings.secret_key),
            ping_database=database.ping,
        )
    finally:
        await database.dispose()
