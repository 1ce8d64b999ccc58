"""Deployment settings read from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from ellity.adapters.sql.database import Database
from ellity.bootstrap import open_database
from ellity.settings import (
    DEFAULT_DB_MAX_OVERFLOW,
    DEFAULT_DB_POOL_SIZE,
    Settings,
    load_settings,
)


def private_smtp_allowed(tmp_path: Path, **env: str) -> bool:
    environ = {"ELLITY_SECRET_KEY": "unit-test-secret-key", "ELLITY_VAR_DIR": str(tmp_path), **env}
    return load_settings(environ, dotenv=tmp_path / "no.env").smtp_allow_private


def test_smtp_servers_on_private_addresses_are_refused_unless_the_deployment_allows_them(
    tmp_path: Path,
) -> None:
    assert private_smtp_allowed(tmp_path) is False
    assert private_smtp_allowed(tmp_path, ELLITY_SMTP_ALLOW_PRIVATE="") is False


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("0", False)],
)
def test_the_private_smtp_flag_reads_true_or_false(
    tmp_path: Path, value: str, allowed: bool
) -> None:
    assert private_smtp_allowed(tmp_path, ELLITY_SMTP_ALLOW_PRIVATE=value) is allowed


def test_a_private_smtp_flag_that_is_neither_true_nor_false_stops_the_start(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="ELLITY_SMTP_ALLOW_PRIVATE must be true or false"):
        private_smtp_allowed(tmp_path, ELLITY_SMTP_ALLOW_PRIVATE="maybe")


def settings_with(tmp_path: Path, **env: str) -> Settings:
    environ = {"ELLITY_SECRET_KEY": "unit-test-secret-key", "ELLITY_VAR_DIR": str(tmp_path), **env}
    return load_settings(environ, dotenv=tmp_path / "no.env")


POSTGRES_URL = "postgresql+asyncpg://ellity@127.0.0.1:5432/ellity"  # never connected to


def pool_limits(database: Database) -> tuple[int, int]:
    pool = database.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.size(), pool._max_overflow  # what the pool was given


async def test_the_postgresql_pool_keeps_four_processes_under_100_connections_by_default(
    tmp_path: Path,
) -> None:
    database = open_database(settings_with(tmp_path, ELLITY_DATABASE_URL=POSTGRES_URL))
    try:
        size, overflow = pool_limits(database)
        assert database.write_engine.pool is database.engine.pool  # one pool per process
    finally:
        await database.dispose()
    assert (size, overflow) == (DEFAULT_DB_POOL_SIZE, DEFAULT_DB_MAX_OVERFLOW)
    assert 4 * (size + overflow) < 100 - 3  # PostgreSQL reserves 3 for superusers


async def test_the_postgresql_pool_takes_its_size_and_overflow_from_the_settings(
    tmp_path: Path,
) -> None:
    settings = settings_with(
        tmp_path,
        ELLITY_DATABASE_URL=POSTGRES_URL,
        ELLITY_DB_POOL_SIZE="3",
        ELLITY_DB_MAX_OVERFLOW="0",
    )
    database = open_database(settings)
    try:
        assert pool_limits(database) == (3, 0)
    finally:
        await database.dispose()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ELLITY_DB_POOL_SIZE", "0"),
        ("ELLITY_DB_POOL_SIZE", "ten"),
        ("ELLITY_DB_POOL_SIZE", "2.5"),
        ("ELLITY_DB_POOL_SIZE", "1001"),
        ("ELLITY_DB_MAX_OVERFLOW", "-1"),
        ("ELLITY_DB_MAX_OVERFLOW", "²"),
    ],
)
def test_a_pool_setting_that_is_not_a_sensible_whole_number_stops_the_start(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a whole number from"):
        settings_with(tmp_path, **{name: value})


def test_the_settings_say_where_the_secret_key_is_kept(tmp_path: Path) -> None:
    """``ellity backup`` names it: the file in the var folder, or the environment."""
    from_file = load_settings({"ELLITY_VAR_DIR": str(tmp_path)}, dotenv=tmp_path / "no.env")
    assert from_file.secret_key_file == tmp_path / "secret_key"
    assert from_file.secret_key == (tmp_path / "secret_key").read_text(encoding="utf-8")

    given = load_settings(
        {"ELLITY_VAR_DIR": str(tmp_path / "other"), "ELLITY_SECRET_KEY": "from-the-environment"},
        dotenv=tmp_path / "no.env",
    )
    assert given.secret_key_file is None
    assert not (tmp_path / "other" / "secret_key").exists()


def metrics_on(var_dir: Path, **env: str) -> bool:
    environ = {"ELLITY_SECRET_KEY": "k", "ELLITY_VAR_DIR": str(var_dir), **env}
    return load_settings(environ, dotenv=var_dir / "none.env").metrics


def test_the_metrics_endpoint_is_on_unless_turned_off(tmp_path: Path) -> None:
    assert metrics_on(tmp_path) is True
    assert metrics_on(tmp_path, ELLITY_METRICS="") is True
    assert metrics_on(tmp_path, ELLITY_METRICS="off") is False
    assert metrics_on(tmp_path, ELLITY_METRICS="on") is True
    with pytest.raises(ValueError, match="ELLITY_METRICS must be true or false"):
        metrics_on(tmp_path, ELLITY_METRICS="sometimes")


def reconcile_share(tmp_path: Path, **env: str) -> float:
    environ = {"ELLITY_SECRET_KEY": "unit-test-secret-key", "ELLITY_VAR_DIR": str(tmp_path), **env}
    return load_settings(environ, dotenv=tmp_path / "no.env").reconcile_share


@pytest.mark.parametrize(("value", "share"), [(None, 0.3), ("", 0.3), ("0.5", 0.5), ("1", 1.0)])
def test_the_reconciliation_takes_thirty_percent_of_the_request_budget_unless_set(
    tmp_path: Path, value: str | None, share: float
) -> None:
    env = {} if value is None else {"ELLITY_RECONCILE_SHARE": value}
    assert reconcile_share(tmp_path, **env) == share


@pytest.mark.parametrize("value", ["0", "-0.1", "1.01", "30%", "nan", "inf"])
def test_a_reconcile_share_outside_zero_to_one_stops_the_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="ELLITY_RECONCILE_SHARE"):
        reconcile_share(tmp_path, ELLITY_RECONCILE_SHARE=value)
