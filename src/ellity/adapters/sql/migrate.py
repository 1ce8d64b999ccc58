"""Running the alembic migrations from code (``ellity migrate``, ``ellity serve``, tests), and
telling whether a database is at the code's revision (``/ready``)."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from ellity.adapters.sql.database import Database
from ellity.ports.operations import SchemaRevisions, SchemaVersion

PROJECT_ROOT = Path(__file__).resolve().parents[4]


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str) -> None:
    """Bring the database to the newest schema. Runs its own event loop: call it outside one."""
    command.upgrade(alembic_config(database_url), "head")


def check(database_url: str) -> None:
    """Raise if the tables in code and the migrations differ."""
    command.check(alembic_config(database_url))


def known_revisions() -> list[str]:
    """The schema revisions this code can migrate from, oldest first (the last is the head)."""
    script = ScriptDirectory.from_config(alembic_config(""))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


@functools.cache
def code_revision() -> str:
    """The newest migration's revision (read from the migration files once per process)."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError("the migrations have no head revision")
    return head


class SqlSchemaVersion(SchemaVersion):
    """The revision alembic recorded in the database (one small query) against the code's."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def revisions(self) -> SchemaRevisions:
        code = code_revision()
        async with self._database.engine.connect() as conn:
            if not await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version")):
                return SchemaRevisions(database=None, code=code)
            found = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
        database = found[0][0] if len(found) == 1 else None  # several: branches, not ours
        return SchemaRevisions(database=database, code=code)
