"""API token use cases on the in-memory fakes: create, list, revoke, authenticate."""

from __future__ import annotations

import hashlib

import pytest

from ellity.domain.model.errors import (
    ApiTokenNotFound,
    InvalidApiToken,
    InvalidInput,
    MerchantNotFound,
)
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant
from ellity.domain.services.api_tokens import (
    authenticate_api_token,
    create_api_token,
    list_api_tokens,
    revoke_api_token,
)
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakeRandom, InMemoryStore


async def new_token(
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
    name: str = "e-shop",
) -> tuple[int, str]:
    stored, plain = await create_api_token(
        merchant.id, name, uow=uow_factory(), clock=clock, rng=rng
    )
    return stored.id, plain


async def test_a_new_token_is_shown_once_and_stored_only_as_its_digest_and_last_four_characters(
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    store: InMemoryStore,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    stored, plain = await create_api_token(
        merchant.id, "  Main shop  ", uow=uow_factory(), clock=clock, rng=rng
    )

    assert plain.startswith("ell_")
    assert len(plain) == 44
    assert stored.merchant_id == merchant.id
    assert stored.name == "Main shop"
    assert stored.hint == plain[-4:]
    assert stored.created_at == clock.now()
    assert stored.last_used_at is None
    assert stored.is_active
    assert store.state.api_token_digests[stored.id] == hashlib.sha256(plain.encode()).hexdigest()
    assert plain not in repr(store.state)


async def test_every_token_is_drawn_from_the_random_source(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock
) -> None:
    scripted = FakeRandom(script=[0] * 39 + [61])
    _, plain = await create_api_token(
        merchant.id, "e-shop", uow=uow_factory(), clock=clock, rng=scripted
    )
    assert plain == "ell_" + "A" * 39 + "9"


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "Shop\x00", "Shop\nnext"])
async def test_a_token_needs_a_short_printable_name_and_nothing_is_stored_without_one(
    name: str,
    *,
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    store: InMemoryStore,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    with pytest.raises(InvalidInput):
        await create_api_token(merchant.id, name, uow=uow_factory(), clock=clock, rng=rng)
    assert store.state.api_tokens == {}


async def test_a_token_for_an_unknown_merchant_is_refused(
    uow_factory: UnitOfWorkFactory, store: InMemoryStore, clock: FakeClock, rng: FakeRandom
) -> None:
    with pytest.raises(MerchantNotFound):
        await create_api_token(MerchantId(404), "e-shop", uow=uow_factory(), clock=clock, rng=rng)
    assert store.state.api_tokens == {}


async def test_a_token_authenticates_its_merchant_and_records_when_it_was_used(
    merchant: Merchant,
    other_merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    _, anna_token = await new_token(merchant, uow_factory, clock, rng)
    _, bob_token = await new_token(other_merchant, uow_factory, clock, rng)
    used_at = clock.advance(hours=2)

    assert (
        await authenticate_api_token(anna_token, uow_factory=uow_factory, clock=clock)
        == merchant.id
    )
    assert (
        await authenticate_api_token(f"  {bob_token} ", uow_factory=uow_factory, clock=clock)
        == other_merchant.id
    )
    (listed,) = await list_api_tokens(merchant.id, uow=uow_factory(read_only=True))
    assert listed.last_used_at == used_at


async def test_a_tokens_use_is_written_at_most_once_a_minute(
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    store: InMemoryStore,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    _, token = await new_token(merchant, uow_factory, clock, rng)

    async def last_use_after_a_call() -> object:
        assert await authenticate_api_token(token, uow_factory=uow_factory, clock=clock)
        (listed,) = await list_api_tokens(merchant.id, uow=uow_factory(read_only=True))
        return listed.last_used_at

    writers, commits = store.writers, store.commits
    first = clock.advance(hours=1)
    assert await last_use_after_a_call() == first
    clock.advance(seconds=30)
    assert await last_use_after_a_call() == first
    clock.advance(seconds=29)
    assert await last_use_after_a_call() == first
    # the calls within the minute only read: not even a writing transaction is opened
    assert (store.writers, store.commits) == (writers + 1, commits + 1)

    a_minute_on = clock.advance(seconds=1)
    assert await last_use_after_a_call() == a_minute_on
    assert (store.writers, store.commits) == (writers + 2, commits + 2)


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   ",
        "ell_wrong",
        "{token}x",
        "{token_without_last}",
        "{token_upper}",
        "x" * 201,
        "ell_" + "A" * 10_000,
    ],
)
async def test_a_missing_wrong_or_oversized_token_is_refused_and_changes_nothing(
    given: str,
    *,
    merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    store: InMemoryStore,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    _, plain = await new_token(merchant, uow_factory, clock, rng)
    token = given.format(token=plain, token_without_last=plain[:-1], token_upper=plain.upper())
    commits = store.commits

    with pytest.raises(InvalidApiToken) as refused:
        await authenticate_api_token(token, uow_factory=uow_factory, clock=clock)

    assert refused.value.code == "unauthorized"
    assert plain not in refused.value.message
    assert store.commits == commits


async def test_a_revoked_token_no_longer_authenticates_while_the_others_still_do(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock, rng: FakeRandom
) -> None:
    old_id, old = await new_token(merchant, uow_factory, clock, rng, name="old shop")
    _, new = await new_token(merchant, uow_factory, clock, rng, name="new shop")

    await revoke_api_token(merchant.id, old_id, uow=uow_factory(), clock=clock)

    with pytest.raises(InvalidApiToken):
        await authenticate_api_token(old, uow_factory=uow_factory, clock=clock)
    assert await authenticate_api_token(new, uow_factory=uow_factory, clock=clock) == merchant.id


async def test_tokens_are_listed_newest_first_with_revoked_ones_marked(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock, rng: FakeRandom
) -> None:
    first_id, _ = await new_token(merchant, uow_factory, clock, rng, name="first")
    clock.advance(days=1)
    await new_token(merchant, uow_factory, clock, rng, name="second")
    revoked_at = clock.advance(days=1)
    await revoke_api_token(merchant.id, first_id, uow=uow_factory(), clock=clock)

    listed = await list_api_tokens(merchant.id, uow=uow_factory(read_only=True))

    assert [(t.name, t.revoked_at, t.is_active) for t in listed] == [
        ("second", None, True),
        ("first", revoked_at, False),
    ]


async def test_a_merchant_can_neither_see_nor_revoke_another_merchants_tokens(
    merchant: Merchant,
    other_merchant: Merchant,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
    rng: FakeRandom,
) -> None:
    anna_token_id, anna_token = await new_token(merchant, uow_factory, clock, rng)

    assert await list_api_tokens(other_merchant.id, uow=uow_factory(read_only=True)) == []
    with pytest.raises(ApiTokenNotFound):
        await revoke_api_token(other_merchant.id, anna_token_id, uow=uow_factory(), clock=clock)
    assert (
        await authenticate_api_token(anna_token, uow_factory=uow_factory, clock=clock)
        == merchant.id
    )


async def test_revoking_an_unknown_or_already_revoked_token_is_not_found(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock, rng: FakeRandom
) -> None:
    token_id, _ = await new_token(merchant, uow_factory, clock, rng)
    await revoke_api_token(merchant.id, token_id, uow=uow_factory(), clock=clock)

    with pytest.raises(ApiTokenNotFound):
        await revoke_api_token(merchant.id, token_id, uow=uow_factory(), clock=clock)
    with pytest.raises(ApiTokenNotFound):
        await revoke_api_token(merchant.id, token_id + 100, uow=uow_factory(), clock=clock)
