"""Backups of the SQLite database and their restore (``ellity backup``, ``ellity restore``).

A backup is taken with SQLite's online backup API, never by copying the file: the API reads
the database as its connection sees it, through the WAL (the changes committed since the last
checkpoint live only there), and gives a consistent snapshot. It copies ``PAGES_PER_STEP``
pages at a time with a short pause between steps, so a serving app keeps writing; a write by
another connection between two steps makes SQLite start the copy again. When writes keep
restarting it (``RESTARTS_BEFORE_ONE_STEP``), the rest is copied in one step: one read
transaction, which in WAL mode blocks no writer (the WAL only grows until it ends). The copy
is written beside the target, switched out of WAL mode (one self-contained file), checked
with ``PRAGMA integrity_check``, made readable by its owner only (it holds PINs and encrypted
secrets), synced to disk and only then renamed into place.

A restore reads the backup through the same API into a file beside the database, checks it
(an SQLite database, intact, Ellity's tables, a schema revision this code knows), refuses
while another process has the database open, removes the old database's ``-wal``/``-shm``
(their frames must never be applied to the restored file) and renames the copy into place.
The caller then migrates it to the newest schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

PAGES_PER_STEP = 1024
PAUSE_BETWEEN_STEPS = 0.005  # seconds
RESTARTS_BEFORE_ONE_STEP = 3
SQLITE_MAGIC = b"SQLite format 3\x00"
ELLITY_TABLES = ("alembic_version", "merchants", "customers", "ledger_entries")
SIDE_FILES = ("-wal", "-shm", "-journal")
IN_USE_TIMEOUT = 1.0  # seconds to wait for the database before calling it in use


class Refused(Exception):
    """Nothing was done: ``message`` says why (plain words for the operator)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BackupFailed(Exception):
    """The copy was made but is not sound; nothing was written at the target."""


@dataclass(frozen=True, slots=True)
class BackupDone:
    path: Path
    size: int  # bytes
    steps: int  # backup steps taken, restarts included
    restarts: int  # copies started again because another connection wrote
    one_step: bool  # the rest was copied in one step after too many restarts


@dataclass(frozen=True, slots=True)
class RestoreDone:
    path: Path
    revision: str  # the schema revision of the backup, before migrating


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL; ``None`` for any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if url.database in (None, "", ":memory:"):
        raise Refused("The database is in memory: there is no file to back up or restore.")
    return Path(url.database)


# -- backup ---------------------------------------------------------------------------------


async def take_backup(source: Path, out: Path, *, force: bool = False) -> BackupDone:
    """``backup`` in a thread: the event loop (a serving app's, a test's writers) runs on."""
    return await asyncio.to_thread(backup, source, out, force=force)


def backup(
    source: Path,
    out: Path,
    *,
    force: bool = False,
    pages: int = PAGES_PER_STEP,
    pause: float = PAUSE_BETWEEN_STEPS,
    restarts_allowed: int = RESTARTS_BEFORE_ONE_STEP,
) -> BackupDone:
    """A consistent copy of the database at ``source`` in ``out``. Blocking: run it in a thread
    next to an event loop. Raises ``Refused`` (nothing done) or ``BackupFailed``."""
    if not source.is_file():
        raise Refused(f"There is no database at {source}.")
    if out.is_dir():
        raise Refused(f"{out} is a directory; give a file name.")
    if out.exists():
        if out.samefile(source):
            raise Refused(f"{out} is the database itself; give another file.")
        if not force:
            raise Refused(f"{out} exists; add --force to replace it.")
    temporary = _temporary_beside(out)
    try:
        steps, restarts, one_step = _copy(source, temporary, pages, pause, restarts_allowed)
        problem = _integrity_problem(temporary)
        if problem:
            raise BackupFailed(f"the copy fails SQLite's integrity check: {problem}")
        os.chmod(temporary, 0o600)
        _fsync(temporary)
        _place(temporary, out, force=force)
        _fsync(out.parent)
        return BackupDone(out, out.stat().st_size, steps, restarts, one_step)
    finally:
        _remove_with_side_files(temporary)


def _copy(
    source: Path, target: Path, pages: int, pause: float, restarts_allowed: int
) -> tuple[int, int, bool]:
    steps, restarts, last_remaining = 0, 0, -1

    def progress(_status: int, remaining: int, _total: int) -> None:
        nonlocal steps, restarts, last_remaining
        steps += 1
        if 0 <= last_remaining <= remaining:  # no progress: started again
            restarts += 1
            if restarts > restarts_allowed:
                raise _KeptRestarting
        last_remaining = remaining
        if remaining:
            time.sleep(pause)  # the writers' moment (``backup``'s own sleep is only after BUSY)

    with _connect(source, mode="rw") as reader, _connect(target) as writer:
        try:
            reader.backup(writer, pages=pages, progress=progress)
            one_step = False
        except _KeptRestarting:
            reader.backup(writer, pages=-1)  # one read transaction; writers go on (WAL)
            steps, one_step = steps + 1, True
    with _connect(target) as copy:
        mode = copy.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        if str(mode).lower() != "delete":
            raise BackupFailed(f"the copy stayed in journal mode {mode}")
    return steps, restarts, one_step


class _KeptRestarting(Exception):
    """Writes keep restarting the stepwise copy."""


def _place(temporary: Path, out: Path, *, force: bool) -> None:
    if force:
        os.replace(temporary, out)
        return
    try:
        os.link(temporary, out)  # never replaces a file that appeared meanwhile
    except FileExistsError:
        raise Refused(f"{out} exists; add --force to replace it.") from None
    except OSError:  # a file system without hard links
        if out.exists():
            raise Refused(f"{out} exists; add --force to replace it.") from None
        os.replace(temporary, out)


# -- restore --------------------------------------------------------------------------------


def restore(backup_file: Path, target: Path, *, known_revisions: Collection[str]) -> RestoreDone:
    """Put the database in ``backup_file`` in place of ``target``. Raises ``Refused`` (the
    database at ``target`` unchanged). The caller migrates the result to the newest schema."""
    if not backup_file.is_file():
        raise Refused(f"There is no file at {backup_file}.")
    if target.exists() and target.samefile(backup_file):
        raise Refused(f"{backup_file} is the database itself; give a backup file.")
    with backup_file.open("rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise Refused(f"{backup_file} is not an SQLite database.")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(target)
    try:
        try:
            with _connect(backup_file, mode="ro") as reader, _connect(temporary) as writer:
                reader.backup(writer, pages=-1)
        except sqlite3.DatabaseError as exc:
            raise Refused(f"{backup_file} cannot be read as an SQLite database ({exc}).") from None
        revision = _check_restorable(backup_file, temporary, known_revisions)
        with _connect(temporary) as copy:
            copy.execute("PRAGMA journal_mode=DELETE")
        os.chmod(temporary, 0o600)
        _fsync(temporary)
        _take_over(target)
        os.replace(temporary, target)
        _fsync(target.parent)
        return RestoreDone(target, revision)
    finally:
        _remove_with_side_files(temporary)


def _check_restorable(backup_file: Path, copy: Path, known_revisions: Collection[str]) -> str:
    problem = _integrity_problem(copy)
    if problem:
        raise Refused(f"{backup_file} fails SQLite's integrity check ({problem}).")
    with _connect(copy) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        missing = [table for table in ELLITY_TABLES if table not in tables]
        if missing:
            raise Refused(
                f"{backup_file} is an SQLite database but not Ellity's"
                f" (no {', '.join(missing)} table)."
            )
        versions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    if len(versions) != 1:
        raise Refused(f"{backup_file} has no single schema revision; it is not Ellity's.")
    revision = str(versions[0])
    if revision not in known_revisions:
        newest = list(known_revisions)[-1] if known_revisions else "none"
        raise Refused(
            f"{backup_file} has schema revision {revision}, which this version of Ellity does"
            f" not know (its newest is {newest}): the backup comes from a newer Ellity."
            " Restore it with that version or a later one."
        )
    return revision


def _take_over(target: Path) -> None:
    """Refuse while another connection has ``target`` open; then remove its side files.

    Leaving WAL mode needs the database to itself: every process of a running Ellity keeps
    connections open, so this fails while one runs. It also checkpoints and removes the
    old ``-wal`` and ``-shm``; whatever is left of them is removed after, since SQLite would
    apply an old WAL's frames to the restored file."""
    if target.exists():
        try:
            with _connect(target, mode="rw", timeout=IN_USE_TIMEOUT) as conn:
                conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise Refused(
                    f"{target} is in use by another process. Stop `ellity serve` and every"
                    " `ellity worker` using it, then restore again."
                ) from None
        except sqlite3.DatabaseError:
            pass  # not a database (any more): nothing can be using it as one
    for suffix in SIDE_FILES:
        Path(f"{target}{suffix}").unlink(missing_ok=True)


# -- shared ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _connect(
    path: Path, *, mode: str = "rwc", timeout: float = 30.0
) -> Iterator[sqlite3.Connection]:
    """A connection closed at the end (``sqlite3.connect``'s own ``with`` only commits)."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode={mode}",
        uri=True,
        timeout=timeout,
        isolation_level=None,
    )
    try:
        yield conn
    finally:
        conn.close()


def _integrity_problem(path: Path) -> str:
    """``""`` when ``PRAGMA integrity_check`` says ok, else its first complaint."""
    try:
        with _connect(path) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    first = str(rows[0][0]) if rows else "no answer"
    return "" if first == "ok" else first


def _temporary_beside(path: Path) -> Path:
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise Refused(f"Cannot write {path}: {exc.strerror or exc}.") from None
    os.close(fd)  # created with mode 600; SQLite opens it by name
    return Path(name)


def _remove_with_side_files(path: Path) -> None:
    for suffix in ("", *SIDE_FILES):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
