"""The newsletter reward's processing: what the worker does with the notifications Ecomail
posted (rules: ``domain.model.newsletter``). Each notification is processed once:

1. *screen* it with what Ellity knows: the integration must be active with the notification's
   list, and an unsubscription needs a customer with the email. A notification that could
   change nothing is recorded as ignored, with why: a subscription of a customer whose consent
   is granted already while the settings or the reward hold leave nothing to pay, an
   unsubscription of one whose consent is refused already with nothing to take back.
2. *confirm* it with Ecomail (``newsletter_confirmation``): only what Ecomail confirms now
   changes anything; otherwise it is recorded as unconfirmed, or it waits and is tried again.
3. *apply* it in one transaction with the customer's row locked. A confirmed subscription is
   first told apart from Ellity's echo of its own add (``echo_of``): the echo is taken and
   changes nothing else, a replay of it changes nothing. The customer's own subscription
   records their consent as granted (source ``ecomail``), marks the contact a member so its
   fields are written at once, and pays the reward by the rules; a confirmed unsubscription
   records consent refused and takes the reward back by the rules. Points move by a ledger
   entry with its contact re-sync and ``credit`` event (``notifications.points_changed``),
   and the notification is settled only if this worker's claim still holds it (otherwise
   everything rolls back and the new holder decides).

A confirmed subscription for an email no customer has is kept (``keep_signup``): a customer
created with that email within ``SIGNUP_KEEP`` gets it as a new notification
(``newsletter_signups``), processed like any other.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.consent import ConsentSource, MarketingConsent
from ellity.domain.model.customer import Customer, email_key
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.ledger import Ledger
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.newsletter import (
    ECHO_SKEW,
    SIGNUP_KEEP,
    ClaimedNotification,
    EchoKind,
    EchoVerdict,
    RewardHold,
    SubscriptionChange,
    Verdict,
    echo_of,
    own_subscription_reason,
    reward_subscription,
    screen,
)
from ellity.domain.model.outbox import RetryPolicy
from ellity.domain.model.reason import Reason
from ellity.domain.services.common import customer_id_of, load_merchant, merchant_id_of
from ellity.domain.services.consent import apply_reward_rule, apply_take_back, record_consent
from ellity.domain.services.ecomail_connection import Connection, connection
from ellity.domain.services.newsletter_confirmation import (
    NOT_ACTIVE,
    Connect,
    Wait,
    confirm,
    ignored,
)
from ellity.domain.services.work_loop import (
    CLAIM_LEASE,
    RUNNING,
    Claimable,
    OneAtATime,
    Pace,
    Stopping,
    work_through,
)
from ellity.ports.clock import Clock
from ellity.ports.marketing import MarketingPlatforms, Membership
from ellity.ports.operations import DELIVERED, DELIVERIES, RETRIED, WorkCounters
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

logger = logging.getLogger(__name__)

NOTIFICATIONS = "newsletter_notifications"  # the kind counted in ``DELIVERIES``
BATCH_SIZE = 20
PROCESS_TIMEOUT = 30.0  # seconds for one notification: reads, Ecomail's answer, the write
#: Ecomail unavailable or the key refused: 30 s, 1, 2 ... at most 30 minutes apart, for ever.
RETRY = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=30))

SIGNUP_KEPT = Reason(
    "No customer has this email yet: the sign-up is kept, and paid if a customer with this"
    " email is created within %(days)s days.",
    days=SIGNUP_KEEP.days,
)
CUSTOMER_APPEARED = Reason("A customer with this email was just created: it is processed again.")
INTEGRATION_CHANGED = Reason("The Ecomail integration changed while this was confirmed.")


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
    counters: WorkCounters | None = None,
    stopping: Stopping = RUNNING,
) -> int:
    """Process up to ``limit`` due notifications, a claimed batch at a time; returns how many
    were settled (paid, deducted, ignored or unconfirmed). ``counters`` count the settled
    ones and the failed attempts (``DELIVERIES``, kind ``NOTIFICATIONS``)."""

    async def connect(merchant_id: MerchantId) -> Connection | None:
        return await connection(
            merchant_id, uow_factory=uow_factory, platforms=platforms, secret_box=secret_box
        )

    processing = _Processing(uow_factory, clock, connect, counters)
    queue = OneAtATime("n", _notifications, processing, seconds_each)
    pace = Pace(batch_size, CLAIM_LEASE, limit=limit)
    return await work_through(
        queue,
        uow_factory=uow_factory,
        clock=clock,
        worker_token=worker_token,
        pace=pace,
        stopping=stopping,
    )


async def forget_processed(*, uow_factory: UnitOfWorkFactory, clock: Clock, keep: timedelta) -> int:
    """Delete notifications processed longer than ``keep`` ago, and the sign-ups kept for
    emails no customer had that are older than ``SIGNUP_KEEP`` (no customer can take them)."""
    async with uow_factory() as uow:
        now = clock.now()
        count = await uow.newsletter.purge_processed(before=now - keep)
        count += await uow.newsletter.purge_signups(before=now - SIGNUP_KEEP)
        await uow.commit()
    return count


def _notifications(uow: UnitOfWork) -> Claimable[ClaimedNotification]:
    return uow.newsletter


@dataclass(frozen=True, slots=True)
class _Processing:
    """One notification at a time: screened, confirmed, applied. Each step that decides
    settles it; a wait is recorded when the attempt ends."""

    uow_factory: UnitOfWorkFactory
    clock: Clock
    connect: Connect
    counters: WorkCounters | None = None

    async def attempt(self, item: ClaimedNotification, token: str) -> bool | Wait:
        """Settle the notification (True; False when the claim was lost) or say how long it
        waits."""
        known = await _screen(self.uow_factory, item)
        if known.verdict is not None:
            return await _settle(
                self.uow_factory, self.clock, item, token, known.verdict, customer=known.customer
            )
        retry = RETRY.delay(item.attempts, item_id=item.id)
        confirmed = await confirm(item, connect=self.connect, clock=self.clock, retry=retry)
        if isinstance(confirmed, Wait):
            return confirmed
        if isinstance(confirmed, Verdict):
            return await _settle(
                self.uow_factory, self.clock, item, token, confirmed, customer=known.customer
            )
        if known.customer is None:
            return await _keep_signup(self.uow_factory, self.clock, item, token)
        return await _apply(
            self.uow_factory, self.clock, item, token, found=known.customer, membership=confirmed
        )

    def timed_out(self, item: ClaimedNotification, seconds: float) -> bool | Wait:
        return Wait(
            RETRY.delay(item.attempts, item_id=item.id),
            Reason(
                "Processing took longer than %(seconds)s seconds; it is tried again.",
                seconds=float(seconds),
            ),
            True,
        )

    def broke(self, item: ClaimedNotification, error: Exception) -> bool | Wait:
        logger.exception("newsletter notification %s failed unexpectedly", item.id)
        return Wait(
            RETRY.delay(item.attempts, item_id=item.id),
            Reason(
                "Unexpected error in Ellity (%(error)s); it is tried again.",
                error=type(error).__name__,
            ),
            True,
        )

    async def settle(self, item: ClaimedNotification, token: str, outcome: bool | Wait) -> bool:
        if isinstance(outcome, Wait):
            await _defer(self.uow_factory, self.clock, item, token, outcome)
            if outcome.counts and self.counters is not None:
                self.counters.add(DELIVERIES, kind=NOTIFICATIONS, outcome=RETRIED)
            return False
        if outcome and self.counters is not None:
            self.counters.add(DELIVERIES, kind=NOTIFICATIONS, outcome=DELIVERED)
        return outcome


@dataclass(frozen=True, slots=True)
class _Known:
    """What Ellity knows about a notification before asking Ecomail."""

    merchant: Merchant
    customer: Customer | None
    verdict: Verdict | None  # decided already


async def _screen(uow_factory: UnitOfWorkFactory, item: ClaimedNotification) -> _Known:
    """What Ellity's own records decide, in one short read."""
    n, merchant_id = item.notification, item.merchant_id
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        list_id = await uow.ecomail.active_list(merchant_id)
        customer = await uow.customers.find_by_email(merchant_id, n.email)
        if list_id is None:
            verdict: Verdict | None = ignored(NOT_ACTIVE)
        elif n.list_id != list_id:
            verdict = ignored(
                Reason(
                    "The notification is about another list (id %(other)s); the integration"
                    " uses the list %(list)s.",
                    other=n.list_id,
                    list=list_id,
                )
            )
        elif customer is None:
            # a sign-up before the customer exists is kept once Ecomail confirms it
            subscribed = n.change is SubscriptionChange.SUBSCRIBED
            verdict = None if subscribed else ignored(Reason("No customer has this email."))
        else:
            hold = await uow.newsletter.reward_hold(merchant_id, customer_id_of(customer))
            verdict = _changes_nothing(n.change, merchant, customer, hold)
    return _Known(merchant, customer, verdict)


def _changes_nothing(
    change: SubscriptionChange, merchant: Merchant, customer: Customer, hold: RewardHold
) -> Verdict | None:
    """The verdict when the notification could change nothing, whatever Ecomail says: the
    customer's consent is what the change would record, and the settings or the hold leave
    no points to move. ``None`` when Ecomail must be asked."""
    settings = merchant.settings
    early = screen(
        change,
        reward=settings.newsletter_reward,
        take_back=settings.newsletter_take_back,
        hold=hold,
    )
    if early is None or customer.marketing_consent is not _consent_of(change):
        return None
    if change is SubscriptionChange.SUBSCRIBED and not hold.held:
        return None  # the contact may not be known as a member yet: its fields are written
    return early


def _consent_of(change: SubscriptionChange) -> MarketingConsent:
    """The consent a confirmed change records."""
    if change is SubscriptionChange.SUBSCRIBED:
        return MarketingConsent.GRANTED
    return MarketingConsent.REFUSED


async def _apply(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    item: ClaimedNotification,
    token: str,
    *,
    found: Customer,
    membership: Membership | None,
) -> bool:
    """Apply the confirmed change and settle the notification; False when the claim was lost
    (nothing is recorded)."""
    n, merchant_id = item.notification, item.merchant_id
    customer_id = customer_id_of(found)
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await uow.customers.get(merchant_id, customer_id, for_update=True)
        now = clock.now()
        if await uow.ecomail.active_list(merchant_id) != n.list_id:
            verdict = ignored(INTEGRATION_CHANGED)
        elif customer is None or email_key(customer.email) != email_key(n.email):
            verdict = ignored(Reason("The customer's email changed while this was confirmed."))
        else:
            if n.change is SubscriptionChange.SUBSCRIBED:
                verdict = await _subscribed(
                    uow, merchant, customer, item=item, membership=membership, now=now
                )
            else:
                verdict = await _unsubscribed(uow, merchant, customer, now=now)
            if membership is not None:  # the contact's status as Ecomail confirmed it
                await uow.contacts.record_status(
                    merchant_id, customer_id, membership.status, at=now
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
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    item: ClaimedNotification,
    token: str,
    verdict: Verdict,
    *,
    customer: Customer | None,
) -> bool:
    """Record a verdict that changes nothing; False when the claim was lost."""
    async with uow_factory() as uow:
        held = await uow.newsletter.settle(
            item.id,
            token=token,
            outcome=verdict.outcome,
            reason=verdict.reason,
            points=None,
            customer_id=None if customer is None else customer.id,
            at=clock.now(),
        )
        await uow.commit()
    if held:
        _log(item, verdict)
    return held


async def _defer(
    uow_factory: UnitOfWorkFactory, clock: Clock, item: ClaimedNotification, token: str, wait: Wait
) -> None:
    async with uow_factory() as uow:
        await uow.newsletter.defer(
            item.id,
            token=token,
            until=clock.now() + wait.wait,
            reason=wait.reason.clipped(),
            count_attempt=wait.counts,
        )
        await uow.commit()
    logger.log(
        logging.WARNING if wait.counts else logging.DEBUG,
        "newsletter notification %s (merchant %s) waits %.0f s: %s",
        item.id,
        item.merchant_id,
        wait.wait.total_seconds(),
        wait.reason.english(),
    )


async def _subscribed(
    uow: UnitOfWork,
    merchant: Merchant,
    customer: Customer,
    *,
    item: ClaimedNotification,
    membership: Membership | None,
    now: datetime,
) -> Verdict:
    """A subscription Ecomail confirmed, under the customer's lock: Ellity's echo is taken
    (nothing else changes), a replay of it changes nothing; the customer's own subscription
    records their consent, makes the contact a member and pays by the reward's rules."""
    merchant_id, customer_id = merchant_id_of(merchant), customer_id_of(customer)
    subscribed_at = None if membership is None else membership.subscribed_at
    echo = await _echo(uow, customer, item=item, subscribed_at=subscribed_at)
    if echo.kind is EchoKind.ECHO:
        await uow.contacts.take_echo(merchant_id, customer_id, at=now, subscribed_at=subscribed_at)
        return ignored(echo.reason)
    if echo.kind is EchoKind.REPLAY:
        return ignored(echo.reason)
    changed = await record_consent(
        uow, merchant, customer, MarketingConsent.GRANTED, ConsentSource.ECOMAIL, at=now
    )
    await uow.contacts.mark_member(merchant_id, customer_id, at=now)
    verdict = await _reward(uow, merchant, customer, now=now)
    consent = (
        Reason("Consent recorded as granted.")
        if changed
        else Reason("Consent was granted already.")
    )
    reason = own_subscription_reason(echo, verdict.reason) + consent
    return dataclasses.replace(verdict, reason=reason)


async def _echo(
    uow: UnitOfWork,
    customer: Customer,
    *,
    item: ClaimedNotification,
    subscribed_at: datetime | None,
) -> EchoVerdict:
    """Whether the subscription is Ellity's echo of its add of the customer's contact."""
    merchant_id, customer_id = item.merchant_id, customer_id_of(customer)
    if item.received_at < customer.created_at:  # a sign-up kept for this email
        return EchoVerdict(
            EchoKind.OWN, Reason("Signed up to the newsletter before becoming a customer")
        )
    attempt = await uow.contacts.add_attempt(merchant_id, customer_id)
    # an unsubscription counts only when it came before the subscription Ecomail reports
    # began: one claimed later did not end it (a forgery, or one Ecomail never confirmed)
    until = None if subscribed_at is None else subscribed_at + ECHO_SKEW
    unsubscribed = attempt is not None and await uow.newsletter.unsubscribed_since(
        merchant_id, item.notification.email, attempt.attempted_at, until=until
    )
    return echo_of(
        attempt,
        received_at=item.received_at,
        unsubscribed_since=unsubscribed,
        subscribed_at=subscribed_at,
    )


async def _reward(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, *, now: datetime
) -> Verdict:
    """The reward for the customer's own subscription (the hold is read again here)."""
    reward = merchant.settings.newsletter_reward

    def rule(hold: RewardHold, ledger: Ledger) -> Verdict:
        return reward_subscription(hold, ledger, reward=reward, at=now)

    return await apply_reward_rule(uow, merchant, customer, rule, at=now)


async def _unsubscribed(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, *, now: datetime
) -> Verdict:
    """An unsubscription Ecomail confirmed, under the customer's lock: consent refused, and
    the reward taken back by the rules."""
    changed = await record_consent(
        uow, merchant, customer, MarketingConsent.REFUSED, ConsentSource.ECOMAIL, at=now
    )
    verdict = await apply_take_back(uow, merchant, customer, at=now)
    consent = (
        Reason("Consent recorded as refused.")
        if changed
        else Reason("Consent was refused already.")
    )
    return dataclasses.replace(verdict, reason=verdict.reason + consent)


async def _keep_signup(
    uow_factory: UnitOfWorkFactory, clock: Clock, item: ClaimedNotification, token: str
) -> bool | Wait:
    """A subscription Ecomail confirmed for an email no customer has: kept for a customer
    created with it later. False when the claim was lost; a wait when a customer with the
    email appeared meanwhile (it is then processed as theirs)."""
    n, merchant_id = item.notification, item.merchant_id
    async with uow_factory() as uow:
        now = clock.now()
        if await uow.customers.find_by_email(merchant_id, n.email) is not None:
            return Wait(timedelta(0), CUSTOMER_APPEARED, False)
        if await uow.ecomail.active_list(merchant_id) != n.list_id:
            verdict = ignored(INTEGRATION_CHANGED)
        else:
            await uow.newsletter.keep_signup(
                merchant_id,
                n.email,
                n.list_id,
                received_at=item.received_at,
                confirmed_at=now,
                notification_id=item.id,
            )
            verdict = ignored(SIGNUP_KEPT)
        held = await uow.newsletter.settle(
            item.id,
            token=token,
            outcome=verdict.outcome,
            reason=verdict.reason,
            points=None,
            customer_id=None,
            at=now,
        )
        if not held:
            return False  # taken over: roll back; the new holder decides
        await uow.commit()
    _log(item, verdict)
    return True


def _log(item: ClaimedNotification, verdict: Verdict) -> None:
    """Ids and outcomes only: never the email."""
    logger.info(
        "newsletter notification %s (merchant %s, %s): %s",
        item.id,
        item.merchant_id,
        item.notification.change.value,
        verdict.outcome.value,
    )
