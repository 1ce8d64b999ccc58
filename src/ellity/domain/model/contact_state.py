"""A customer's contact in the merchant's Ecomail list, as the customer's page tells it: in the
list or not, and why.

The answer comes from what Ellity knows, never from asking Ecomail: the customer's email and
marketing consent, the merchant's ``ecomail_add`` setting, the contact's sync row (``in_list``,
a pending or failed write, an unsubscription still due) and the contact's status in the list
as Ellity last saw it (a reconciliation run, a confirmed notification). A status seen wins
over what Ellity infers: Ellity never subscribes anyone again, so a contact seen unsubscribed
stays so until the person subscribes again themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from ellity.domain.model.consent import EcomailAdd, MarketingConsent, may_add
from ellity.domain.model.errors import Term
from ellity.domain.model.reason import Reason


class SubscriptionStatus(IntEnum):
    """A contact's status in a list (Ecomail's numbers)."""

    SUBSCRIBED = 1
    UNSUBSCRIBED = 2
    SOFT_BOUNCED = 3
    HARD_BOUNCED = 4
    COMPLAINED = 5
    UNCONFIRMED = 6


#: Each status as a reason or a page says it (translated by the pages).
STATUS_TERMS: dict[SubscriptionStatus, Term] = {
    SubscriptionStatus.SUBSCRIBED: Term("subscribed"),
    SubscriptionStatus.UNSUBSCRIBED: Term("unsubscribed"),
    SubscriptionStatus.SOFT_BOUNCED: Term("soft-bounced"),
    SubscriptionStatus.HARD_BOUNCED: Term("hard-bounced"),
    SubscriptionStatus.COMPLAINED: Term("marked as spam"),
    SubscriptionStatus.UNCONFIRMED: Term("unconfirmed (double opt-in not confirmed yet)"),
}


def status_of(number: int | None) -> SubscriptionStatus | None:
    """A stored status number; ``None`` for none or a number Ecomail does not use."""
    if number is None:
        return None
    try:
        return SubscriptionStatus(number)
    except ValueError:
        return None


class Presence(StrEnum):
    """Where the contact stands in the list."""

    MEMBER = "member"  # in the list, subscribed as far as Ellity knows
    NOT_SUBSCRIBED = "not_subscribed"  # in the list, but gets no newsletters
    LEAVING = "leaving"  # Ellity still has to unsubscribe it
    JOINING = "joining"  # Ellity is about to add it
    OUT = "out"  # not in the list


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """What Ellity knows about one customer's contact. Without a sync row: ``in_list``
    False, nothing pending or failed, no status seen."""

    integration_active: bool
    has_email: bool
    setting: EcomailAdd
    consent: MarketingConsent
    in_list: bool = False
    pending: bool = False
    failed: bool = False
    unsubscribe_due: bool = False
    list_status: SubscriptionStatus | None = None


@dataclass(frozen=True, slots=True)
class ContactState:
    presence: Presence
    reason: Reason

    @property
    def in_list(self) -> bool:
        return self.presence in (Presence.MEMBER, Presence.NOT_SUBSCRIBED, Presence.LEAVING)


NOT_CONNECTED = Reason("Ecomail is not connected.")
NO_EMAIL = Reason("The customer has no email address; Ellity syncs only customers who have one.")
REFUSED = Reason("The customer refused marketing; Ellity never adds them to the list.")
ADDS_NOBODY = Reason("Your setting says Ellity adds nobody to the list.")
NO_CONSENT = Reason(
    "The customer has not given marketing consent; your setting says Ellity adds only"
    " customers who gave it."
)
MEMBER = Reason("Ellity writes the loyalty fields to the contact.")
LEAVING = Reason("The customer refused marketing; Ellity is unsubscribing the contact.")
REFUSED_MEMBER = Reason(
    "The customer refused marketing, so the contact is unsubscribed; Ellity still writes the"
    " loyalty fields."
)
NOT_CONFIRMED = Reason(
    "The person has not confirmed the sign-up yet (double opt-in); until then they get no"
    " newsletters."
)
JOINING = Reason("Ellity adds the contact with its next write to Ecomail.")
ADD_FAILED = Reason("Adding the contact failed; see the last error below.")
NOT_YET = Reason(
    "Ellity adds the contact the next time it writes it to Ecomail (“Re-push all customers”"
    " on the integration page writes every customer now)."
)


def seen_not_subscribed(status: SubscriptionStatus) -> Reason:
    return Reason(
        "Ecomail last reported the contact as %(status)s: it gets no newsletters, and Ellity"
        " never subscribes it again; the loyalty fields are still written.",
        status=STATUS_TERMS[status],
    )


def contact_state(facts: ContactFacts) -> ContactState:
    """Whether the customer's contact is in the list, and why (not)."""
    if not facts.integration_active:
        return ContactState(Presence.OUT, NOT_CONNECTED)
    if not facts.has_email:
        return ContactState(Presence.OUT, NO_EMAIL)
    if facts.unsubscribe_due:
        return ContactState(Presence.LEAVING, LEAVING)
    seen = facts.list_status
    if seen is SubscriptionStatus.UNCONFIRMED:
        return ContactState(Presence.NOT_SUBSCRIBED, NOT_CONFIRMED)
    if seen is not None and seen is not SubscriptionStatus.SUBSCRIBED:
        return ContactState(Presence.NOT_SUBSCRIBED, seen_not_subscribed(seen))
    if seen is SubscriptionStatus.SUBSCRIBED or facts.in_list:
        # a refusal Ellity acted on (or that came from Ecomail) left an unsubscribed member,
        # even one seen subscribed before it
        if facts.consent is MarketingConsent.REFUSED:
            return ContactState(Presence.NOT_SUBSCRIBED, REFUSED_MEMBER)
        return ContactState(Presence.MEMBER, MEMBER)
    if facts.consent is MarketingConsent.REFUSED:
        return ContactState(Presence.OUT, REFUSED)
    if not may_add(facts.setting, facts.consent):
        return ContactState(
            Presence.OUT, ADDS_NOBODY if facts.setting is EcomailAdd.NONE else NO_CONSENT
        )
    if facts.failed:
        return ContactState(Presence.OUT, ADD_FAILED)
    if facts.pending:
        return ContactState(Presence.JOINING, JOINING)
    return ContactState(Presence.OUT, NOT_YET)
