"""The newsletter reward's intake: the merchant's webhook URL (made on first use, rotated on
request), receiving what Ecomail posts to it, and the newsletter part of the integration page
(rules: ``domain.model.newsletter``).

Receiving stores the notification as it came, in one statement, and answers; nothing else
happens while Ecomail waits. The worker processes it later (``newsletter_processing``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ellity.domain.model.errors import Conflict, DomainError
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.integration import IntegrationNotReady
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    MalformedNotification,
    NotificationRecord,
    UnknownWebhook,
    decode_notification,
    generate_webhook_token,
    looks_like_token,
    webhook_digest,
    webhook_url,
)
from ellity.domain.services.common import load_merchant
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import UnitOfWorkFactory

ACTIVITY_SHOWN = 50


class WebhookUnreadable(Conflict):
    code = "webhook_unreadable"


# -- the webhook URL -----------------------------------------------------------------------


async def webhook_address(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    secret_box: SecretBox,
    rng: RandomSource,
    clock: Clock,
    base_url: str,
) -> str:
    """The merchant's webhook URL, made on first use. Needs an active integration (the URL
    belongs in the settings of the list it uses)."""
    async with uow_factory(read_only=True) as uow:
        await load_merchant(uow, merchant_id)
        if await uow.ecomail.active_list(merchant_id) is None:
            raise IntegrationNotReady(
                "Activate the Ecomail integration first: the webhook belongs to its list."
            )
        encrypted = await uow.newsletter.webhook_token(merchant_id)
    if encrypted is None:
        token = generate_webhook_token(rng.randbelow)
        async with uow_factory() as uow:
            stored = await uow.newsletter.set_webhook_token(
                merchant_id,
                digest=webhook_digest(token),
                encrypted=secret_box.encrypt(token),
                at=clock.now(),
                replace=False,
            )
            await uow.commit()
        if stored:
            return webhook_url(base_url, token)
        async with uow_factory(read_only=True) as uow:  # another request made it first
            encrypted = await uow.newsletter.webhook_token(merchant_id)
    if encrypted is None:
        raise RuntimeError("the webhook token vanished")  # tokens are only ever replaced
    try:
        return webhook_url(base_url, secret_box.decrypt(encrypted))
    except SecretUnreadable:
        raise WebhookUnreadable(
            "The webhook URL cannot be decrypted (was ELLITY_SECRET_KEY changed?): make a new"
            " one and paste it into the Ecomail list's settings."
        ) from None


async def rotate_webhook(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    secret_box: SecretBox,
    rng: RandomSource,
    clock: Clock,
    base_url: str,
) -> str:
    """A new webhook URL; the old one stops working at once (404)."""
    token = generate_webhook_token(rng.randbelow)
    async with uow_factory() as uow:
        await load_merchant(uow, merchant_id)
        if await uow.ecomail.active_list(merchant_id) is None:
            raise IntegrationNotReady("Activate the Ecomail integration first.")
        await uow.newsletter.set_webhook_token(
            merchant_id,
            digest=webhook_digest(token),
            encrypted=secret_box.encrypt(token),
            at=clock.now(),
            replace=True,
        )
        await uow.commit()
    return webhook_url(base_url, token)


# -- receiving -----------------------------------------------------------------------------


async def receive_notification(
    token: str, body: bytes, *, uow_factory: UnitOfWorkFactory, clock: Clock
) -> int:
    """Store what Ecomail posted to the webhook ``token``; returns its id.

    Raises ``UnknownWebhook`` for a token no merchant has (whatever the body), and
    ``MalformedNotification`` for a body that is not Ecomail's notification. A well-formed
    body costs one statement; only a malformed one looks the token up separately.
    """
    if not looks_like_token(token):
        raise UnknownWebhook()
    digest = webhook_digest(token)
    try:
        notification = decode_notification(body)
    except MalformedNotification:
        async with uow_factory(read_only=True) as uow:
            known = await uow.newsletter.webhook_merchant(digest) is not None
        if not known:
            raise UnknownWebhook() from None
        raise
    async with uow_factory() as uow:
        stored = await uow.newsletter.receive(digest, notification, at=clock.now())
        if stored is None:
            raise UnknownWebhook()
        await uow.commit()
    return stored


# -- the activity log ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewsletterPanel:
    """The newsletter part of the integration page."""

    url: str | None
    url_problem: DomainError | None  # why the URL cannot be shown
    reward: Points
    take_back: bool
    activity: list[NotificationRecord]


async def newsletter_panel(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    secret_box: SecretBox,
    rng: RandomSource,
    clock: Clock,
    base_url: str,
) -> NewsletterPanel:
    url: str | None = None
    problem: DomainError | None = None
    try:
        url = await webhook_address(
            merchant_id,
            uow_factory=uow_factory,
            secret_box=secret_box,
            rng=rng,
            clock=clock,
            base_url=base_url,
        )
    except (IntegrationNotReady, WebhookUnreadable) as error:
        problem = error
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        activity = await uow.views.recent_notifications(merchant_id, limit=ACTIVITY_SHOWN)
    return NewsletterPanel(
        url=url,
        url_problem=problem,
        reward=merchant.settings.newsletter_reward,
        take_back=merchant.settings.newsletter_take_back,
        activity=activity,
    )
