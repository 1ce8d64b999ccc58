"""Use cases about the API tokens a merchant's e-shop authenticates with.

A token is shown once, when it is created; Ellity keeps only its SHA-256 digest and its last
four characters (the hint shown in lists). A revoked token never works again.
"""

from __future__ import annotations

from ellity.domain.model.api_token import (
    MAX_TOKEN_LENGTH,
    ApiToken,
    clean_token_name,
    generate_token,
    last_use_outdated_at,
    token_digest,
)
from ellity.domain.model.errors import ApiTokenNotFound, InvalidApiToken
from ellity.domain.model.ids import MerchantId
from ellity.domain.services.common import load_merchant
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

HINT_LENGTH = 4

_NO_TOKEN = "Send the API token in the header 'Authorization: Bearer <token>'."
_BAD_TOKEN = "The API token is not valid: it is wrong or has been revoked."


async def create_api_token(
    merchant_id: MerchantId, name: str, *, uow: UnitOfWork, clock: Clock, rng: RandomSource
) -> tuple[ApiToken, str]:
    """A new token for the merchant: the stored record and the plaintext, to be shown once."""
    name = clean_token_name(name)
    token = generate_token(rng.randbelow)
    async with uow:
        await load_merchant(uow, merchant_id)
        stored = await uow.api_tokens.add(
            merchant_id,
            name=name,
            token_digest=token_digest(token),
            hint=token[-HINT_LENGTH:],
            at=clock.now(),
        )
        await uow.commit()
    return stored, token


async def list_api_tokens(merchant_id: MerchantId, *, uow: UnitOfWork) -> list[ApiToken]:
    """The merchant's tokens, newest first, revoked ones included."""
    async with uow:
        return await uow.api_tokens.list(merchant_id)


async def revoke_api_token(
    merchant_id: MerchantId, token_id: int, *, uow: UnitOfWork, clock: Clock
) -> None:
    """Revoke one of the merchant's active tokens; another merchant's token is not found."""
    async with uow:
        if not await uow.api_tokens.revoke(merchant_id, token_id, at=clock.now()):
            raise ApiTokenNotFound(token_id)
        await uow.commit()


async def authenticate_api_token(
    token: str, *, uow_factory: UnitOfWorkFactory, clock: Clock
) -> MerchantId:
    """The id of the merchant whose active token this is.

    The token is never compared as text: its digest is looked up through the database's index,
    so the time taken does not depend on how much of a guess is right. An empty token, or one
    longer than any Ellity issues, is refused without a lookup.

    The lookup only reads. The token's last use is written when the one read is a minute old
    or more (``LAST_USE_PRECISION``), and then only if no concurrent request has written a
    newer one meanwhile: an e-shop's calls write about once a minute, not once each.
    """
    token = token.strip()
    if not token:
        raise InvalidApiToken(_NO_TOKEN)
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidApiToken(_BAD_TOKEN)
    digest = token_digest(token)
    async with uow_factory(read_only=True) as uow:
        found = await uow.api_tokens.find_active(digest)
    if found is None:
        raise InvalidApiToken(_BAD_TOKEN)
    now = clock.now()
    if found.use_to_record(now):
        async with uow_factory() as uow:
            if await uow.api_tokens.touch(
                found.id, at=now, unless_used_after=last_use_outdated_at(now)
            ):
                await uow.commit()
    return found.merchant_id
