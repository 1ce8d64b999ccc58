"""``ellity backup`` and ``ellity restore``: the SQLite database copied out consistently while
Ellity serves, and put back while it is stopped (``adapters/sql/sqlite_backup.py``).

PostgreSQL has its own tools; for it both commands refuse and point to the README's
``pg_dump`` / ``pg_restore`` recipe. The secret key is not in the database: every backup needs
it kept too, and the commands say where it is.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ellity.adapters.sql import migrate, sqlite_backup
from ellity.adapters.sql.sqlite_backup import BackupFailed, Refused
from ellity.settings import Settings

EXIT_REFUSED = 2
EXIT_FAILED = 1

POSTGRES_BACKUP = (
    "ellity backup copies SQLite databases only. For PostgreSQL use pg_dump:"
    " `pg_dump --format=custom --no-owner --file=FILE DATABASE`"
    ' (see "Backups" in the README).'
)
POSTGRES_RESTORE = (
    "ellity restore puts back SQLite databases only. For PostgreSQL use pg_restore into an"
    ' empty database, then `ellity migrate` (see "Backups" in the README).'
)


def run_backup(settings: Settings, out: Path, *, force: bool) -> int:
    try:
        source = sqlite_backup.sqlite_file(settings.database_url)
        if source is None:
            _complain(POSTGRES_BACKUP)
            return EXIT_REFUSED
        done = asyncio.run(sqlite_backup.take_backup(source, out, force=force))
    except Refused as exc:
        _complain(exc.message)
        return EXIT_REFUSED
    except BackupFailed as exc:
        _complain(f"the backup failed, nothing was written: {exc}")
        return EXIT_FAILED
    except OSError as exc:
        _complain(f"the backup to {out} failed, nothing was written: {exc.strerror or exc}")
        return EXIT_FAILED
    restarted = ""
    if done.restarts:
        restarted = f"; writes started the copy again {done.restarts} time(s)"
        if done.one_step:
            restarted += ", then the rest was copied in one step"
    print(f"Backed up {source} to {done.path}: {done.size:,} bytes, integrity check ok{restarted}.")
    print(
        f"Keep the secret key with this backup: it is {_key_place(settings)}. Without it the"
        " Ecomail API keys, SMTP passwords and webhook URLs in the backup cannot be decrypted.",
        file=sys.stderr,
    )
    return 0


def run_restore(settings: Settings, backup_file: Path) -> int:
    try:
        target = sqlite_backup.sqlite_file(settings.database_url)
        if target is None:
            _complain(POSTGRES_RESTORE)
            return EXIT_REFUSED
        done = sqlite_backup.restore(backup_file, target, known_revisions=migrate.known_revisions())
    except Refused as exc:
        _complain(exc.message)
        return EXIT_REFUSED
    except OSError as exc:
        _complain(f"the restore failed, {target} was not replaced: {exc.strerror or exc}")
        return EXIT_FAILED
    migrate.upgrade(settings.database_url)
    print(
        f"Restored {target} from {backup_file} (schema revision {done.revision}, now migrated"
        " to the newest). Start Ellity again."
    )
    print(
        "The encrypted secrets in it (Ecomail API keys, SMTP passwords, webhook URLs) need the"
        f" secret key of the installation the backup came from; this one uses"
        f" {_key_place(settings)}.",
        file=sys.stderr,
    )
    return 0


def _key_place(settings: Settings) -> str:
    if settings.secret_key_file is None:
        return "ELLITY_SECRET_KEY (in the environment or .env)"
    return f"the file {settings.secret_key_file}"


def _complain(message: str) -> None:
    print(f"ellity: {message}", file=sys.stderr)
