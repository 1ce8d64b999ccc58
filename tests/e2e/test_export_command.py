"""``ellity export`` as an operator runs it: real processes on a fresh SQLite file."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pty
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.cli_export import AtomicFile
from ellity.domain.model.money import Points
from ellity.domain.services import customers, merchants, points
from ellity.domain.services.export import EXPORT_COLUMNS
from tests.processes import ELLITY
from tests.processes import run_ellity as run

CUSTOMERS = 12


def seed(workdir: Path) -> None:
    """A merchant made by the command, then customers through the services on the same file."""
    created = run(
        workdir,
        "create-merchant",
        "--slug",
        "shop",
        "--name",
        "My Shop",
        "--admin-email",
        "admin@shop.cz",
        "--admin-password",
        "a long password",
        "--shop-url",
        "https://shop.cz",
    )
    assert created.returncode == 0, created.stderr

    async def add_customers() -> None:
        database = create_database(f"sqlite+aiosqlite:///{workdir / 'var' / 'ellity.db'}")
        uow = SqlUnitOfWorkFactory(database)
        try:
            merchant = await merchants.merchant_by_slug("shop", uow=uow(read_only=True))
            assert merchant.id is not None
            for n in range(CUSTOMERS):
                made = await customers.upsert_customer(
                    merchant.id,
                    customers.CustomerInput(
                        email=f"c{n}@shop.cz" if n else None,
                        shop_customer_id=f"s-{n}",
                        first_name='=HYPERLINK("http://x")' if n == 1 else f"Name{n}",
                    ),
                    uow=uow(),
                    clock=SystemClock(),
                    rng=SecretsRandom(),
                )
                customer_id = made.view.customer.id
                assert customer_id is not None
                await points.earn_points(
                    merchant.id,
                    customer_id,
                    Points.parse("200"),
                    order_ref=f"o-{n}",
                    uow=uow(),
                    clock=SystemClock(),
                )
                await points.adjust_points(
                    merchant.id,
                    customer_id,
                    Points(-12000),
                    note="x",
                    uow=uow(),
                    clock=SystemClock(),
                )
        finally:
            await database.dispose()

    asyncio.run(add_customers())


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seeded")
    seed(folder)
    return folder


@pytest.fixture
def workdir(seeded: Path, tmp_path: Path) -> Path:
    """A working folder of its own, holding a copy of the seeded database."""
    shutil.copytree(seeded / "var", tmp_path / "var")
    return tmp_path


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def run_bytes(workdir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}
    return subprocess.run(
        [*ELLITY, *args], cwd=workdir, env=env, capture_output=True, timeout=60, check=False
    )


def test_export_writes_the_csv_to_stdout_and_the_same_csv_to_the_file_given(
    workdir: Path,
) -> None:
    to_stdout = run_bytes(workdir, "export", "--merchant", "shop")
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stderr == b""  # no progress bar when stderr is not a terminal

    to_file = run_bytes(workdir, "export", "--merchant", "shop", "--out", "customers.csv")
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout == b""
    written = (workdir / "customers.csv").read_bytes()
    assert written == to_stdout.stdout

    table = rows_of(written)
    assert table[0] == list(EXPORT_COLUMNS)
    assert len(table) == CUSTOMERS + 1
    assert table[1][:2] == ["", "Name0"]  # without an email, exported all the same
    assert table[2][:2] == ["c1@shop.cz", '\'=HYPERLINK("http://x")']
    last_change = EXPORT_COLUMNS.index("ellity_last_change_value")
    assert {row[last_change] for row in table[1:]} == {"-120"}
    assert (workdir / "customers.csv").stat().st_mode & 0o077 == 0  # PINs inside: owner only
    assert sorted(p.name for p in workdir.iterdir()) == ["customers.csv", "var"]


def test_an_unknown_merchant_is_refused_and_no_file_is_written(workdir: Path) -> None:
    refused = run(workdir, "export", "--merchant", "nobody", "--out", "customers.csv")
    assert refused.returncode == 2
    assert "No merchant with the slug 'nobody'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["var"]


@pytest.mark.parametrize(
    ("out", "message"),
    [("missing/customers.csv", "cannot write missing/customers.csv"), ("var", "is a directory")],
)
def test_an_output_that_cannot_be_written_is_refused_with_a_message(
    workdir: Path, out: str, message: str
) -> None:
    refused = run(workdir, "export", "--merchant", "shop", "--out", out)
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_failed_export_leaves_the_previous_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "customers.csv"
    target.write_bytes(b"the previous export\r\n")
    with pytest.raises(RuntimeError), AtomicFile(target) as handle:
        handle.write(b"half of a new")
        raise RuntimeError("the database went away")
    assert target.read_bytes() == b"the previous export\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["customers.csv"]

    with AtomicFile(target) as handle:
        handle.write(b"the new export\r\n")
    assert target.read_bytes() == b"the new export\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["customers.csv"]


def test_a_progress_bar_is_drawn_when_stderr_is_a_terminal(workdir: Path) -> None:
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}
    try:
        process = subprocess.Popen(
            [*ELLITY, "export", "--merchant", "shop"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        stdout, _ = process.communicate(timeout=60)
        shown = b""
        while select.select([controller], [], [], 1)[0]:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not data:
                break
            shown += data
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert f"100%  {CUSTOMERS} / {CUSTOMERS} customers".encode() in shown
    assert b"export [" not in stdout
    assert len(rows_of(stdout)) == CUSTOMERS + 1


#: Packages of the web app, the worker and the migrations, a model layer over the tables, and
#: the other commands' use cases: the export waits for none of them.
NOT_FOR_THE_EXPORT = (
    "sqlmodel",
    "pydantic",
    "ellity.domain.services.integration",
    "litestar",
    "uvicorn",
    "arq",
    "redis",
    "httpx",
    "jinja2",
    "argon2",
    "cryptography",
    "alembic",
    "ellity.web",
    "ellity.worker",
)


def test_the_export_imports_nothing_of_the_web_app_the_worker_the_migrations_or_a_model_layer(
    workdir: Path,
) -> None:
    """The interpreter's start-up is part of every export: ``ellity export`` imports only
    what it needs (checked in the process that ran it, after the export)."""
    script = (
        "import sys\n"
        "from ellity.cli import main\n"
        "code = main(['export', '--merchant', 'shop', '--out', 'customers.csv'])\n"
        "print(' '.join(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}
    done = subprocess.run(
        [ELLITY[0], "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(rows_of((workdir / "customers.csv").read_bytes())) == CUSTOMERS + 1
    imported = done.stdout.split()
    assert "ellity.adapters.sql.export_rows" in imported
    assert [
        name
        for name in imported
        if any(name == root or name.startswith(f"{root}.") for root in NOT_FOR_THE_EXPORT)
    ] == []


async def add_czech_customer(workdir: Path) -> None:
    database = create_database(f"sqlite+aiosqlite:///{workdir / 'var' / 'ellity.db'}")
    uow = SqlUnitOfWorkFactory(database)
    try:
        merchant = await merchants.merchant_by_slug("shop", uow=uow(read_only=True))
        assert merchant.id is not None
        made = await customers.upsert_customer(
            merchant.id,
            customers.CustomerInput(
                email="jiri@shop.cz", first_name="Jiří", last_name="Růžičková; Nováková"
            ),
            uow=uow(),
            clock=SystemClock(),
            rng=SecretsRandom(),
        )
        assert made.view.customer.id is not None
        await points.earn_points(
            merchant.id,
            made.view.customer.id,
            Points.parse("1250.50"),
            order_ref="o-cz",
            uow=uow(),
            clock=SystemClock(),
        )
    finally:
        await database.dispose()


def test_the_file_for_excel_has_a_bom_semicolons_and_numbers_czech_excel_reads(
    workdir: Path,
) -> None:
    asyncio.run(add_czech_customer(workdir))
    done = run_bytes(
        workdir, "export", "--merchant", "shop", "--format", "excel", "--out", "excel.csv"
    )
    assert done.returncode == 0, done.stderr
    data = (workdir / "excel.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM: Excel reads the diacritics
    excel = list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline=""), delimiter=";"))
    ecomail = rows_of(run_bytes(workdir, "export", "--merchant", "shop").stdout)
    assert excel[0] == ecomail[0] == list(EXPORT_COLUMNS)
    assert len(excel) == len(ecomail) == CUSTOMERS + 2

    column = EXPORT_COLUMNS.index
    [jiri] = [row for row in excel if row[0] == "jiri@shop.cz"]
    assert jiri[1:3] == ["Jiří", "Růžičková; Nováková"]  # a ';' inside stays in its cell
    assert jiri[column("ellity_credit")] == "1250,50"  # no grouping, a decimal comma (cs)
    assert jiri[column("ellity_credit_num")] == "1250"
    assert jiri[column("ellity_last_change_value")] == "1250,50"
    grouped = {"ellity_credit", "ellity_next_expiration_value", "ellity_last_change_value"}
    for ours, theirs in zip(excel[1:], ecomail[1:], strict=True):
        for name, cell in zip(EXPORT_COLUMNS, theirs, strict=True):
            expected = cell.replace(" ", "") if name in grouped else cell
            assert ours[column(name)] == expected, (name, ours, theirs)
    assert excel[2][1] == '\'=HYPERLINK("http://x")'  # the same formula guard
