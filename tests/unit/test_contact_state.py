"""Whether a customer's contact is in the merchant's Ecomail list, and why (not)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ellity.domain.model.consent import EcomailAdd, MarketingConsent
from ellity.domain.model.contact_state import (
    ADD_FAILED,
    ADDS_NOBODY,
    JOINING,
    LEAVING,
    MEMBER,
    NO_CONSENT,
    NO_EMAIL,
    NOT_CONFIRMED,
    NOT_CONNECTED,
    NOT_YET,
    REFUSED,
    REFUSED_MEMBER,
    ContactFacts,
    ContactState,
    Presence,
    SubscriptionStatus,
    contact_state,
    seen_not_subscribed,
    status_of,
)
from ellity.domain.model.reason import Reason

GRANTED, REFUSED_C, UNKNOWN = (
    MarketingConsent.GRANTED,
    MarketingConsent.REFUSED,
    MarketingConsent.UNKNOWN,
)
CONSENTED, CUSTOMERS, NONE = EcomailAdd.CONSENTED, EcomailAdd.CUSTOMERS, EcomailAdd.NONE
S = SubscriptionStatus

#: A customer with an email, marketing consent granted, the default setting, no sync row.
BASE = ContactFacts(integration_active=True, has_email=True, setting=CONSENTED, consent=GRANTED)


def facts(**changes: object) -> ContactFacts:
    return replace(BASE, **changes)  # type: ignore[arg-type]


OUT, IN, NOT_SUB = Presence.OUT, Presence.MEMBER, Presence.NOT_SUBSCRIBED
seen = seen_not_subscribed


@pytest.mark.parametrize(
    ("case", "given", "presence", "reason"),
    [
        # not synced at all
        ("integration off", facts(integration_active=False, in_list=True), OUT, NOT_CONNECTED),
        ("no email", facts(has_email=False, in_list=True), OUT, NO_EMAIL),
        # never added, and why
        ("refused", facts(consent=REFUSED_C), OUT, REFUSED),
        ("refused, all customers", facts(consent=REFUSED_C, setting=CUSTOMERS), OUT, REFUSED),
        ("no consent", facts(consent=UNKNOWN), OUT, NO_CONSENT),
        ("setting adds nobody", facts(setting=NONE), OUT, ADDS_NOBODY),
        ("nobody, no consent", facts(setting=NONE, consent=UNKNOWN), OUT, ADDS_NOBODY),
        # to be added
        ("pending add", facts(pending=True), Presence.JOINING, JOINING),
        ("customers setting", facts(setting=CUSTOMERS, consent=UNKNOWN, pending=True),
         Presence.JOINING, JOINING),
        ("add failed", facts(pending=True, failed=True), OUT, ADD_FAILED),
        ("never written", facts(), OUT, NOT_YET),
        # in the list
        ("added", facts(in_list=True), IN, MEMBER),
        ("member, fields waiting", facts(in_list=True, pending=True), IN, MEMBER),
        ("member, nobody added", facts(in_list=True, consent=UNKNOWN, setting=NONE), IN, MEMBER),
        ("seen subscribed", facts(list_status=S.SUBSCRIBED), IN, MEMBER),
        ("refusal unsubscribed it", facts(in_list=True, consent=REFUSED_C), NOT_SUB,
         REFUSED_MEMBER),
        ("refused after seen subscribed", facts(list_status=S.SUBSCRIBED, consent=REFUSED_C),
         NOT_SUB, REFUSED_MEMBER),
        ("unsubscribe due", facts(in_list=True, consent=REFUSED_C, unsubscribe_due=True),
         Presence.LEAVING, LEAVING),
        # a status seen wins over what Ellity infers
        ("seen unsubscribed", facts(in_list=True, list_status=S.UNSUBSCRIBED), NOT_SUB,
         seen(S.UNSUBSCRIBED)),
        ("seen hard-bounced", facts(list_status=S.HARD_BOUNCED), NOT_SUB, seen(S.HARD_BOUNCED)),
        ("seen soft-bounced", facts(list_status=S.SOFT_BOUNCED), NOT_SUB, seen(S.SOFT_BOUNCED)),
        ("seen complained", facts(list_status=S.COMPLAINED, pending=True), NOT_SUB,
         seen(S.COMPLAINED)),
        ("seen unconfirmed", facts(list_status=S.UNCONFIRMED), NOT_SUB, NOT_CONFIRMED),
        ("seen unsubscribed, refused", facts(list_status=S.UNSUBSCRIBED, consent=REFUSED_C),
         NOT_SUB, seen(S.UNSUBSCRIBED)),
    ],
)  # fmt: skip
def test_the_contact_state_follows_the_facts(
    case: str, given: ContactFacts, presence: Presence, reason: Reason
) -> None:
    assert contact_state(given) == ContactState(presence, reason), case


@pytest.mark.parametrize(
    ("presence", "in_list"),
    [
        (Presence.MEMBER, True),
        (Presence.NOT_SUBSCRIBED, True),
        (Presence.LEAVING, True),
        (Presence.JOINING, False),
        (Presence.OUT, False),
    ],
)
def test_a_contact_is_in_the_list_while_it_is_a_member_of_any_status(
    presence: Presence, in_list: bool
) -> None:
    assert ContactState(presence, MEMBER).in_list is in_list


def test_the_reason_for_a_status_seen_names_it_in_english() -> None:
    assert (
        seen_not_subscribed(S.COMPLAINED)
        .english()
        .startswith("Ecomail last reported the contact as marked as spam:")
    )


@pytest.mark.parametrize(
    ("number", "status"),
    [
        (None, None),
        (1, S.SUBSCRIBED),
        (4, S.HARD_BOUNCED),
        (6, S.UNCONFIRMED),
        (0, None),
        (9, None),
    ],
)
def test_a_stored_status_number_is_read_as_ecomails_status(
    number: int | None, status: SubscriptionStatus | None
) -> None:
    assert status_of(number) is status
