"""``ellity create-api-token`` as an operator runs it: a real process on a fresh SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ellity.adapters.sql.database import create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.errors import InvalidApiToken
from ellity.domain.services.api_tokens import authenticate_api_token, list_api_tokens
from tests.fakes import FakeClock
from tests.processes import run_ellity as run

TOKEN = re.compile(r"^ell_[A-Za-z0-9]{40}$")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A working directory whose database holds the merchant ``shop``."""
    created = run(
        tmp_path,
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
    return tmp_path


async def test_a_new_token_is_printed_once_and_authenticates_the_merchant(shop: Path) -> None:
    made = run(shop, "create-api-token", "--merchant", "shop", "--name", "Checkout")
    second = run(shop, "create-api-token", "--merchant", "shop")

    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert TOKEN.match(token)
    assert made.stdout == token + "\n"
    assert "Checkout" in made.stderr
    assert token[-4:] in made.stderr
    assert "only this once" in made.stderr
    assert token not in made.stderr
    assert second.returncode == 0, second.stderr
    assert TOKEN.match(second.stdout.strip())
    assert second.stdout.strip() != token

    database = create_database(f"sqlite+aiosqlite:///{shop / 'var' / 'ellity.db'}")
    try:
        uow = SqlUnitOfWorkFactory(database)
        merchant_id = await authenticate_api_token(token, uow_factory=uow, clock=FakeClock())
        listed = await list_api_tokens(merchant_id, uow=uow(read_only=True))
        with pytest.raises(InvalidApiToken):
            await authenticate_api_token(token[:-1], uow_factory=uow, clock=FakeClock())
    finally:
        await database.dispose()
    assert [(t.name, t.hint) for t in listed] == [
        ("e-shop", second.stdout.strip()[-4:]),
        ("Checkout", token[-4:]),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--merchant", "nobody"], "No merchant with the slug 'nobody'"),
        (["--merchant", "shop", "--name", "  "], "name must have 1 to 100 characters"),
        (["--merchant", "shop", "--name", "x" * 101], "name must have 1 to 100 characters"),
    ],
)
def test_an_unknown_merchant_or_a_bad_name_is_refused_with_a_message_and_no_token(
    shop: Path, args: list[str], message: str
) -> None:
    refused = run(shop, "create-api-token", *args)

    assert refused.returncode == 2
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stdout == ""
