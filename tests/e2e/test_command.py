"""The ``ellity`` command as an operator runs it: real processes on a fresh SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.processes import first_answer, free_port, start_serve
from tests.processes import run_ellity as run


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_serve_migrates_the_default_sqlite_file_and_answers_health(workdir: Path) -> None:
    port = free_port()
    server = start_serve(workdir, port)
    try:
        response = first_answer(
            server, lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        )
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok"}
        assert (workdir / "var" / "ellity.db").is_file()
        assert (workdir / "var" / "secret_key").stat().st_mode & 0o077 == 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_create_merchant_then_read_and_change_its_settings(workdir: Path) -> None:
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
    assert "a long password" not in created.stdout + created.stderr

    changed = run(
        workdir,
        "settings",
        "--merchant",
        "shop",
        "validity_months=6",
        "locale=en",
        "shop_url=https://shop.cz/",
        "referral_bonus=25.5",
    )
    assert changed.returncode == 0, changed.stderr
    shown = dict(
        line.split("=", 1)
        for line in run(workdir, "settings", "--merchant", "shop").stdout.splitlines()
    )
    assert shown == {
        "name": "My Shop",
        "shop_url": "https://shop.cz",
        "referral_link_template": "{shop_url}/?ref={code}",
        "referral_bonus": "25.50",
        "validity_months": "6",
        "locale": "en",
        "timezone": "Europe/Prague",
        "send_system_emails": "false",
        "newsletter_reward": "0.00",
        "newsletter_take_back": "false",
        "pre_expiry_notify": "false",
        "pre_expiry_days": "14",
        "ecomail_add": "consented",
        "ecomail_reconcile": "weekly",
    }


def create_shop(workdir: Path) -> None:
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


BACKFILL = "SELECT backfill_requested_at, backfill_finished_at FROM ecomail_integrations"


def test_a_wider_ecomail_add_setting_writes_every_contact_again_while_active(
    workdir: Path,
) -> None:
    create_shop(workdir)
    done = "2024-01-01 00:00:00.000000"
    database = sqlite3.connect(workdir / "var" / "ellity.db")
    with database:  # an integration active since long ago, its backfill finished
        database.execute(
            "INSERT INTO ecomail_integrations (merchant_id, api_key_encrypted, key_hint, list_id,"
            " list_name, active, activated_at, backfill_requested_at, backfill_after_id,"
            " backfill_marked, backfill_finished_at, updated_at)"
            " SELECT id, 'sealed', 'abcd', '1', 'Customers', 1, :t, :t, 0, 0, :t, :t"
            " FROM merchants WHERE slug = 'shop'",
            {"t": done},
        )
    narrower = run(workdir, "settings", "--merchant", "shop", "ecomail_add=none")
    assert narrower.returncode == 0, narrower.stderr
    assert "ecomail_add=none" in narrower.stdout.splitlines()
    assert database.execute(BACKFILL).fetchone() == (done, done)  # nobody new to add

    wider = run(workdir, "settings", "--merchant", "shop", "ecomail_add=customers")
    assert wider.returncode == 0, wider.stderr
    assert "ecomail_add=customers" in wider.stdout.splitlines()
    requested, finished = database.execute(BACKFILL).fetchone()
    assert requested > done and finished is None  # a new backfill, marking from the start
    database.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["settings", "--merchant", "shop", "locale=de"], "locale must be one of cs, en"),
        (["settings", "--merchant", "shop", "timezone=Mars/Base"], "not a known time zone"),
        (["settings", "--merchant", "shop", "colour=red"], "Unknown setting colour"),
        (["settings", "--merchant", "shop", "validity_months=x"], "whole number"),
        (
            ["settings", "--merchant", "shop", "ecomail_add=everyone"],
            "ecomail_add must be one of: consented, customers, none",
        ),
        (["settings", "--merchant", "nobody"], "No merchant with the slug 'nobody'"),
        (
            [
                "create-merchant",
                "--slug",
                "shop",
                "--name",
                "Again",
                "--admin-email",
                "b@shop.cz",
                "--admin-password",
                "a long password",
            ],
            "exists already",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_changes(
    workdir: Path, args: list[str], message: str
) -> None:
    run(
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
    before = run(workdir, "settings", "--merchant", "shop").stdout
    refused = run(workdir, *args)
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr
    assert run(workdir, "settings", "--merchant", "shop").stdout == before
