"""Confirming a newsletter notification with Ecomail before it changes anything.

Ecomail is asked, outside any transaction, for the contact's membership of the list now: a
subscription is confirmed only while Ecomail says the contact is subscribed to that list, an
unsubscription only while it says unsubscribed. Anything else is unconfirmed and changes
nothing, except a double opt-in sign-up not confirmed yet: it waits, and Ecomail is asked
again (for up to ``DOI_PATIENCE``). Ecomail unavailable, or the key refused or unreadable →
the notification waits and is tried again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from ellity.domain.model.ids import MerchantId
from ellity.domain.model.newsletter import (
    DOI_PATIENCE,
    ClaimedNotification,
    Outcome,
    SubscriptionChange,
    Verdict,
    double_optin_wait,
)
from ellity.domain.services.ecomail_connection import KEY_REJECTED, KEY_UNREADABLE, Connection
from ellity.ports.clock import Clock
from ellity.ports.marketing import (
    BudgetExhausted,
    InvalidApiKey,
    ListNotFound,
    MarketingRejected,
    MarketingUnavailable,
    Membership,
    SubscriptionStatus,
)
from ellity.ports.secrets import SecretUnreadable

#: The merchant's Ecomail connection (``ecomail_connection.connection`` for a merchant id).
Connect = Callable[[MerchantId], Awaitable[Connection | None]]

DOI_WAITING = (
    "Ecomail says the sign-up is not confirmed yet (double opt-in): Ellity asks again until"
    f" the person confirms it, for up to {DOI_PATIENCE.days} days."
)
DOI_EXPIRED = (
    f"The sign-up was not confirmed within {DOI_PATIENCE.days} days (double opt-in):"
    " nothing changed."
)

_STATUS_TEXT = {
    SubscriptionStatus.SUBSCRIBED: "subscribed",
    SubscriptionStatus.UNSUBSCRIBED: "unsubscribed",
    SubscriptionStatus.SOFT_BOUNCED: "soft-bounced",
    SubscriptionStatus.HARD_BOUNCED: "hard-bounced",
    SubscriptionStatus.COMPLAINED: "marked as spam",
    SubscriptionStatus.UNCONFIRMED: "unconfirmed (double opt-in not confirmed yet)",
}


@dataclass(frozen=True, slots=True)
class Wait:
    """Not decided now: try again after ``wait``."""

    wait: timedelta
    reason: str
    counts: bool  # an attempt that failed (Ecomail), not a wait for something to happen


def ignored(reason: str) -> Verdict:
    return Verdict(Outcome.IGNORED, reason)


def unconfirmed(reason: str) -> Verdict:
    return Verdict(Outcome.UNCONFIRMED, reason)


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


async def confirm(
    item: ClaimedNotification, *, connect: Connect, clock: Clock, retry: timedelta
) -> Membership | Verdict | Wait | None:
    """Ecomail's membership of the contact in the list, or the verdict or wait its failure
    means; ``retry`` is how long a failed attempt waits."""
    n = item.notification
    try:
        link = await connect(item.merchant_id)
    except SecretUnreadable:
        return Wait(retry, KEY_UNREADABLE, True)
    if link is None:
        return ignored("The Ecomail integration is not active.")
    try:
        membership = await link.platform.membership(n.list_id, n.email)
    except BudgetExhausted as exc:  # nothing was sent: a wait, not an attempt
        return Wait(timedelta(seconds=exc.retry_after), str(exc), False)
    except MarketingUnavailable as exc:
        wait = max(retry, timedelta(seconds=exc.retry_after or 0))
        return Wait(wait, f"Ecomail could not confirm it yet: {exc}", True)
    except InvalidApiKey:
        return Wait(retry, KEY_REJECTED, True)
    except ListNotFound:
        return unconfirmed("The list no longer exists in Ecomail: nothing changed.")
    except MarketingRejected as exc:
        return unconfirmed(f"Ecomail refused to confirm it ({exc}): nothing changed.")
    problem = confirmation_problem(n.change, membership)
    if problem is None:
        return membership
    if (
        n.change is SubscriptionChange.SUBSCRIBED
        and membership is not None
        and membership.status is SubscriptionStatus.UNCONFIRMED
    ):
        again = double_optin_wait(item.received_at, clock.now())
        return unconfirmed(DOI_EXPIRED) if again is None else Wait(again, DOI_WAITING, False)
    return unconfirmed(problem)
