"""``ellity backup`` and ``ellity restore`` as an operator runs them, on SQLite files; the
backup also while points are being written to the database."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.sqlite_backup import backup
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.money import Points
from ellity.domain.services import customers, merchants, points
from ellity.ports.storage import UnitOfWorkFactory
from tests.conftest import postgres_admin_url
from tests.processes import ELLITY, clean_env
from tests.processes import run_ellity as run

CUSTOMERS = 8
FILLER_CUSTOMERS = 30_000  # some megabytes, so the backup takes several steps


def database_of(workdir: Path) -> Path:
    return workdir / "var" / "ellity.db"


def rows(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def integrity(path: Path) -> str:
    return str(rows(path, "PRAGMA integrity_check")[0][0])


def order_refs(path: Path) -> set[str]:
    return {str(r[0]) for r in rows(path, "SELECT order_ref FROM ledger_entries") if r[0]}


def unbalanced(path: Path) -> int:
    """Customers whose balance is not the sum of their ledger: a change half applied."""
    return int(
        rows(
            path,
            "SELECT count(*) FROM customers c WHERE c.balance_cents !="
            " (SELECT coalesce(sum(e.points_cents), 0) FROM ledger_entries e"
            "  WHERE e.customer_id = c.id)",
        )[0][0]
    )


@asynccontextmanager
async def storage(workdir: Path) -> AsyncIterator[UnitOfWorkFactory]:
    """The real SQL unit of work on the workdir's database, as the app uses it."""
    database = create_database(f"sqlite+aiosqlite:///{database_of(workdir)}")
    try:
        yield SqlUnitOfWorkFactory(database)
    finally:
        await database.dispose()


@dataclass(frozen=True)
class Shop:
    merchant: MerchantId
    customers: list[CustomerId]


async def the_shop(uow: UnitOfWorkFactory, workdir: Path) -> Shop:
    """The merchant and its customers with points (not the filler)."""
    merchant = await merchants.merchant_by_slug("shop", uow=uow(read_only=True))
    found = rows(database_of(workdir), "SELECT id FROM customers WHERE shop_customer_id LIKE 's-%'")
    assert len(found) == CUSTOMERS
    return Shop(merchant.id, [CustomerId(row[0]) for row in found])


async def earn(uow: UnitOfWorkFactory, shop: Shop, customer: CustomerId, ref: str) -> None:
    await points.earn_points(
        shop.merchant, customer, Points.parse("10"), order_ref=ref, uow=uow(), clock=SystemClock()
    )


def seed(workdir: Path) -> None:
    created = run(
        workdir,
        "create-merchant",
        "--slug",
        "shop",
        "--name",
        "Shop",
        "--admin-email",
        "admin@shop.cz",
        "--admin-password",
        "a long password",
    )
    assert created.returncode == 0, created.stderr

    async def add_customers() -> None:
        async with storage(workdir) as uow:
            merchant = await merchants.merchant_by_slug("shop", uow=uow(read_only=True))
            for n in range(CUSTOMERS):
                made = await customers.upsert_customer(
                    merchant.id,
                    customers.CustomerInput(email=f"c{n}@shop.cz", shop_customer_id=f"s-{n}"),
                    uow=uow(),
                    clock=SystemClock(),
                    rng=SecretsRandom(),
                )
                await earn(uow, Shop(merchant.id, []), made.view.customer.id, f"seed-{n}")

    asyncio.run(add_customers())
    # filler customers without points (balance 0, no ledger), written in bulk
    conn = sqlite3.connect(database_of(workdir), isolation_level=None)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    conn.execute(
        """INSERT INTO customers (merchant_id, email, email_key, first_name, last_name,
             shop_customer_id, registered, pin, referral_code, created_at, updated_at)
           WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count)
           SELECT m.id, 'filler' || n || '@shop.cz', 'filler' || n || '@shop.cz', 'Filler',
             'Customer' || n, 'f-' || n, 1, NULL, printf('F%07d', n), :now, :now
           FROM s, merchants m""",
        {"count": FILLER_CUSTOMERS, "now": now},
    )
    conn.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seeded")
    seed(folder)
    return folder


@pytest.fixture
def workdir(seeded: Path, tmp_path: Path) -> Path:
    """A working folder of its own, holding a copy of the seeded database and secret key."""
    shutil.copytree(seeded / "var", tmp_path / "var")
    return tmp_path


def fresh_workdir(tmp_path: Path, name: str) -> Path:
    """Another installation's folder, with the same secret key (kept with the backup)."""
    folder = tmp_path / name
    (folder / "var").mkdir(parents=True)
    shutil.copy2(tmp_path / "var" / "secret_key", folder / "var" / "secret_key")
    return folder


# -- backup under load ----------------------------------------------------------------------


@asynccontextmanager
async def writing(
    uow: UnitOfWorkFactory, shop: Shop, prefix: str, *, warm_up: int
) -> AsyncIterator[list[str]]:
    """A task earning and spending points, each change its own committed transaction, until
    the block ends; yields (after ``warm_up`` changes) the order references committed so far,
    growing."""
    committed: list[str] = []
    stop, warmed = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        n = 0
        while not stop.is_set():
            customer, ref = shop.customers[n % len(shop.customers)], f"{prefix}-{n}"
            if n % 3 == 2:
                await points.spend_points(
                    shop.merchant,
                    customer,
                    Points.parse("3"),
                    order_ref=ref,
                    uow=uow(),
                    clock=SystemClock(),
                )
            else:
                await earn(uow, shop, customer, ref)
            committed.append(ref)
            n += 1
            if n >= warm_up:
                warmed.set()

    writer = asyncio.create_task(write())
    await asyncio.wait({writer, asyncio.create_task(warmed.wait())}, return_when="FIRST_COMPLETED")
    if writer.done():
        await writer  # it failed: raise its error
    try:
        yield committed
    finally:
        stop.set()
        await writer


async def test_a_backup_taken_while_points_are_written_restores_every_change_committed_before_it(
    workdir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backups" / "ellity-backup.db"
    out.parent.mkdir()
    wal = f"{database_of(workdir)}-wal"
    async with storage(workdir) as uow:
        shop = await the_shop(uow, workdir)
        async with writing(uow, shop, "load", warm_up=40) as committed:
            before = set(committed)
            # the newest commits are in the WAL only: a copy of ellity.db alone would miss them
            assert await asyncio.to_thread(os.path.getsize, wal) > 0
            process = await asyncio.create_subprocess_exec(
                *ELLITY,
                "backup",
                "--out",
                str(out),
                cwd=workdir,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            stdout, stderr = await process.communicate()
            written_meanwhile = len(committed) - len(before)

    assert process.returncode == 0, stderr.decode()
    assert written_meanwhile > 0  # the writes went on while the backup ran
    assert "integrity check ok" in stdout.decode()
    assert "Keep the secret key with this backup: it is the file var/secret_key" in (
        stderr.decode()
    )
    secret_key = (workdir / "var" / "secret_key").read_text(encoding="utf-8")
    assert secret_key not in stdout.decode() + stderr.decode()
    assert out.stat().st_mode & 0o777 == 0o600  # PINs and encrypted secrets inside
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no -wal, no leftovers

    elsewhere = fresh_workdir(tmp_path, "elsewhere")
    restored = run(elsewhere, "restore", "--from", str(out))
    assert restored.returncode == 0, restored.stderr
    database = database_of(elsewhere)
    assert integrity(database) == "ok"
    refs = order_refs(database)
    assert before <= refs  # every change committed before the backup started
    assert refs - {f"seed-{n}" for n in range(CUSTOMERS)} <= set(committed)
    assert unbalanced(database) == 0  # nothing half applied
    assert unbalanced(database_of(workdir)) == 0


async def test_stepwise_copies_restarted_by_writes_end_in_one_step_with_a_consistent_copy(
    workdir: Path, tmp_path: Path
) -> None:
    """Tiny steps: every write between two steps starts SQLite's copy again; after a few
    restarts the rest is copied in one step (a WAL reader, no writer waits)."""
    out = tmp_path / "steps.db"
    async with storage(workdir) as uow:
        shop = await the_shop(uow, workdir)
        async with writing(uow, shop, "step", warm_up=20) as committed:
            before = set(committed)
            done = await asyncio.to_thread(
                backup, database_of(workdir), out, pages=4, pause=0.02, restarts_allowed=3
            )
            written_meanwhile = len(committed) - len(before)

    assert written_meanwhile > 0
    assert done.restarts > 3
    assert done.one_step
    assert integrity(out) == "ok"
    assert before <= order_refs(out)
    assert unbalanced(out) == 0


def test_the_backup_reads_the_changes_still_in_the_wal(workdir: Path, tmp_path: Path) -> None:
    database = database_of(workdir)
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the change stays in the WAL
        conn.execute("UPDATE merchants SET name = 'Renamed in the WAL'")
        assert Path(f"{database}-wal").stat().st_size > 0
        shutil.copy2(database, tmp_path / "file-copy.db")
        taken = run(workdir, "backup", "--out", str(tmp_path / "backup.db"))
    finally:
        conn.close()
    assert taken.returncode == 0, taken.stderr
    names = "SELECT name FROM merchants"
    assert rows(tmp_path / "file-copy.db", names) == [("Shop",)]  # a plain copy misses it
    assert rows(tmp_path / "backup.db", names) == [("Renamed in the WAL",)]


# -- the backup file ------------------------------------------------------------------------


def test_a_backup_never_replaces_a_file_unless_forced(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.db"
    out.write_bytes(b"an older backup")
    refused = run(workdir, "backup", "--out", str(out))
    assert refused.returncode == 2
    assert f"{out} exists; add --force to replace it." in refused.stderr
    assert out.read_bytes() == b"an older backup"

    forced = run(workdir, "backup", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert integrity(out) == "ok"
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "var"]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("missing/backup.db", "Cannot write missing/backup.db"),
        ("var", "var is a directory; give a file name."),
        ("var/ellity.db", "var/ellity.db is the database itself"),
    ],
)
def test_a_backup_that_cannot_be_written_is_refused(workdir: Path, out: str, message: str) -> None:
    before = database_of(workdir).read_bytes()
    refused = run(workdir, "backup", "--out", out, "--force")
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr
    assert database_of(workdir).read_bytes() == before


# -- restore --------------------------------------------------------------------------------


async def test_a_restore_puts_the_database_back_as_it_was_at_the_backup(
    workdir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backup.db"
    assert run(workdir, "backup", "--out", str(out)).returncode == 0
    async with storage(workdir) as uow:
        shop = await the_shop(uow, workdir)
        await earn(uow, shop, shop.customers[0], "after-the-backup")
    assert "after-the-backup" in order_refs(database_of(workdir))

    restored = run(workdir, "restore", "--from", str(out))
    assert restored.returncode == 0, restored.stderr
    assert "Restored var/ellity.db from" in restored.stdout
    assert "need the secret key of the installation the backup came from" in restored.stderr
    database = database_of(workdir)
    assert "after-the-backup" not in order_refs(database)
    assert order_refs(database) == order_refs(out)
    assert integrity(database) == "ok"
    assert database.stat().st_mode & 0o777 == 0o600
    # the app opens the restored database as usual, migrated and writable
    async with storage(workdir) as uow:
        shop = await the_shop(uow, workdir)
        await earn(uow, shop, shop.customers[0], "after-the-restore")
    assert "after-the-restore" in order_refs(database)


@contextmanager
def open_like_a_running_app(database: Path, *, rename: str) -> Iterator[None]:
    """A connection that has written to the database and stays open, as a serving
    Ellity's do."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("UPDATE merchants SET name = ?", (rename,))
        yield
    finally:
        conn.close()


def test_a_restore_is_refused_while_the_database_is_in_use(workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.db"
    assert run(workdir, "backup", "--out", str(out)).returncode == 0
    database = database_of(workdir)
    with open_like_a_running_app(database, rename="Changed while serving"):
        refused = run(workdir, "restore", "--from", str(out))
    assert refused.returncode == 2
    assert "var/ellity.db is in use by another process. Stop `ellity serve`" in refused.stderr
    assert rows(database, "SELECT name FROM merchants") == [("Changed while serving",)]


def text_file(_backup: Path, path: Path) -> None:
    path.write_text("no database", encoding="utf-8")


def another_database(_backup: Path, path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()


def newer_schema(backup: Path, path: Path) -> None:
    shutil.copy2(backup, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()


def nothing(_backup: Path, _path: Path) -> None:
    pass


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (text_file, "notes.txt is not an SQLite database."),
        (another_database, "notes.txt is an SQLite database but not Ellity's"),
        (
            newer_schema,
            "notes.txt has schema revision 9999, which this version of Ellity does not know",
        ),
        (nothing, "There is no file at"),
    ],
    ids=["not-sqlite", "not-ellity", "newer-schema", "missing"],
)
def test_a_restore_of_a_file_that_is_not_a_backup_of_this_ellity_is_refused(
    workdir: Path, tmp_path: Path, make: Callable[[Path, Path], None], message: str
) -> None:
    taken = tmp_path / "backup.db"
    assert run(workdir, "backup", "--out", str(taken)).returncode == 0
    make(taken, tmp_path / "notes.txt")
    database = database_of(workdir)
    before = order_refs(database)
    refused = run(workdir, "restore", "--from", str(tmp_path / "notes.txt"))
    assert refused.returncode == 2, refused.stdout
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr
    assert order_refs(database) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "notes.txt") == [
        "backup.db",
        "var",
    ]
    assert not [p for p in (workdir / "var").iterdir() if p.name.endswith(".part")]


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["backup", "--out", "backup.dump"], "pg_dump --format=custom --no-owner"),
        (["restore", "--from", "backup.dump"], "use pg_restore into an empty database"),
    ],
)
def test_on_postgresql_the_commands_point_to_pg_dump_and_pg_restore(
    tmp_path: Path, command: list[str], message: str
) -> None:
    (tmp_path / "backup.dump").write_bytes(b"PGDMP")
    done = subprocess.run(
        [*ELLITY, *command],
        cwd=tmp_path,
        env={**clean_env(), "ELLITY_DATABASE_URL": postgres_admin_url()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert 'see "Backups" in the README' in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["backup.dump", "var"]
