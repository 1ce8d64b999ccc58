"""Reconciling a merchant's Ecomail list with the ledger: what a run finds wrong with a member
of the list, and when runs are due.

Ecomail does not tell Ellity everything: an unsubscription through the API or one of the app's
buttons fires no webhook, a double opt-in confirmation fires none, a notification can be lost
while Ellity restarts, and merchants edit or delete contacts by hand. A reconciliation run
reads the whole list and compares each member with what Ellity holds (``judge``); the customers
the list lacks are found after the last page, by what the run did not see (the sweep).

What a member can need (``RepairKind``), each found once and repaired through the normal paths
(the contact sync, the newsletter processing), so that a second run finds nothing:

- ``FIELDS``: its ``ellity_*`` values differ from the customer's current ones (and no write is
  waiting already): the contact is written again.
- ``ADDED`` (the sweep): a customer Ellity may add (``ecomail_add`` and consent) is not in the
  list: the contact is added.
- ``UNSUBSCRIBED``: the member unsubscribed, bounced or complained while Ellity holds the
  customer's consent as granted: handled as a confirmed ``UNSUBSCRIBED`` notification (consent
  refused, the reward taken back by the rules). A consent the customer gave after the
  unsubscription is the newer wish and stands; with consent refused or unknown Ellity does not
  believe otherwise, and a reward still held then (the customer had spent it) waits for the
  next unsubscription, as with notifications.
- ``CONFIRMED`` / ``SIGNUP``: a member who subscribed after the integration was activated
  (so Ecomail's notification was due), whom Ellity never added and never recorded as signed
  up (consent not granted, or a reward due and not held): handled as a confirmed
  ``SUBSCRIBED`` notification — ``CONFIRMED`` when its sign-up was recorded as unconfirmed
  (double opt-in confirmed later, which Ecomail never notifies), ``SIGNUP`` when no
  notification arrived. A refusal recorded after the member subscribed stands. Members from
  before the activation (a list imported long ago) are not sign-ups Ellity missed.
- ``CLEARED``: the member carries ``ellity_*`` values but no customer has its email (and no
  customer moved away from it, which the sync clears anyway): its ``ellity_*`` fields are
  emptied, its status left alone.

A member whose notification is waiting to be processed is left to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES, FieldValue
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.reason import Reason


class Schedule(StrEnum):
    """How often a merchant's list is reconciled (the ``ecomail_reconcile`` setting)."""

    WEEKLY = "weekly"
    DAILY = "daily"
    OFF = "off"


DEFAULT_SCHEDULE = Schedule.WEEKLY
_EVERY = {Schedule.WEEKLY: timedelta(days=7), Schedule.DAILY: timedelta(days=1)}


def parse_schedule(value: str) -> Schedule:
    try:
        return Schedule(value.strip().lower())
    except ValueError:
        raise InvalidInput(
            "ecomail_reconcile must be one of: %(choices)s.",
            choices=", ".join(s.value for s in Schedule),
        ) from None


def scheduled_run_due(
    schedule: Schedule, *, last_requested_at: datetime | None, activated_at: datetime, now: datetime
) -> bool:
    """Whether the schedule asks for a run now: a period after the last run was requested (any
    trigger), or after the activation when there was none (the backfill has just written
    everything)."""
    every = _EVERY.get(schedule)
    if every is None:
        return False
    since = last_requested_at if last_requested_at is not None else activated_at
    return now >= since + every


class RepairKind(StrEnum):
    FIELDS = "fields"
    ADDED = "added"
    UNSUBSCRIBED = "unsubscribed"
    CONFIRMED = "confirmed"
    SIGNUP = "signup"
    CLEARED = "cleared"


class SeenStatus(StrEnum):
    """A member's status as the run reads it, by the page's status filter."""

    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    NOT_CONFIRMED = "not_confirmed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


_GONE = frozenset((SeenStatus.UNSUBSCRIBED, SeenStatus.BOUNCED, SeenStatus.COMPLAINED))


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What Ellity holds about the customer with a member's email (read for a page at once)."""

    customer_id: CustomerId
    fields: Mapping[str, FieldValue]  # the contact snapshot's values now
    consent: MarketingConsent
    consent_changed_at: datetime | None
    write_pending: bool  # the contact sync has a write of its fields waiting
    added_by_ellity: bool  # Ellity attempted to add the contact (its sign-up is an echo)
    reward_held: bool
    notification_pending: bool  # a notification for the email waits to be processed
    signup_unconfirmed: bool  # a sign-up for the email was recorded as unconfirmed


@dataclass(frozen=True, slots=True)
class Member:
    """A member as the page reads it."""

    email: str
    status: SeenStatus
    fields: Mapping[str, str | int]  # its custom fields (lower-case keys)
    subscribed_at: datetime | None
    unsubscribed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Terms:
    """The merchant's settings the judgement depends on."""

    reward_paid: bool  # a newsletter reward above zero is set
    #: since when Ecomail's notifications reach Ellity (the integration's activation): a
    #: sign-up from before it was never going to be notified, so none was lost
    listening_since: datetime | None


@dataclass(frozen=True, slots=True)
class Finding:
    kind: RepairKind
    reason: Reason


def field_text(value: object) -> str:
    """A field value as compared: Ecomail may hand numbers back as text and empty values as
    null; an empty whole-number field reads as 0."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return str(value).strip()


def differing_fields(seen: Mapping[str, object], wanted: Mapping[str, FieldValue]) -> list[str]:
    """The ``ellity_*`` fields whose value in the list differs from ``wanted``."""
    differ = []
    for name in FIELD_NAMES:
        have, want = field_text(seen.get(name)), field_text(wanted.get(name))
        if FIELD_TYPES[name] == "int":
            have, want = have or "0", want or "0"
        if have != want:
            differ.append(name)
    return differ


def carries_values(seen: Mapping[str, object]) -> bool:
    """Whether a member has any ``ellity_*`` value (an empty text or a 0 is none)."""
    return any(field_text(seen.get(name)) not in ("", "0") for name in FIELD_NAMES)


def judge(
    member: Member, facts: CustomerFacts | None, terms: Terms, *, old_address: bool = False
) -> list[Finding]:
    """What is wrong with the member (nothing: an empty list). ``old_address``: a customer
    moved away from this email and the sync still has to clear it."""
    if facts is None:
        if carries_values(member.fields) and not old_address:
            return [Finding(RepairKind.CLEARED, CLEARED_REASON)]
        return []
    findings = []
    if not facts.write_pending:
        differ = differing_fields(member.fields, facts.fields)
        if differ:
            findings.append(
                Finding(
                    RepairKind.FIELDS,
                    Reason(
                        "Its Ellity fields in Ecomail differ from the customer's: %(fields)s.",
                        fields=", ".join(differ),
                    ),
                )
            )
    if facts.notification_pending:
        return findings
    if member.status in _GONE:
        finding = _gone(member, facts)
    elif member.status is SeenStatus.SUBSCRIBED:
        finding = _signed_up(member, facts, terms)
        if finding is not None:
            return [finding]  # the sign-up, once confirmed, writes the contact's fields too
    else:
        finding = None
    return findings if finding is None else [*findings, finding]


CLEARED_REASON = Reason("No customer has this email: its Ellity fields are cleared.")

_GONE_TEXT = {
    SeenStatus.UNSUBSCRIBED: Reason("The contact unsubscribed in Ecomail without a notification."),
    SeenStatus.BOUNCED: Reason("Ecomail stopped sending to the contact: its emails bounced."),
    SeenStatus.COMPLAINED: Reason("The contact marked the newsletter as spam in Ecomail."),
}


def _gone(member: Member, facts: CustomerFacts) -> Finding | None:
    if facts.consent is not MarketingConsent.GRANTED:
        return None  # Ellity does not believe otherwise: its refusal was recorded already
    changed = facts.consent_changed_at
    if (
        changed is not None
        and member.unsubscribed_at is not None
        and changed > member.unsubscribed_at
    ):
        return None  # the customer's consent came after the unsubscription: it stands
    return Finding(RepairKind.UNSUBSCRIBED, _GONE_TEXT[member.status])


def _signed_up(member: Member, facts: CustomerFacts, terms: Terms) -> Finding | None:
    if facts.added_by_ellity:
        return None  # Ellity's own add: its echo, never a sign-up
    since = terms.listening_since
    if member.subscribed_at is None or since is None or member.subscribed_at < since:
        return None  # no notification was due: a member from before the integration
    changed = facts.consent_changed_at
    if facts.consent is MarketingConsent.REFUSED and (
        member.subscribed_at is None or (changed is not None and changed >= member.subscribed_at)
    ):
        return None  # the refusal is the newer wish (the sync unsubscribes the contact)
    due = terms.reward_paid and not facts.reward_held
    if facts.consent is MarketingConsent.GRANTED and not due:
        return None
    if facts.signup_unconfirmed:
        return Finding(
            RepairKind.CONFIRMED,
            Reason(
                "The contact confirmed the double opt-in; Ecomail sends no notification for it."
            ),
        )
    return Finding(
        RepairKind.SIGNUP,
        Reason("The contact is subscribed, but no notification of the sign-up arrived."),
    )


ADDED_REASON = Reason("The customer may be added to the list but is not in it.")
