"""The newsletter reward: Ecomail's list webhook, the notifications it posts, and the rules
that turn a confirmed subscription change into a reward or a deduction (PRODUCT §2).

**The webhook.** Each merchant has one secret URL, ``{base}/webhooks/ecomail/{token}``; the
token is 43 URL-safe characters (258 random bits). Ellity looks it up by its SHA-256 and keeps
it encrypted only so the integration page can show it again. Ecomail signs nothing, so a
notification is a *claim*: it is stored as received and believed only after Ecomail confirms
the contact's status in that list.

**One reward at a time.** A customer's ``RewardHold`` records the points of the newsletter
reward they still hold (``outstanding``; held while above zero):

- a confirmed subscription pays the merchant's reward only when nothing is held, and then
  holds exactly what it paid;
- a confirmed unsubscription, with "take back on unsubscribe" on, deducts at most what is
  held and never more than the balance (``Ledger.deduct_up_to``); what could not be taken
  (the customer spent it) stays held and is taken with the next unsubscription. The hold is
  released only once everything paid has been taken back, so a customer gains at most one
  reward however often they subscribe and unsubscribe. With taking back off the reward is
  never released, so it is paid once per customer. What is taken back is what was paid,
  whatever the reward is set to by then (0 included); only the switch decides whether.

Notifications about the same change (Ecomail's redeliveries, parallel deliveries) find the
hold already taken or released and change nothing; the service reads and writes the hold
under the customer's row lock in the transaction of the ledger entry.

**Ellity's own echo.** Ellity's sync adds customers to the list as subscribed, and Ecomail
then posts ``SUBSCRIBED`` for them. That is not the customer subscribing: it pays nothing and
does not change their consent. Ellity knows its echo by what it did, never by a clock alone:
before each add call the sync records that it attempted to add the contact
(``AddAttempt.attempted_at``; kept when the call's answer is lost). A confirmed subscription
is the echo of that attempt (``echo_of``) when it was received at or after the attempt, no
``UNSUBSCRIBED`` notification for the email was received since the attempt (and before the
subscription Ecomail reports began, give or take ``ECHO_SKEW``: one claimed later did not end
it), and the echo of that attempt has not been taken yet; it is then taken, with Ecomail's
``subscribed_at``.
Ecomail's ``subscribed_at`` is a further check: one more than ``ECHO_SKEW`` before the
attempt means the person subscribed before Ellity's add (not an echo), and a subscription
whose ``subscribed_at`` is the taken echo's is that same subscription again (a replay,
ignored, even when an unsubscription was notified since: Ecomail says nothing ended it).
Anything else is the person's own subscription: a customer Ellity added who unsubscribes and
signs up again a minute later is paid.

**Sign-up before the customer exists.** A confirmed subscription for an email no customer has
is kept; a customer created with that email within ``SIGNUP_KEEP`` of its confirmation (and
not refusing marketing) gets it as a subscription of their own, which Ecomail is asked to
confirm again before it pays.

**Double opt-in.** On a list with double opt-in Ecomail posts ``SUBSCRIBED`` once, when the
person signs up (status "unconfirmed"), and nothing when they confirm. Such a subscription
is paid once Ecomail says the contact is subscribed: Ellity asks again, ever less often
(``double_optin_wait``), for ``DOI_PATIENCE`` after the notification arrived; a sign-up not
confirmed by then is recorded as unconfirmed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ellity.domain.model.customer import clean_email
from ellity.domain.model.errors import InvalidInput, NotFound
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.ledger import Entry, EntryKind, Ledger
from ellity.domain.model.money import Points
from ellity.domain.model.pin import RandomBelow
from ellity.domain.model.reason import Reason

WEBHOOK_PATH = "/webhooks/ecomail"
_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TOKEN_LENGTH = 43  # like secrets.token_urlsafe(32): 6 bits a character
_TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}$", re.ASCII)
_DIGITS = re.compile(r"^[0-9]{1,18}$", re.ASCII)
MAX_ID = 2**63 - 1

#: How long a double opt-in sign-up may take to be confirmed, and how often Ellity asks.
DOI_PATIENCE = timedelta(days=7)
DOI_FIRST_LOOK = timedelta(minutes=5)
DOI_LONGEST_WAIT = timedelta(hours=6)

#: How much earlier than Ellity's add attempt Ecomail's ``subscribed_at`` of its echo may be
#: (Ecomail's clock behind Ellity's).
ECHO_SKEW = timedelta(minutes=2)

#: How long a sign-up for an email no customer has is kept for a customer created with it.
SIGNUP_KEEP = timedelta(days=30)


class UnknownWebhook(NotFound):
    """No merchant has this webhook token (a wrong or rotated one)."""

    code = "not_found"

    def __init__(self) -> None:
        super().__init__("There is no such webhook.")


class MalformedNotification(InvalidInput):
    """The body is not a notification Ecomail sends; nothing is stored."""

    code = "invalid_notification"


class UnreadableNotification(MalformedNotification):
    """The body is not JSON at all."""

    code = "bad_request"


class SubscriptionChange(StrEnum):
    SUBSCRIBED = "SUBSCRIBED"
    UNSUBSCRIBED = "UNSUBSCRIBED"


class Outcome(StrEnum):
    """What processing a notification did."""

    PAID = "paid"
    DEDUCTED = "deducted"
    IGNORED = "ignored"
    UNCONFIRMED = "unconfirmed"  # Ecomail did not confirm the change: nothing changed


class Origin(StrEnum):
    """Who reported a subscription change."""

    WEBHOOK = "webhook"  # Ecomail's list webhook
    #: a reconciliation run found the change in the list, without a notification (Ecomail
    #: fires none for an unsubscription through its API, a bounce, a complaint or a double
    #: opt-in confirmation, and one may be lost): an unsubscription is then confirmed by any
    #: status that ended the subscription, not only "unsubscribed"
    RECONCILIATION = "reconciliation"


@dataclass(frozen=True, slots=True)
class Notification:
    """A subscription change as Ecomail's webhook reported it (not yet confirmed), or as a
    reconciliation run found it (``origin``)."""

    email: str
    change: SubscriptionChange
    list_id: str
    campaign_id: int | None = None
    origin: Origin = Origin.WEBHOOK


# -- the webhook ---------------------------------------------------------------------------


def generate_webhook_token(randbelow: RandomBelow) -> str:
    return "".join(_TOKEN_ALPHABET[randbelow(len(_TOKEN_ALPHABET))] for _ in range(TOKEN_LENGTH))


def looks_like_token(token: str) -> bool:
    """Whether ``token`` could be one Ellity issued (others are refused without a look-up)."""
    return bool(_TOKEN.match(token))


def webhook_digest(token: str) -> str:
    """What is stored and looked up: the token's SHA-256, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def webhook_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{WEBHOOK_PATH}/{token}"


def decode_notification(raw: bytes) -> Notification:
    """A webhook request's body as it arrived: JSON, then ``parse_notification``."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8 or JSON; nested too deeply
        raise UnreadableNotification(
            'The body is not valid JSON; Ecomail sends {"payload": {...}}.'
        ) from None
    return parse_notification(body)


def parse_notification(body: object) -> Notification:
    """Ecomail's body ``{"payload": {"email", "status", "listId", "campaignId"}}``, decoded
    from JSON. Raises ``MalformedNotification`` saying what is wrong. Unknown extra fields
    are allowed (Ecomail may add some); ids may come as numbers or digit strings."""
    if not isinstance(body, Mapping):
        raise MalformedNotification('The body must be a JSON object {"payload": {...}}.')
    payload = body.get("payload")
    if not isinstance(payload, Mapping):
        raise MalformedNotification("The body needs a 'payload' object.")
    email = payload.get("email")
    if not isinstance(email, str) or not email.strip():
        raise MalformedNotification("payload.email must be a non-empty string.")
    try:
        email.encode("utf-8")
        cleaned = clean_email(email)
    except (UnicodeEncodeError, InvalidInput):
        raise MalformedNotification("payload.email is not a valid email address.") from None
    if cleaned is None:
        raise MalformedNotification("payload.email must be a non-empty string.")
    status = payload.get("status")
    if not isinstance(status, str) or status not in SubscriptionChange.__members__:
        raise MalformedNotification("payload.status must be 'SUBSCRIBED' or 'UNSUBSCRIBED'.")
    list_id = _id(payload.get("listId"), "payload.listId")
    if list_id is None:
        raise MalformedNotification("payload.listId must be the list's id (a whole number).")
    campaign_id = _id(payload.get("campaignId"), "payload.campaignId")
    return Notification(
        email=cleaned,
        change=SubscriptionChange(status),
        list_id=str(list_id),
        campaign_id=campaign_id,
    )


def _id(value: object, what: str) -> int | None:
    """A positive id sent as a JSON number or a digit string; ``None`` when null or absent."""
    if value is None:
        return None
    if isinstance(value, str) and _DIGITS.match(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise MalformedNotification(f"{what} must be a whole number.")
    if not 0 < number <= MAX_ID:
        raise MalformedNotification(f"{what} is out of range.")
    return number


# -- the rules -----------------------------------------------------------------------------


@dataclass(slots=True)
class RewardHold:
    """The newsletter reward a customer holds: ``outstanding`` points still to be taken back
    on unsubscribe. Held while above zero."""

    outstanding: Points = Points(0)  # noqa: RUF009 - Points is frozen
    paid_at: datetime | None = None
    released_at: datetime | None = None

    @property
    def held(self) -> bool:
        return self.outstanding.is_positive()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a notification did (or, before Ellity asked Ecomail, would not do)."""

    outcome: Outcome
    reason: Reason
    points: Points | None = None  # paid (positive) or deducted (negative)
    entry: Entry | None = None


def _ignored(reason: Reason) -> Verdict:
    return Verdict(Outcome.IGNORED, reason)


NO_REWARD = Reason("No newsletter reward is set (0 points).")
TAKE_BACK_OFF = Reason("Taking the reward back on unsubscribe is switched off.")
NOTHING_HELD = Reason("The customer holds no newsletter reward to take back.")


def already_held(hold: RewardHold) -> Reason:
    return Reason(
        "The customer already holds the newsletter reward (%(points)s points to take back):"
        " one reward at a time.",
        points=hold.outstanding,
    )


def screen(
    change: SubscriptionChange, *, reward: Points, take_back: bool, hold: RewardHold
) -> Verdict | None:
    """The verdict when the settings or the hold already decide it (Ecomail need not be
    asked); ``None`` when only a confirmed change can decide. ``reward`` matters only for a
    subscription, ``take_back`` only for an unsubscription."""
    if change is SubscriptionChange.SUBSCRIBED:
        if not reward.is_positive():
            return _ignored(NO_REWARD)
        if hold.held:
            return _ignored(already_held(hold))
        return None
    if not take_back:
        return _ignored(TAKE_BACK_OFF)
    if not hold.held:
        return _ignored(NOTHING_HELD)
    return None


def double_optin_wait(received_at: datetime, now: datetime) -> timedelta | None:
    """How long to wait before asking Ecomail again whether a double opt-in sign-up (notified
    at ``received_at``) is confirmed: half its age, between ``DOI_FIRST_LOOK`` and
    ``DOI_LONGEST_WAIT``, the last look at the end of ``DOI_PATIENCE``; ``None`` once that
    has passed (about 40 looks in all)."""
    age = now - received_at
    if age >= DOI_PATIENCE:
        return None
    wait = min(max(age / 2, DOI_FIRST_LOOK), DOI_LONGEST_WAIT)
    return min(wait, DOI_PATIENCE - age)


def reward_subscription(
    hold: RewardHold,
    ledger: Ledger,
    *,
    reward: Points,
    at: datetime,
) -> Verdict:
    """A subscription Ecomail confirmed as the customer's own (not Ellity's echo: see
    ``echo_of``): pay ``reward`` unless a reward is held. Changes ``hold`` and ``ledger`` when
    it pays."""
    early = screen(SubscriptionChange.SUBSCRIBED, reward=reward, take_back=False, hold=hold)
    if early is not None:
        return early
    entry = ledger.earn(reward, at=at, kind=EntryKind.NEWSLETTER_REWARD)  # the kind says why
    hold.outstanding, hold.paid_at = reward, at
    return Verdict(Outcome.PAID, Reason("Paid %(points)s points.", points=reward), reward, entry)


def take_back_reward(hold: RewardHold, ledger: Ledger, *, take_back: bool, at: datetime) -> Verdict:
    """An unsubscription Ecomail confirmed: deduct what is held, at most the balance. The
    hold is released only when all of it has been taken back."""
    early = screen(
        SubscriptionChange.UNSUBSCRIBED, reward=Points(0), take_back=take_back, hold=hold
    )
    if early is not None:
        return early
    wanted = hold.outstanding
    entry = ledger.deduct_up_to(wanted, at=at, kind=EntryKind.NEWSLETTER_DEDUCTION)
    taken = Points(0) if entry is None else -entry.points
    hold.outstanding = wanted - taken
    if not hold.held:
        hold.released_at = at
    if entry is None:
        return _ignored(
            Reason(
                "The balance is 0: nothing could be taken back; %(wanted)s points stay held and"
                " are taken with the next unsubscription.",
                wanted=wanted,
            )
        )
    if hold.held:
        reason = Reason(
            "Deducted %(taken)s of %(wanted)s points (all the balance); %(left)s stay held and"
            " are taken with the next unsubscription.",
            taken=taken,
            wanted=wanted,
            left=hold.outstanding,
        )
    else:
        reason = Reason("Deducted %(taken)s points; the reward is released.", taken=taken)
    return Verdict(Outcome.DEDUCTED, reason, entry.points, entry)


# -- Ellity's own echo ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddAttempt:
    """Ellity's latest attempt to add a customer's contact to the list (recorded before the
    add call), and the notification taken as its echo: when (``echo_taken_at``) and Ecomail's
    ``subscribed_at`` of that subscription (``echo_subscribed_at``)."""

    attempted_at: datetime
    echo_taken_at: datetime | None = None
    echo_subscribed_at: datetime | None = None


class EchoKind(StrEnum):
    OWN = "own"  # the person's own subscription
    ECHO = "echo"  # Ecomail's notification of Ellity's add: taken as its echo
    REPLAY = "replay"  # the subscription already taken as the echo, notified again


@dataclass(frozen=True, slots=True)
class EchoVerdict:
    """Whose a confirmed subscription is; ``reason`` for the activity log (for ``OWN`` a
    clause that the reward's outcome completes, otherwise the whole reason)."""

    kind: EchoKind
    reason: Reason


def echo_of(
    attempt: AddAttempt | None,
    *,
    received_at: datetime,
    unsubscribed_since: bool,
    subscribed_at: datetime | None,
) -> EchoVerdict:
    """Whether a subscription Ecomail confirmed (notified at ``received_at``, subscribed at
    ``subscribed_at`` as Ecomail says) is Ellity's echo of its add ``attempt``.
    ``unsubscribed_since``: an ``UNSUBSCRIBED`` notification for the email was received at or
    after the attempt. See the module doc.

    A subscription whose ``subscribed_at`` is the taken echo's is a replay even after an
    unsubscription was notified: Ecomail says it is the subscription Ellity's add made, so the
    unsubscription (not confirmed, or forged) did not end it."""
    if attempt is None:
        return EchoVerdict(
            EchoKind.OWN,
            Reason("The customer's own subscription (Ellity never tried to add this contact)"),
        )
    attempted = attempt.attempted_at
    if received_at < attempt.attempted_at:
        return EchoVerdict(
            EchoKind.OWN,
            Reason(
                "The customer's own subscription (notified before Ellity's add of this contact,"
                " attempted %(attempted)s)",
                attempted=attempted,
            ),
        )
    if attempt.echo_taken_at is not None and _same(subscribed_at, attempt.echo_subscribed_at):
        # the subscription Ecomail reports is the very one taken as the echo: nothing ended
        # it, whatever unsubscription was claimed since
        return _replay(attempted)
    if unsubscribed_since:
        return EchoVerdict(EchoKind.OWN, Reason("Subscribed again after unsubscribing"))
    if attempt.echo_taken_at is None:
        if subscribed_at is not None and subscribed_at < attempt.attempted_at - ECHO_SKEW:
            return EchoVerdict(
                EchoKind.OWN,
                Reason(
                    "The customer's own subscription (Ecomail says since %(since)s, before"
                    " Ellity's add of this contact, attempted %(attempted)s)",
                    since=subscribed_at,
                    attempted=attempted,
                ),
            )
        return EchoVerdict(
            EchoKind.ECHO,
            Reason(
                "Ellity's own add of this contact (attempted %(attempted)s): not a subscription"
                " by the customer; nothing paid, consent unchanged.",
                attempted=attempted,
            ),
        )
    if subscribed_at is None or attempt.echo_subscribed_at is None:
        return _replay(attempted)  # a missing time counts as the same subscription
    return EchoVerdict(
        EchoKind.OWN,
        Reason(
            "Subscribed again after Ellity's add of this contact (Ecomail says since %(since)s)",
            since=subscribed_at,
        ),
    )


def _same(subscribed_at: datetime | None, echo_subscribed_at: datetime | None) -> bool:
    return subscribed_at is not None and subscribed_at == echo_subscribed_at


def _replay(attempted: datetime) -> EchoVerdict:
    return EchoVerdict(
        EchoKind.REPLAY,
        Reason(
            "The same subscription as the echo of Ellity's add of this contact (attempted"
            " %(attempted)s), recorded already: nothing changed.",
            attempted=attempted,
        ),
    )


def own_subscription_reason(echo: EchoVerdict, outcome: Reason) -> Reason:
    """The activity log's reason for the customer's own subscription: why it is theirs, then
    what it did (``outcome``, a sentence, completing it after a colon)."""
    return echo.reason.completed_by(outcome)


# -- stored notifications ------------------------------------------------------------------


class NotificationState(StrEnum):
    PENDING = "pending"  # waiting for a worker (or for Ecomail to answer again)
    PROCESSED = "processed"  # its outcome is recorded


@dataclass(frozen=True, slots=True)
class ClaimedNotification:
    """A pending notification as a worker claimed it; ``attempts`` counts this claim too."""

    id: int
    merchant_id: MerchantId
    notification: Notification
    received_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One line of the integration page's activity log."""

    id: int
    received_at: datetime
    notification: Notification
    state: NotificationState
    outcome: Outcome | None
    reason: Reason  # why it was ignored or unconfirmed; while pending, what it waits for
    points: Points | None
    customer_id: CustomerId | None
    processed_at: datetime | None

    @property
    def result(self) -> str:
        """What it did, in a few words: ``paid 50``, ``deducted 20``, ``ignored``..."""
        if self.state is NotificationState.PENDING or self.outcome is None:
            return "waiting"
        if self.outcome is Outcome.PAID and self.points is not None:
            return f"paid {self.points.display('en')}"
        if self.outcome is Outcome.DEDUCTED and self.points is not None:
            return f"deducted {(-self.points).display('en')}"
        return self.outcome.value
