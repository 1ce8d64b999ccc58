"""API tokens for the merchant's e-shop: shown once, kept only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.pin import RandomBelow
from ellity.domain.model.text import has_control_characters

TOKEN_PREFIX = "ell_"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
TOKEN_RANDOM_CHARS = 40  # about 238 bits
MAX_TOKEN_NAME = 100
MAX_TOKEN_LENGTH = 200
#: A token's last use is recorded at most this often: an e-shop calling the API many times a
#: minute would otherwise write (and on SQLite take the one writer's lock) on every call.
LAST_USE_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    merchant_id: MerchantId
    name: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def use_to_record(self, now: datetime) -> bool:
        """Whether a use at ``now`` is to be recorded: never used, or last used a minute or
        more before."""
        return self.last_used_at is None or self.last_used_at <= last_use_outdated_at(now)


def last_use_outdated_at(now: datetime) -> datetime:
    """A recorded last use at or before this is replaced by a use at ``now``."""
    return now - LAST_USE_PRECISION


def generate_token(randbelow: RandomBelow) -> str:
    return TOKEN_PREFIX + "".join(
        _ALPHABET[randbelow(len(_ALPHABET))] for _ in range(TOKEN_RANDOM_CHARS)
    )


def token_digest(token: str) -> str:
    """What is stored and looked up: the token's SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def clean_token_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_TOKEN_NAME:
        raise InvalidInput("A token's name must have 1 to %(max)s characters.", max=MAX_TOKEN_NAME)
    if has_control_characters(name):
        raise InvalidInput("A token's name must not contain control characters.")
    return name
