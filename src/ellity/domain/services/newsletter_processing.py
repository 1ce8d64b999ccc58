"""The newsletter reward's processing: what the worker does with the notifications Ecomail
posted (rules: ``domain.model.newsletter``). Each notification is processed once:

1. *screen* it with what Ellity knows: the integration must be active with the notification's
   list, a customer must have the email, and the settings and the customer's reward hold
   must leave something to do. Otherwise it is recorded as ignored, with why.
2. *confirm* it with Ecomail (``newsletter_confirmation``): only what Ecomail confirms now
   changes anything; otherwise it is recorded as unconfirmed, or it waits and is tried again.
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
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings
from ellity.domain.model.newsletter import (
    ECHO,
    ClaimedNotification,
    RewardHold,
    SubscriptionChange,
    Verdict,
    is_echo,
    reward_subscription,
    screen,
    take_back_reward,
)
from ellity.domain.model.outbox import RetryPolicy, clip_error
from ellity.domain.services import notifications
from ellity.domain.services.common import customer_id_of, load_merchant, merchant_id_of
from ellity.domain.services.ecomail_connection import Connection, connection
from ellity.domain.services.newsletter_confirmation import Connect, Wait, confirm, ignored
from ellity.domain.services.work_loop import Claimable, OneAtATime, Pace, lease_for, work_through
from ellity.ports.clock import Clock
from ellity.ports.marketing import MarketingPlatforms, Membership
from ellity.ports.secrets import SecretBox
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory

logger = logging.getLogger(__name__)

BATCH_SIZE = 20
PROCESS_TIMEOUT = 30.0  # seconds for one notification: reads, Ecomail's answer, the write
CONTACT_WAIT = timedelta(seconds=3)
#: Ecomail unavailable or the key refused: 30 s, 1, 2 ... at most 30 minutes apart, for ever.
RETRY = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=30))


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

    async def connect(merchant_id: MerchantId) -> Connection | None:
        return await connection(
            merchant_id, uow_factory=uow_factory, platforms=platforms, secret_box=secret_box
        )

    processing = _Processing(uow_factory, clock, connect)
    queue = OneAtATime("n", _notifications, processing, seconds_each)
    pace = Pace(batch_size, lease_for(seconds_each, batch_size), limit=limit)
    return await work_through(
        queue, uow_factory=uow_factory, clock=clock, worker_token=worker_token, pace=pace
    )


async def forget_processed(*, uow_factory: UnitOfWorkFactory, clock: Clock, keep: timedelta) -> int:
    """Delete notifications processed longer than ``keep`` ago."""
    async with uow_factory() as uow:
        count = await uow.newsletter.purge_processed(before=clock.now() - keep)
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

    async def attempt(self, item: ClaimedNotification, token: str) -> bool | Wait:
        """Settle the notification (True; False when the claim was lost) or say how long it
        waits."""
        known = await _screen(self.uow_factory, item)
        if known.verdict is not None:
            return await _settle(
                self.uow_factory, self.clock, item, token, known.verdict, customer=known.customer
            )
        if known.contact_pending:
            return Wait(CONTACT_WAIT, "Waiting for the customer's contact to reach Ecomail.", False)
        retry = RETRY.delay(item.attempts, item_id=item.id)
        confirmed = await confirm(item, connect=self.connect, clock=self.clock, retry=retry)
        if isinstance(confirmed, Wait):
            return confirmed
        if isinstance(confirmed, Verdict):
            return await _settle(
                self.uow_factory, self.clock, item, token, confirmed, customer=known.customer
            )
        if known.customer is None:
            raise RuntimeError("screening lets only notifications about a customer through")
        return await _apply(
            self.uow_factory, self.clock, item, token, found=known.customer, membership=confirmed
        )

    def timed_out(self, item: ClaimedNotification, seconds: float) -> bool | Wait:
        return Wait(
            RETRY.delay(item.attempts, item_id=item.id),
            f"Processing took longer than {seconds:g} seconds; it is tried again.",
            True,
        )

    def broke(self, item: ClaimedNotification, error: Exception) -> bool | Wait:
        logger.exception("newsletter notification %s failed unexpectedly", item.id)
        return Wait(
            RETRY.delay(item.attempts, item_id=item.id),
            f"Unexpected error in Ellity ({type(error).__name__}); it is tried again.",
            True,
        )

    async def settle(self, item: ClaimedNotification, token: str, outcome: bool | Wait) -> bool:
        if isinstance(outcome, Wait):
            await _defer(self.uow_factory, self.clock, item, token, outcome)
            return False
        return outcome


@dataclass(frozen=True, slots=True)
class _Known:
    """What Ellity knows about a notification before asking Ecomail."""

    merchant: Merchant
    customer: Customer | None
    verdict: Verdict | None  # decided already
    contact_pending: bool


async def _screen(uow_factory: UnitOfWorkFactory, item: ClaimedNotification) -> _Known:
    """What Ellity's own records decide, in one short read."""
    n, merchant_id = item.notification, item.merchant_id
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        list_id = await uow.ecomail.active_list(merchant_id)
        customer = await uow.customers.find_by_email(merchant_id, n.email)
        if list_id is None:
            verdict: Verdict | None = ignored("The Ecomail integration is not active.")
        elif n.list_id != list_id:
            verdict = ignored(
                f"The notification is about another list (id {n.list_id}); the integration"
                f" uses the list {list_id}."
            )
        elif customer is None:
            verdict = ignored("No customer has this email.")
        else:
            verdict = None
        pending = False
        if verdict is None and customer is not None:
            customer_id = customer_id_of(customer)
            hold = await uow.newsletter.reward_hold(merchant_id, customer_id)
            verdict = _screen_settings(n.change, merchant.settings, hold)
            if verdict is None and n.change is SubscriptionChange.SUBSCRIBED:
                added_at = await uow.contacts.added_at(merchant_id, customer_id)
                if is_echo(added_at, item.received_at):  # no need to ask Ecomail
                    verdict = ignored(ECHO)
                else:
                    pending = await uow.contacts.is_pending(merchant_id, customer_id)
    return _Known(merchant, customer, verdict, pending)


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
            verdict = ignored("The Ecomail integration changed while this was confirmed.")
        elif customer is None or email_key(customer.email) != email_key(n.email):
            verdict = ignored("The customer's email changed while this was confirmed.")
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
    merchant_id, customer_id = merchant_id_of(merchant), customer_id_of(customer)
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
