"""``ellity run-nightly`` as an operator runs it: a real process on a fresh SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.adapters.system_clock import SecretsRandom
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import Topic
from ellity.domain.services import customers, merchants, points
from tests.fakes import FakeClock
from tests.processes import run_ellity as run


def seed(workdir: Path) -> None:
    """A merchant made by the command; then, through the services on the same file, Ann with
    points long past their last day and Bob with points whose last day is a few days ahead."""
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
    )
    assert created.returncode == 0, created.stderr

    async def add_customers() -> None:
        database = create_database(f"sqlite+aiosqlite:///{workdir / 'var' / 'ellity.db'}")
        uow = SqlUnitOfWorkFactory(database)
        now = datetime.now(UTC)
        try:
            merchant = await merchants.merchant_by_slug("shop", uow=uow(read_only=True))
            assert merchant.id is not None
            for email, earned_at in (
                ("ann@shop.cz", now - timedelta(days=800)),
                ("bob@shop.cz", now - timedelta(days=360)),  # valid 12 months: 5 days ahead
            ):
                clock = FakeClock(earned_at)
                made = await customers.upsert_customer(
                    merchant.id,
                    customers.CustomerInput(email=email, registered=True),
                    uow=uow(),
                    clock=clock,
                    rng=SecretsRandom(),
                )
                assert made.view.customer.id is not None
                await points.earn_points(
                    merchant.id,
                    made.view.customer.id,
                    Points.parse("25"),
                    order_ref=f"o-{email}",
                    uow=uow(),
                    clock=clock,
                )
        finally:
            await database.dispose()

    asyncio.run(add_customers())


def outbox(workdir: Path) -> list[tuple[str, dict[str, object]]]:
    conn = sqlite3.connect(workdir / "var" / "ellity.db")
    try:
        rows = conn.execute("SELECT topic, payload FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(topic, json.loads(payload)) for topic, payload in rows]


def test_run_nightly_expires_due_points_and_records_the_pre_expiry_email_once(
    tmp_path: Path,
) -> None:
    seed(tmp_path)
    changed = run(
        tmp_path,
        "settings",
        "--merchant",
        "shop",
        "pre_expiry_notify=true",
        "pre_expiry_days=14",
        "send_system_emails=true",
    )
    assert changed.returncode == 0, changed.stderr

    first = run(tmp_path, "run-nightly", "--merchant", "shop")
    assert first.returncode == 0, first.stderr
    assert "Nightly run for 'shop'" in first.stdout
    assert "1 customer(s) lost their due points (0 Ecomail credit events, 1 emails" in first.stdout
    assert "pre-expiry: 1 new notices (0 Ecomail expiry events, 1 emails" in first.stdout
    recorded = [
        (topic, payload)
        for topic, payload in outbox(tmp_path)
        if topic != Topic.POINTS_CHANGED_EMAIL.value
    ]
    assert [topic for topic, _ in recorded] == ["email.points_expiring"]
    assert recorded[0][1]["points"] == 2500

    again = run(tmp_path, "run-nightly", "--merchant", "shop")
    assert again.returncode == 0, again.stderr
    assert "expiry: 0 customer(s) lost their due points" in again.stdout
    assert "pre-expiry: 0 new notices" in again.stdout


def test_run_nightly_says_why_nothing_was_sent_and_refuses_an_unknown_merchant(
    tmp_path: Path,
) -> None:
    seed(tmp_path)
    quiet = run(tmp_path, "run-nightly", "--merchant", "shop")
    assert quiet.returncode == 0, quiet.stderr
    assert "pre-expiry: nothing sent, pre-expiry notices are off" in quiet.stdout
    unknown = run(tmp_path, "run-nightly", "--merchant", "nobody")
    assert unknown.returncode == 2
    assert "No merchant with the slug 'nobody'" in unknown.stderr
