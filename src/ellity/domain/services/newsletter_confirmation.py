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

from ellity.domain.model.contact_state import STATUS_TERMS
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.newsletter import (
    DOI_PATIENCE,
    ClaimedNotification,
    Origin,
    Outcome,
    SubscriptionChange,
    Verdict,
    double_optin_wait,
)
from ellity.domain.model.reason import Reason
from ellity.domain.services.ecomail_connection import (
    KEY_REJECTED_REASON,
    KEY_UNREADABLE_REASON,
    Connection,
)
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

DOI_WAITING = Reason(
    "Ecomail says the sign-up is not confirmed yet (double opt-in): Ellity asks again until"
    " the person confirms it, for up to %(days)s days.",
    days=DOI_PATIENCE.days,
)
DOI_EXPIRED = Reason(
    "The sign-up was not confirmed within %(days)s days (double opt-in): nothing changed.",
    days=DOI_PATIENCE.days,
)
NOT_ACTIVE = Reason("The Ecomail integration is not active.")


@dataclass(frozen=True, slots=True)
class Wait:
    """Not decided now: try again after ``wait``."""

    wait: timedelta
    reason: Reason
    counts: bool  # an attempt that failed (Ecomail), not a wait for something to happen


def ignored(reason: Reason) -> Verdict:
    return Verdict(Outcome.IGNORED, reason)


def unconfirmed(reason: Reason) -> Verdict:
    return Verdict(Outcome.UNCONFIRMED, reason)


#: The statuses that confirm an unsubscription a reconciliation run found: any that ended the
#: subscription (Ecomail notifies none of them).
_ENDED = frozenset(
    (
        SubscriptionStatus.UNSUBSCRIBED,
        SubscriptionStatus.SOFT_BOUNCED,
        SubscriptionStatus.HARD_BOUNCED,
        SubscriptionStatus.COMPLAINED,
    )
)


def confirmation_problem(
    change: SubscriptionChange, membership: Membership | None, origin: Origin = Origin.WEBHOOK
) -> Reason | None:
    """Why Ecomail's answer does not confirm the change; ``None`` when it does."""
    if membership is None:
        return Reason("Ecomail has no such contact in the list: nothing changed.")
    wanted = (
        SubscriptionStatus.SUBSCRIBED
        if change is SubscriptionChange.SUBSCRIBED
        else SubscriptionStatus.UNSUBSCRIBED
    )
    if membership.status is wanted:
        return None
    if (
        origin is Origin.RECONCILIATION
        and change is SubscriptionChange.UNSUBSCRIBED
        and membership.status in _ENDED
    ):
        return None
    return Reason(
        "Ecomail says the contact is %(status)s in the list now, not %(wanted)s: nothing changed.",
        status=STATUS_TERMS[membership.status],
        wanted=STATUS_TERMS[wanted],
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
        return Wait(retry, KEY_UNREADABLE_REASON, True)
    if link is None:
        return ignored(NOT_ACTIVE)
    try:
        membership = await link.platform.membership(n.list_id, n.email)
    except BudgetExhausted as exc:  # nothing was sent: a wait, not an attempt
        return Wait(timedelta(seconds=exc.retry_after), exc.reason, False)
    except MarketingUnavailable as exc:
        wait = max(retry, timedelta(seconds=exc.retry_after or 0))
        return Wait(wait, Reason("Ecomail could not confirm it yet: %(why)s", why=str(exc)), True)
    except InvalidApiKey:
        return Wait(retry, KEY_REJECTED_REASON, True)
    except ListNotFound:
        return unconfirmed(Reason("The list no longer exists in Ecomail: nothing changed."))
    except MarketingRejected as exc:
        return unconfirmed(
            Reason("Ecomail refused to confirm it (%(why)s): nothing changed.", why=str(exc))
        )
    problem = confirmation_problem(n.change, membership, n.origin)
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
