"""Deployment settings read from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from ellity.settings import load_settings


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
