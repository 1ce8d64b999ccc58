"""The newsletter reward: the merchant's webhook URL, receiving Ecomail's notifications, and
the worker's processing of them (rules: ``domain.model.newsletter``).

Receiving stores the notification as it came, in one statement, and answers; nothing else
happens while Ecomail waits. The worker then processes each notification once:

1. *screen* it with what Ellity knows: the integration must be active with the notification's
   list, a customer must have the email, and the settings and the customer's reward hold
   must leave something to do. Otherwise it is recorded as ignored, with why.
2. *confirm* it with Ecomail (outside any transaction): a subscription is paid only while
   Ecomail says the contact is subscribed to that list now, an unsubscription deducted only
   while it says unsubscribed. Anything else is recorded as unconfirmed and changes nothing,
   except a double opt-in sign-up not confirmed yet: it waits, and Ecomail is asked again.
   Ecomail unavailable (or the key refused) → the notification waits and is tried again.
3. *apply* it in one transaction with the customer's row locked: the hold is read again, the
   reward or deduction is a ledger entry with its contact re-sync and ``credit`` event
   (``notifications.points_changed``), and the notification is settled only if this worker's
   claim still holds it (otherwise everything rolls back and the new holder decides).

A subscription whose customer's contact is still on its way to Ecomail waits until it is
written: Ellity's own add is what makes Ecomail post the echo, and the sync records when it
added the contact only once the add call has returned.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.customer import Customer, email_key
from ellity.domain.model.errors import Conflict
from ellity.domain.model.integration import IntegrationNotReady
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    DOI_PATIENCE,
    ECHO,
    ClaimedNotification,
    MalformedNotification,
    NotificationRecord,
    Outcome,
    RewardHold,
    SubscriptionChange,
    UnknownWebhook,
    Verdict,
    decode_notification,
    double_optin_wait,
    generate_webhook_token,
    is_echo,
    looks_like_token,
    reward_subscription,
    screen,
    take_back_reward,
    webhook_digest,
    webhook_url,
)
from ellity.domain.model.outbox import RetryPolicy, clip_error
from ellity.domain.services import notifications
from ellity.domain.services.common import load_merchant, stored_id
from ellity.domain.services.ecomail_connection import KEY_REJECTED, KEY_UNREADABLE, connection
from ellity.domain.services.work_loop import Claimable, OneAtATime, Pace, lease_for, work_through
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.marketing import (
    InvalidApiKey,
    ListNotFound,
    MarketingPlatforms,
    MarketingRejected,
    MarketingUnavailable,
    Membership,
    SubscriptionStatus,
)
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

logger = logging.getLogger(__name__)

ACTIVITY_SHOWN = 50
BATCH_SIZE = 20
PROCESS_TIMEOUT = 30.0  # seconds for one notification: reads, Ecomail's answer, the write
CONTACT_WAIT = timedelta(seconds=3)
#: Ecomail unavailable or the key refused: 30 s, 1, 2 ... at most 30 minutes apart, for ever.
RETRY = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=30))


class WebhookUnreadable(Conflict):
    code = "webhook_unreadable"


# -- the webhook URL -----------------------------------------------------------------------


async def webhook_address(
    merchant_id: int,
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
    merchant_id: int,
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
    url_problem: str  # why the URL cannot be shown
    reward: Points
    take_back: bool
    activity: list[NotificationRecord]


async def newsletter_panel(
    merchant_id: int,
    *,
    uow_factory: UnitOfWorkFactory,
    secret_box: SecretBox,
    rng: RandomSource,
    clock: Clock,
    base_url: str,
) -> NewsletterPanel:
    url, problem = None, ""
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
        problem = error.message
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        activity = await uow.newsletter.recent(merchant_id, limit=ACTIVITY_SHOWN)
    return NewsletterPanel(
        url=url,
        url_problem=problem,
        reward=merchant.settings.newsletter_reward,
        take_back=merchant.settings.newsletter_take_back,
        activity=activity,
    )


# -- processing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Wait:
    """Not decided now: try again after ``wait``."""

    wait: timedelta
    reason: str
    counts: bool  # an attempt that failed (Ecomail), not a wait for something to happen


async def process_notifications(
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    clock: Clock,
    worker_token: str,
    limit: int = 200,
    batch_size: int = BATCH_SIZE,
    seconds_each: float = PROCESS_TIMEOUT,
) -> int:
    """Process up to ``limit`` due notifications, a claimed batch at a time; returns how many
    were settled (paid, deducted, ignored or unconfirmed)."""
    worker = _Worker(uow_factory, platforms, secret_box, clock)
    pace = Pace(batch_size, lease_for(seconds_each, batch_size), limit=limit)
    queue = OneAtATime("n", _notifications, _Processing(worker), seconds_each)
    return await work_through(
        queue,
        uow_factory=uow_factory,
        clock=clock,
        worker_token=worker_token,
        pace=pace,
    )


def _notifications(uow: UnitOfWork) -> Claimable[ClaimedNotification]:
    return uow.newsletter


@dataclass(frozen=True, slots=True)
class _Processing:
    """Processing a notification; a wait is recorded here, the rest as it is decided."""

    worker: _Worker

    async def attempt(self, item: ClaimedNotification, token: str) -> bool | _Wait:
        return await self.worker.handle(item, token)

    def timed_out(self, item: ClaimedNotification, seconds: float) -> bool | _Wait:
        return _Wait(
            RETRY.delay(item.attempts, item_id=item.id),
            f"Processing took longer than {seconds:g} seconds; it is tried again.",
            True,
        )

    def broke(self, item: ClaimedNotification, error: Exception) -> bool | _Wait:
        logger.exception("newsletter notification %s failed unexpectedly", item.id)
        return _Wait(
            RETRY.delay(item.attempts, item_id=item.id),
            f"Unexpected error in Ellity ({type(error).__name__}); it is tried again.",
            True,
        )

    async def settle(self, item: ClaimedNotification, token: str, outcome: bool | _Wait) -> bool:
        if isinstance(outcome, _Wait):
            await self.worker.defer(item, token, outcome)
            return False
        return outcome


async def forget_processed(*, uow_factory: UnitOfWorkFactory, clock: Clock, keep: timedelta) -> int:
    """Delete notifications processed longer than ``keep`` ago."""
    async with uow_factory() as uow:
        count = await uow.newsletter.purge_processed(before=clock.now() - keep)
        await uow.commit()
    return count


@dataclass(frozen=True, slots=True)
class _Known:
    """What Ellity knows about a notification before asking Ecomail."""

    merchant: Merchant
    customer: Customer | None
    verdict: Verdict | None  # decided already
    contact_pending: bool


def _ignored(reason: str) -> Verdict:
    return Verdict(Outcome.IGNORED, reason)


def _unconfirmed(reason: str) -> Verdict:
    return Verdict(Outcome.UNCONFIRMED, reason)


_STATUS_TEXT = {
    SubscriptionStatus.SUBSCRIBED: "subscribed",
    SubscriptionStatus.UNSUBSCRIBED: "unsubscribed",
    SubscriptionStatus.SOFT_BOUNCED: "soft-bounced",
    SubscriptionStatus.HARD_BOUNCED: "hard-bounced",
    SubscriptionStatus.COMPLAINED: "marked as spam",
    SubscriptionStatus.UNCONFIRMED: "unconfirmed (double opt-in not confirmed yet)",
}


def confirmation_problem(change: SubscriptionChange, membership: Membership | None) -> str | None:
    """Why Ecomail's answer does not confirm the change; ``None`` when it does."""
    if membership is None:
        return "Ecomail has no such contact in the list: nothing changed."
    wanted = (
        SubscriptionStatus.SUBSCRIBED
        if change is SubscriptionChange.SUBSCRIBED
        else SubscriptionStatus.UNSUBSCRIBED
    )
    if membership.status is wanted:
        return None
    return (
        f"Ecomail says the contact is {_STATUS_TEXT[membership.status]} in the list now,"
        f" not {_STATUS_TEXT[wanted]}: nothing changed."
    )


DOI_WAITING = (
    "Ecomail says the sign-up is not confirmed yet (double opt-in): Ellity asks again until"
    f" the person confirms it, for up to {DOI_PATIENCE.days} days."
)
DOI_EXPIRED = (
    f"The sign-up was not confirmed within {DOI_PATIENCE.days} days (double opt-in):"
    " nothing changed."
)


class _Worker:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        platforms: MarketingPlatforms,
        secret_box: SecretBox,
        clock: Clock,
    ) -> None:
        self.uow_factory = uow_factory
        self.platforms = platforms
        self.secret_box = secret_box
        self.clock = clock

    async def handle(self, item: ClaimedNotification, token: str) -> bool | _Wait:
        """Settle the notification (True; False when the claim was lost) or say how long it
        waits."""
        known = await self._screen(item)
        if known.verdict is not None:
            return await self._settle(item, token, known.verdict, known.customer)
        if known.contact_pending:
            return _Wait(
                CONTACT_WAIT, "Waiting for the customer's contact to reach Ecomail.", False
            )
        confirmed = await self._confirm(item)
        if isinstance(confirmed, _Wait):
            return confirmed
        if isinstance(confirmed, Verdict):
            return await self._settle(item, token, confirmed, known.customer)
        if known.customer is None:
            raise RuntimeError("screening lets only notifications about a customer through")
        return await self._apply(item, token, known.customer, confirmed)

    async def _screen(self, item: ClaimedNotification) -> _Known:
        n, merchant_id = item.notification, item.merchant_id
        async with self.uow_factory(read_only=True) as uow:
            merchant = await load_merchant(uow, merchant_id)
            list_id = await uow.ecomail.active_list(merchant_id)
            customer = await uow.customers.find_by_email(merchant_id, n.email)
            if list_id is None:
                verdict: Verdict | None = _ignored("The Ecomail integration is not active.")
            elif n.list_id != list_id:
                verdict = _ignored(
                    f"The notification is about another list (id {n.list_id}); the integration"
                    f" uses the list {list_id}."
                )
            elif customer is None:
                verdict = _ignored("No customer has this email.")
            else:
                verdict = None
            pending = False
            if verdict is None and customer is not None:
                customer_id = stored_id(customer.id)
                hold = await uow.newsletter.reward_hold(merchant_id, customer_id)
                verdict = _screen_settings(n.change, merchant.settings, hold)
                if verdict is None and n.change is SubscriptionChange.SUBSCRIBED:
                    added_at = await uow.contacts.added_at(merchant_id, customer_id)
                    if is_echo(added_at, item.received_at):  # no need to ask Ecomail
                        verdict = _ignored(ECHO)
                    else:
                        pending = await uow.contacts.is_pending(merchant_id, customer_id)
        return _Known(merchant, customer, verdict, pending)

    async def _confirm(self, item: ClaimedNotification) -> Membership | Verdict | _Wait | None:
        """Ecomail's membership of the contact in the list, or the verdict or wait its
        failure means."""
        n = item.notification
        retry = RETRY.delay(item.attempts, item_id=item.id)
        try:
            link = await connection(
                item.merchant_id,
                uow_factory=self.uow_factory,
                platforms=self.platforms,
                secret_box=self.secret_box,
            )
        except SecretUnreadable:
            return _Wait(retry, KEY_UNREADABLE, True)
        if link is None:
            return _ignored("The Ecomail integration is not active.")
        try:
            membership = await link.platform.membership(n.list_id, n.email)
        except MarketingUnavailable as exc:
            wait = max(retry, timedelta(seconds=exc.retry_after or 0))
            return _Wait(wait, f"Ecomail could not confirm it yet: {exc}", True)
        except InvalidApiKey:
            return _Wait(retry, KEY_REJECTED, True)
        except ListNotFound:
            return _unconfirmed("The list no longer exists in Ecomail: nothing changed.")
        except MarketingRejected as exc:
            return _unconfirmed(f"Ecomail refused to confirm it ({exc}): nothing changed.")
        problem = confirmation_problem(n.change, membership)
        if problem is None:
            return membership
        if (
            n.change is SubscriptionChange.SUBSCRIBED
            and membership is not None
            and membership.status is SubscriptionStatus.UNCONFIRMED
        ):
            again = double_optin_wait(item.received_at, self.clock.now())
            return _unconfirmed(DOI_EXPIRED) if again is None else _Wait(again, DOI_WAITING, False)
        return _unconfirmed(problem)

    async def _apply(
        self,
        item: ClaimedNotification,
        token: str,
        found: Customer,
        membership: Membership | None,
    ) -> bool:
        n, merchant_id = item.notification, item.merchant_id
        customer_id = stored_id(found.id)
        async with self.uow_factory() as uow:
            merchant = await load_merchant(uow, merchant_id)
            customer = await uow.customers.get(merchant_id, customer_id, for_update=True)
            now = self.clock.now()
            if await uow.ecomail.active_list(merchant_id) != n.list_id:
                verdict = _ignored("The Ecomail integration changed while this was confirmed.")
            elif customer is None or email_key(customer.email) != email_key(n.email):
                verdict = _ignored("The customer's email changed while this was confirmed.")
            else:
                verdict = await _apply_change(
                    uow,
                    merchant=merchant,
                    customer=customer,
                    item=item,
                    membership=membership,
                    now=now,
                )
            held = await uow.newsletter.settle(
                item.id,
                token=token,
                outcome=verdict.outcome,
                reason=verdict.reason,
                points=verdict.points,
                customer_id=customer_id,
                at=now,
            )
            if not held:
                return False  # taken over: roll back; the new holder decides
            await uow.commit()
        _log(item, verdict)
        return True

    async def _settle(
        self, item: ClaimedNotification, token: str, verdict: Verdict, customer: Customer | None
    ) -> bool:
        async with self.uow_factory() as uow:
            held = await uow.newsletter.settle(
                item.id,
                token=token,
                outcome=verdict.outcome,
                reason=verdict.reason,
                points=None,
                customer_id=None if customer is None else customer.id,
                at=self.clock.now(),
            )
            await uow.commit()
        if held:
            _log(item, verdict)
        return held

    async def defer(self, item: ClaimedNotification, token: str, wait: _Wait) -> None:
        async with self.uow_factory() as uow:
            await uow.newsletter.defer(
                item.id,
                token=token,
                until=self.clock.now() + wait.wait,
                reason=clip_error(wait.reason),
                count_attempt=wait.counts,
            )
            await uow.commit()
        if wait.counts:
            logger.warning(
                "newsletter notification %s (merchant %s) waits %.0f s: %s",
                item.id,
                item.merchant_id,
                wait.wait.total_seconds(),
                wait.reason,
            )


def _screen_settings(
    change: SubscriptionChange, settings: MerchantSettings, hold: RewardHold
) -> Verdict | None:
    return screen(
        change,
        reward=settings.newsletter_reward,
        take_back=settings.newsletter_take_back,
        hold=hold,
    )


async def _apply_change(
    uow: UnitOfWork,
    *,
    merchant: Merchant,
    customer: Customer,
    item: ClaimedNotification,
    membership: Membership | None,
    now: datetime,
) -> Verdict:
    """The reward or deduction, under the customer's lock (the hold is read again here)."""
    merchant_id, customer_id = stored_id(merchant.id), stored_id(customer.id)
    settings = merchant.settings
    hold = await uow.newsletter.reward_hold(merchant_id, customer_id)
    before = dataclasses.replace(hold)
    ledger = await uow.ledgers.get(merchant_id, customer_id, settings.expiry_policy)
    if item.notification.change is SubscriptionChange.SUBSCRIBED:
        verdict = reward_subscription(
            hold,
            ledger,
            reward=settings.newsletter_reward,
            added_at=await uow.contacts.added_at(merchant_id, customer_id),
            subscribed_at=None if membership is None else membership.subscribed_at,
            received_at=item.received_at,
            at=now,
        )
    else:
        verdict = take_back_reward(hold, ledger, take_back=settings.newsletter_take_back, at=now)
    if verdict.entry is not None:
        entries = list(ledger.new_entries)  # an expiry the change recorded first, then it
        await uow.ledgers.save(merchant_id, ledger, at=now)
        await notifications.points_changed(uow, merchant, customer, ledger, entries)
    if hold != before:
        await uow.newsletter.save_reward_hold(merchant_id, customer_id, hold, at=now)
    return verdict


def _log(item: ClaimedNotification, verdict: Verdict) -> None:
    """Ids and outcomes only: never the email."""
    logger.info(
        "newsletter notification %s (merchant %s, %s): %s",
        item.id,
        item.merchant_id,
        item.notification.change.value,
        verdict.outcome.value,
    )
