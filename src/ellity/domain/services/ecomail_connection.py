"""Reaching a merchant's Ecomail account: the active integration's list and a platform made
with its decrypted API key, and what the merchant is told when the key does not work."""

from __future__ import annotations

from dataclasses import dataclass

from ellity.domain.model.ids import MerchantId
from ellity.domain.model.reason import Reason
from ellity.ports.marketing import MarketingPlatform, MarketingPlatforms
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWorkFactory

KEY_REJECTED_REASON = Reason(
    "Ecomail refused the API key (it was changed or regenerated): enter the current key on"
    " the Ecomail integration page, then retry the failed contacts."
)
KEY_UNREADABLE_REASON = Reason(
    "The stored Ecomail API key cannot be decrypted (was ELLITY_SECRET_KEY changed?):"
    " enter the key again on the Ecomail integration page."
)
#: The same in English, as contacts' and deliveries' errors store it.
KEY_REJECTED = KEY_REJECTED_REASON.english()
KEY_UNREADABLE = KEY_UNREADABLE_REASON.english()


@dataclass(frozen=True, slots=True)
class Connection:
    """What a merchant's contacts are written with."""

    platform: MarketingPlatform
    list_id: str


async def connection(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    share: float | None = None,
) -> Connection | None:
    """The merchant's active integration ready to call; ``None`` when it is not active.
    ``share``: the platform uses at most this share of the key's request budget (background
    work). Raises ``SecretUnreadable`` when the stored key cannot be decrypted."""
    async with uow_factory(read_only=True) as uow:
        list_id = await uow.ecomail.active_list(merchant_id)
        encrypted = await uow.ecomail.api_key(merchant_id)
    if list_id is None or encrypted is None:
        return None
    key = secret_box.decrypt(encrypted)
    platform = platforms.for_key(key, account=f"merchant-{merchant_id}", share=share)
    return Connection(platform, list_id)
