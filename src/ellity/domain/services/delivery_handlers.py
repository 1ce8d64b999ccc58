"""What each outbox topic delivers: Ellity's emails over the merchant's SMTP server and
events to the merchant's Ecomail account.

Each topic has one handler in ``HANDLERS``. A handler reads what it needs as it is now (the
recipient, the language and a PIN are never stored in the outbox), sends it, and raises
``NothingToSend`` (settled as skipped), ``TryLater`` (retried with backoff, given up after
``RetryPolicy.max_attempts``), ``GiveUp`` (failed at once; the merchant sees why and may
retry) or ``WaitFor`` (tried again later without counting an attempt: an Ecomail event
waits until its customer's contact fields have been written, so an automation that reads
them sees the new values, and waits for Ellity's request budget for the account, however
long: no request was sent, so nothing failed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ellity.domain.model.customer import Customer
from ellity.domain.model.integration import EVENT_ACTION, EVENT_CATEGORY
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.outbox import OutboxItem, Topic
from ellity.domain.model.system_email import (
    EmailTemplate,
    MalformedPayload,
    OutgoingEmail,
    PointsChanged,
    PointsExpiring,
    pin_reason,
)
from ellity.domain.services.ecomail_connection import KEY_REJECTED, KEY_UNREADABLE, connection
from ellity.ports.mailer import Mailer, MailerRejected, MailerUnavailable
from ellity.ports.marketing import (
    BeforeSend,
    BudgetExhausted,
    InvalidApiKey,
    MarketingPlatforms,
    MarketingRejected,
    MarketingUnavailable,
    TrackerEvent,
)
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import UnitOfWorkFactory


class NothingToSend(Exception):
    """The item no longer needs delivering (the reason is recorded)."""


class TryLater(Exception):
    """This attempt failed; another may succeed. The message is for the merchant."""


class GiveUp(Exception):
    """No attempt will succeed as things are. The message is for the merchant."""


class WaitFor(Exception):
    """Not yet: something this item must follow has not happened yet."""

    def __init__(self, message: str, *, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


@dataclass(frozen=True, slots=True)
class Courier:
    """What handlers deliver with. ``before_send``: what a handler awaits right before its
    call goes out (and only when it does), to record that the call begins."""

    uow_factory: UnitOfWorkFactory
    mailer: Mailer
    secret_box: SecretBox
    platforms: MarketingPlatforms | None = None
    before_send: BeforeSend | None = None


Handler = Callable[[Courier, OutboxItem], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Recipient:
    merchant: Merchant
    customer: Customer
    email: str
    password: str | None = field(repr=False)


async def _recipient(courier: Courier, item: OutboxItem) -> _Recipient:
    """The merchant's settings and the customer as they are now, in a short read."""
    async with courier.uow_factory(read_only=True) as uow:
        merchant = await uow.merchants.get(item.merchant_id)
        customer = (
            None
            if item.customer_id is None
            else await uow.customers.get(item.merchant_id, item.customer_id)
        )
        encrypted = await uow.merchants.smtp_password(item.merchant_id)
    if merchant is None or not merchant.settings.send_system_emails:
        raise NothingToSend("Sending emails from Ellity was switched off before delivery.")
    if customer is None or customer.email is None:
        raise NothingToSend("The customer has no email address any more.")
    if not merchant.smtp.is_configured:
        raise TryLater("SMTP is not set up: enter the SMTP server and the sender address.")
    try:
        password = None if encrypted is None else courier.secret_box.decrypt(encrypted)
    except SecretUnreadable:
        raise TryLater(
            "The stored SMTP password cannot be decrypted (was ELLITY_SECRET_KEY changed?);"
            " enter the password again."
        ) from None
    return _Recipient(merchant=merchant, customer=customer, email=customer.email, password=password)


def _email(
    item: OutboxItem, to: _Recipient, template: EmailTemplate, values: dict[str, str]
) -> OutgoingEmail:
    settings = to.merchant.settings
    return OutgoingEmail(
        to=to.email,
        sender_name=settings.name,
        template=template,
        locale=settings.locale,
        message_id=f"ellity.{item.id}.{int(item.created_at.timestamp())}",
        values={
            "programme": settings.name,
            "shop_url": settings.shop_url,
            "first_name": to.customer.first_name,
            **values,
        },
    )


async def _send(courier: Courier, to: _Recipient, email: OutgoingEmail) -> None:
    if courier.before_send is not None:
        await courier.before_send()
    try:
        await courier.mailer.send(email, server=to.merchant.smtp, password=to.password)
    except MailerUnavailable as exc:
        raise TryLater(str(exc)) from None
    except MailerRejected as exc:
        raise GiveUp(str(exc)) from None


async def _send_points_changed(courier: Courier, item: OutboxItem) -> None:
    facts = PointsChanged.from_payload(item.payload)
    to = await _recipient(courier, item)
    values = facts.email_values(to.merchant.settings.locale)
    await _send(courier, to, _email(item, to, EmailTemplate.POINTS_CHANGED, values))


async def _send_pin_issued(courier: Courier, item: OutboxItem) -> None:
    reason = pin_reason(item.payload)
    to = await _recipient(courier, item)
    if to.customer.pin is None:
        raise NothingToSend("The customer is registered now and has no PIN.")
    values = {"pin": to.customer.pin, "reason": reason.value}
    await _send(courier, to, _email(item, to, EmailTemplate.PIN_ISSUED, values))


async def _send_points_expiring(courier: Courier, item: OutboxItem) -> None:
    facts = PointsExpiring.from_payload(item.payload)
    to = await _recipient(courier, item)
    values = facts.email_values(to.merchant.settings.locale)
    await _send(courier, to, _email(item, to, EmailTemplate.POINTS_EXPIRING, values))


CONTACT_WAIT = 2.0  # seconds an event waits for its contact's fields before looking again


async def _send_ecomail_event(courier: Courier, item: OutboxItem) -> None:
    label, value = item.payload.get("label"), item.payload.get("value")
    if not isinstance(label, str) or not isinstance(value, dict) or item.customer_id is None:
        raise MalformedPayload("An Ecomail event needs a label, a value and a customer.")
    if courier.platforms is None:
        raise TryLater("This worker is not set up to reach Ecomail.")
    try:
        link = await connection(
            item.merchant_id,
            uow_factory=courier.uow_factory,
            platforms=courier.platforms,
            secret_box=courier.secret_box,
        )
    except SecretUnreadable:
        raise GiveUp(KEY_UNREADABLE) from None
    if link is None:
        raise NothingToSend("The Ecomail integration was deactivated before delivery.")
    async with courier.uow_factory(read_only=True) as uow:
        customer = await uow.customers.get(item.merchant_id, item.customer_id)
        waiting = await uow.contacts.is_pending(item.merchant_id, item.customer_id)
    if customer is None or customer.email is None:
        raise NothingToSend("The customer has no email address any more.")
    if waiting:
        raise WaitFor("Waiting for the contact's fields to reach Ecomail.", seconds=CONTACT_WAIT)
    event = TrackerEvent(
        email=customer.email, category=EVENT_CATEGORY, action=EVENT_ACTION, label=label, value=value
    )
    try:
        await link.platform.send_event(event, before_send=courier.before_send)
    except BudgetExhausted as exc:
        raise WaitFor(str(exc), seconds=exc.retry_after) from None
    except MarketingUnavailable as exc:
        raise TryLater(str(exc)) from None
    except InvalidApiKey:
        raise GiveUp(KEY_REJECTED) from None
    except MarketingRejected as exc:
        raise GiveUp(f"Ecomail refused the event: {exc}") from None


HANDLERS: Mapping[str, Handler] = {
    Topic.POINTS_CHANGED_EMAIL.value: _send_points_changed,
    Topic.PIN_ISSUED_EMAIL.value: _send_pin_issued,
    Topic.POINTS_EXPIRING_EMAIL.value: _send_points_expiring,
    Topic.ECOMAIL_EVENT.value: _send_ecomail_event,
}
