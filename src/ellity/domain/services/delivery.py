"""Delivering the outbox: what the worker does with the items the use cases recorded.

A run claims a small batch in one short transaction, delivers each item outside any
transaction, and records each outcome in its own short transaction, so no database lock is
held while an SMTP server (or later Ecomail) takes its time. Each delivery is bounded by
``delivery_timeout`` and the claim's lease covers the whole batch, so a live worker never
outlives its claim; a worker that dies leaves claims that run out and are taken over.

Delivery is at-least-once: a worker killed after the SMTP server accepted an email and before
the outcome was recorded leaves the item to be sent again. The email's ``Message-ID`` is the
same both times, so mail clients can recognise the repeat.

Each topic has one handler in ``HANDLERS``. A handler raises ``NothingToSend`` (settled as
skipped), ``TryLater`` (retried with backoff, given up after ``RetryPolicy.max_attempts``),
``GiveUp`` (failed at once; the merchant sees why and may retry) or ``WaitFor`` (tried again
shortly without counting an attempt: an Ecomail event waits until its customer's contact
fields have been written, so an automation that reads them sees the new values).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from ellity.domain.model.customer import Customer
from ellity.domain.model.integration import EVENT_ACTION, EVENT_CATEGORY
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.outbox import OutboxItem, RetryPolicy, Topic, clip_error
from ellity.domain.model.system_email import (
    EmailTemplate,
    MalformedPayload,
    OutgoingEmail,
    PointsChanged,
    PointsExpiring,
    pin_reason,
)
from ellity.domain.services.ecomail_connection import KEY_REJECTED, KEY_UNREADABLE, connection
from ellity.domain.services.work_loop import Handled, Pace, handle_each, lease_for, work_through
from ellity.ports.clock import Clock
from ellity.ports.mailer import Mailer, MailerRejected, MailerUnavailable
from ellity.ports.marketing import (
    InvalidApiKey,
    MarketingPlatforms,
    MarketingRejected,
    MarketingUnavailable,
    TrackerEvent,
)
from ellity.ports.queue import JobQueue
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

logger = logging.getLogger(__name__)

BATCH_SIZE = 10
DELIVERY_TIMEOUT = 30.0  # seconds for one item: reading what to send and sending it
RETRY_POLICY = RetryPolicy()


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
    """What handlers deliver with."""

    uow_factory: UnitOfWorkFactory
    mailer: Mailer
    secret_box: SecretBox
    platforms: MarketingPlatforms | None = None


Handler = Callable[[Courier, OutboxItem], Awaitable[None]]


async def deliver_pending(
    *,
    uow_factory: UnitOfWorkFactory,
    mailer: Mailer,
    secret_box: SecretBox,
    clock: Clock,
    worker_token: str,
    limit: int,
    platforms: MarketingPlatforms | None = None,
    batch_size: int = BATCH_SIZE,
    delivery_timeout: float = DELIVERY_TIMEOUT,
    policy: RetryPolicy = RETRY_POLICY,
) -> int:
    """Deliver up to ``limit`` due items, a batch at a time; returns how many were delivered.

    ``worker_token`` must be unique per worker process; each claim adds a counter to it.
    Items that fail are rescheduled by ``policy``, so a run ends when nothing is due.
    """
    outbox = _Outbox(
        Courier(uow_factory=uow_factory, mailer=mailer, secret_box=secret_box, platforms=platforms),
        clock=clock,
        policy=policy,
        seconds=delivery_timeout,
    )
    pace = Pace(batch_size, lease_for(delivery_timeout, batch_size), limit=limit)
    return await work_through(
        outbox, uow_factory=uow_factory, clock=clock, worker_token=worker_token, pace=pace
    )


async def next_due(*, uow_factory: UnitOfWorkFactory) -> datetime | None:
    """When the next pending outbox item, Ecomail contact or newsletter notification becomes
    due (a retry, or a claim that runs out)."""
    async with uow_factory(read_only=True) as uow:
        dues = [
            await uow.outbox.next_due(),
            await uow.contacts.next_due(),
            await uow.newsletter.next_due(),
        ]
    return min((due for due in dues if due is not None), default=None)


async def schedule_next_delivery(
    *, uow_factory: UnitOfWorkFactory, queue: JobQueue, clock: Clock
) -> datetime | None:
    """Ask for a run when the earliest pending work becomes due (``next_due``), so it does not
    wait for the minute cron. At least a second from now, so a run never collapses into the
    one that asks for it. Returns the time asked for."""
    due = await next_due(uow_factory=uow_factory)
    if due is None:
        return None
    at = max(due, clock.now() + timedelta(seconds=1))
    await queue.nudge_delivery(at=at)
    return at


async def forget_settled(*, uow_factory: UnitOfWorkFactory, clock: Clock, keep: timedelta) -> int:
    """Delete delivered and skipped items older than ``keep``; failed ones stay."""
    async with uow_factory() as uow:
        count = await uow.outbox.purge_settled(before=clock.now() - keep)
        await uow.commit()
    return count


# -- handlers -----------------------------------------------------------------------------


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
        await link.platform.send_event(event)
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


# -- one attempt and its outcome ----------------------------------------------------------


class _Kind(Enum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    RETRY = "retry"
    GIVE_UP = "give up"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: _Kind
    message: str = ""
    wait: float = 0.0


@dataclass(frozen=True, slots=True)
class _Outbox:
    """The outbox as the work loop goes through it: an item at a time, each bounded by
    ``seconds``."""

    courier: Courier
    clock: Clock
    policy: RetryPolicy
    seconds: float
    tag: str = ""

    async def claim(
        self, uow: UnitOfWork, token: str, *, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[OutboxItem]:
        return await uow.outbox.claim(token=token, now=now, lease=lease, limit=limit)

    async def handle(self, token: str, claimed: Sequence[OutboxItem]) -> Handled:
        return await handle_each(self, token, claimed, seconds=self.seconds)

    async def attempt(self, item: OutboxItem, token: str) -> _Outcome:
        if item.attempts > self.policy.max_attempts:  # the earlier claims all died unfinished
            return _Outcome(_Kind.GIVE_UP, f"Delivery was interrupted {item.attempts - 1} times.")
        handler = HANDLERS.get(item.topic)
        if handler is None:  # recorded by a newer version than this worker: wait for an upgrade
            return _Outcome(_Kind.RETRY, f"This worker cannot deliver '{item.topic}' items.")
        try:
            await handler(self.courier, item)
        except NothingToSend as exc:
            return _Outcome(_Kind.SKIPPED, str(exc))
        except WaitFor as exc:
            return _Outcome(_Kind.WAIT, str(exc), wait=exc.seconds)
        except TryLater as exc:
            return _Outcome(_Kind.RETRY, str(exc))
        except (GiveUp, MalformedPayload) as exc:
            return _Outcome(_Kind.GIVE_UP, str(exc))
        return _Outcome(_Kind.DELIVERED)

    def timed_out(self, item: OutboxItem, seconds: float) -> _Outcome:
        return _Outcome(_Kind.RETRY, f"Delivery took longer than {seconds:g} seconds.")

    def broke(self, item: OutboxItem, error: Exception) -> _Outcome:
        logger.exception("outbox item %s (%s) failed unexpectedly", item.id, item.topic)
        return _Outcome(_Kind.RETRY, f"Unexpected error in Ellity ({type(error).__name__}).")

    async def settle(self, item: OutboxItem, token: str, outcome: _Outcome) -> bool:
        held = await _record(
            self.courier.uow_factory, item, token, outcome, clock=self.clock, policy=self.policy
        )
        return held and outcome.kind is _Kind.DELIVERED


async def _record(
    uow_factory: UnitOfWorkFactory,
    item: OutboxItem,
    token: str,
    outcome: _Outcome,
    *,
    clock: Clock,
    policy: RetryPolicy,
) -> bool:
    """Record the outcome if our claim still holds the item; False when it was taken over."""
    message = clip_error(outcome.message)
    retry_at = None
    async with uow_factory() as uow:
        now = clock.now()
        if outcome.kind is _Kind.DELIVERED:
            held = await uow.outbox.mark_delivered(item.id, token=token, at=now)
        elif outcome.kind is _Kind.SKIPPED:
            held = await uow.outbox.mark_skipped(item.id, token=token, reason=message, at=now)
        elif outcome.kind is _Kind.WAIT:
            until = now + timedelta(seconds=outcome.wait)
            held = await uow.outbox.defer(item.id, token=token, until=until)
        else:
            if outcome.kind is _Kind.RETRY:
                retry_at = policy.next_attempt_at(item.attempts, item_id=item.id, now=now)
            held = await uow.outbox.mark_failed(
                item.id, token=token, error=message, retry_at=retry_at, at=now
            )
        await uow.commit()
    _log(item, outcome, retry_at, held=held)
    return held


def _log(item: OutboxItem, outcome: _Outcome, retry_at: datetime | None, *, held: bool) -> None:
    """Ids, topics and merchant-readable errors only: never a payload or an email's values."""
    what = f"outbox item {item.id} ({item.topic}, merchant {item.merchant_id})"
    if not held:
        logger.warning("%s: the claim was taken over before the outcome was recorded", what)
    elif outcome.kind is _Kind.DELIVERED:
        logger.info("%s delivered", what)
    elif outcome.kind is _Kind.SKIPPED:
        logger.info("%s skipped: %s", what, outcome.message)
    elif outcome.kind is _Kind.WAIT:
        logger.debug("%s waits: %s", what, outcome.message)
    elif retry_at is not None:
        logger.warning(
            "%s attempt %d failed, retry at %s: %s",
            what,
            item.attempts,
            retry_at.isoformat(timespec="seconds"),
            outcome.message,
        )
    else:
        logger.error("%s given up after %d attempts: %s", what, item.attempts, outcome.message)
