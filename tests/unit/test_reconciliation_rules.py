"""What a reconciliation run finds wrong with a member of the list (``judge``), and when the
schedule asks for a run."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.contact import cleared_fields
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.reconciliation import (
    CustomerFacts,
    Finding,
    Member,
    RepairKind,
    Schedule,
    SeenStatus,
    Terms,
    carries_values,
    differing_fields,
    judge,
    parse_schedule,
    scheduled_run_due,
)

ACTIVATED = datetime(2026, 1, 1, tzinfo=UTC)
LATER = ACTIVATED + timedelta(days=30)

FIELDS = {
    **cleared_fields(),
    "ellity_credit": "1 250,50",
    "ellity_credit_num": 1250,
    "ellity_registered": "registered",
    "ellity_next_expiration_date": "2026-12-31",
    "ellity_referral_code": "ABC234",
    "ellity_referral_link": "https://shop.cz/?ref=ABC234",
}

FACTS = CustomerFacts(
    customer_id=CustomerId(7),
    fields=FIELDS,
    consent=MarketingConsent.GRANTED,
    consent_changed_at=ACTIVATED,
    write_pending=False,
    added_by_ellity=True,
    reward_held=False,
    notification_pending=False,
    signup_unconfirmed=False,
)
TERMS = Terms(reward_paid=True, listening_since=ACTIVATED)


def member(status: SeenStatus = SeenStatus.SUBSCRIBED, **changes: object) -> Member:
    seen = {
        "email": "ann@shop.cz",
        "status": status,
        # as Ecomail hands values back: numbers as text, an empty date as null
        "fields": {**{k: str(v) for k, v in FIELDS.items()}, "ellity_last_change_date": None},
        "subscribed_at": LATER,
        "unsubscribed_at": None,
    }
    seen.update(changes)
    return Member(**seen)  # type: ignore[arg-type]


def facts(**changes: object) -> CustomerFacts:
    return dataclasses.replace(FACTS, **changes)  # type: ignore[arg-type]


def kinds(found: list[Finding]) -> list[RepairKind]:
    return [f.kind for f in found]


def test_a_member_whose_fields_match_and_whom_ellity_added_needs_nothing() -> None:
    assert judge(member(), FACTS, TERMS) == []


def test_values_handed_back_as_text_or_null_compare_equal_to_what_ellity_writes() -> None:
    assert differing_fields({**FIELDS, "ellity_credit_num": "1250"}, FIELDS) == []
    assert differing_fields({}, cleared_fields()) == []  # Ecomail's [] for no fields
    assert differing_fields({"ellity_credit_num": None}, {"ellity_credit_num": 0}) == []


def test_a_field_edited_by_hand_is_rewritten_and_named_in_the_reason() -> None:
    edited = member(fields={**FIELDS, "ellity_credit": "9 999"})
    found = judge(edited, FACTS, TERMS)
    assert kinds(found) == [RepairKind.FIELDS]
    assert "ellity_credit" in found[0].reason.english()
    assert "ellity_credit_num" not in found[0].reason.english()


def test_a_field_missing_in_ecomail_is_drift() -> None:
    fields = {k: v for k, v in FIELDS.items() if k != "ellity_referral_link"}
    assert kinds(judge(member(fields=fields), FACTS, TERMS)) == [RepairKind.FIELDS]


def test_a_write_already_waiting_is_not_drift() -> None:
    edited = member(fields={**FIELDS, "ellity_credit": "9 999"})
    assert judge(edited, facts(write_pending=True), TERMS) == []


@pytest.mark.parametrize(
    "status", [SeenStatus.UNSUBSCRIBED, SeenStatus.BOUNCED, SeenStatus.COMPLAINED]
)
def test_a_member_gone_while_consent_is_granted_is_an_unsubscription(status: SeenStatus) -> None:
    gone = member(status, unsubscribed_at=LATER)
    assert kinds(judge(gone, FACTS, TERMS)) == [RepairKind.UNSUBSCRIBED]


def test_an_unsubscribed_member_whose_consent_is_refused_already_needs_nothing() -> None:
    gone = member(SeenStatus.UNSUBSCRIBED, unsubscribed_at=LATER)
    refused = facts(consent=MarketingConsent.REFUSED)
    assert judge(gone, refused, TERMS) == []


def test_an_unsubscribed_member_with_unknown_consent_is_not_a_change_of_mind() -> None:
    gone = member(SeenStatus.UNSUBSCRIBED, unsubscribed_at=LATER)
    assert judge(gone, facts(consent=MarketingConsent.UNKNOWN), TERMS) == []


def test_a_refused_customer_still_holding_a_reward_is_not_unsubscribed_again() -> None:
    gone = member(SeenStatus.UNSUBSCRIBED, unsubscribed_at=LATER)
    held = facts(consent=MarketingConsent.REFUSED, reward_held=True)
    assert judge(gone, held, TERMS) == []


def test_consent_given_after_the_unsubscription_is_the_newer_wish() -> None:
    gone = member(SeenStatus.UNSUBSCRIBED, unsubscribed_at=LATER)
    newer = facts(consent_changed_at=LATER + timedelta(minutes=1))
    assert judge(gone, newer, TERMS) == []


def test_a_notification_waiting_to_be_processed_is_left_to_it_but_fields_are_still_checked() -> (
    None
):
    gone = member(
        SeenStatus.UNSUBSCRIBED, unsubscribed_at=LATER, fields={**FIELDS, "ellity_pin": "1"}
    )
    assert kinds(judge(gone, facts(notification_pending=True), TERMS)) == [RepairKind.FIELDS]


def test_a_sign_up_without_a_notification_is_paid_once_when_nothing_is_held() -> None:
    signed = facts(added_by_ellity=False, consent=MarketingConsent.UNKNOWN)
    assert kinds(judge(member(), signed, TERMS)) == [RepairKind.SIGNUP]
    held = facts(added_by_ellity=False, reward_held=True)
    assert judge(member(), held, TERMS) == []


def test_a_sign_up_without_ellity_values_is_one_repair_its_processing_writes_them() -> None:
    signed = facts(added_by_ellity=False, consent=MarketingConsent.UNKNOWN)
    assert kinds(judge(member(fields={}), signed, TERMS)) == [RepairKind.SIGNUP]


def test_a_confirmed_double_opt_in_is_told_apart_from_a_lost_notification() -> None:
    doi = facts(added_by_ellity=False, signup_unconfirmed=True)
    assert kinds(judge(member(), doi, TERMS)) == [RepairKind.CONFIRMED]


def test_a_sign_up_with_consent_granted_and_no_reward_set_needs_nothing() -> None:
    signed = facts(added_by_ellity=False)
    no_reward = dataclasses.replace(TERMS, reward_paid=False)
    assert judge(member(), signed, no_reward) == []
    unknown = facts(added_by_ellity=False, consent=MarketingConsent.UNKNOWN)
    assert kinds(judge(member(), unknown, no_reward)) == [RepairKind.SIGNUP]


def test_ellitys_own_add_is_never_a_sign_up() -> None:
    assert judge(member(), facts(consent=MarketingConsent.UNKNOWN), TERMS) == []


def test_a_member_from_before_the_activation_is_no_lost_sign_up() -> None:
    signed = facts(added_by_ellity=False, consent=MarketingConsent.UNKNOWN)
    assert judge(member(subscribed_at=ACTIVATED - timedelta(days=1)), signed, TERMS) == []
    assert judge(member(subscribed_at=None), signed, TERMS) == []


def test_a_refusal_after_the_subscription_stands_and_a_sign_up_after_the_refusal_counts() -> None:
    refused_later = facts(
        added_by_ellity=False,
        consent=MarketingConsent.REFUSED,
        consent_changed_at=LATER + timedelta(hours=1),
    )
    assert judge(member(), refused_later, TERMS) == []
    refused_before = dataclasses.replace(refused_later, consent_changed_at=ACTIVATED)
    assert kinds(judge(member(), refused_before, TERMS)) == [RepairKind.SIGNUP]


def test_an_unconfirmed_member_needs_nothing_but_its_fields() -> None:
    signed = facts(added_by_ellity=False, consent=MarketingConsent.UNKNOWN)
    assert judge(member(SeenStatus.NOT_CONFIRMED), signed, TERMS) == []


def test_a_member_with_ellity_values_and_no_customer_is_cleared() -> None:
    assert kinds(judge(member(), None, TERMS)) == [RepairKind.CLEARED]


def test_a_member_without_ellity_values_and_no_customer_needs_nothing() -> None:
    assert judge(member(fields={}), None, TERMS) == []
    assert judge(member(fields={**cleared_fields(), "other": "x"}), None, TERMS) == []
    assert not carries_values({"ellity_credit_num": "0", "ellity_credit": ""})


def test_an_old_address_the_sync_still_clears_is_left_to_it() -> None:
    assert judge(member(), None, TERMS, old_address=True) == []


@pytest.mark.parametrize(
    ("schedule", "since", "due"),
    [
        (Schedule.WEEKLY, timedelta(days=6, hours=23), False),
        (Schedule.WEEKLY, timedelta(days=7), True),
        (Schedule.DAILY, timedelta(hours=23), False),
        (Schedule.DAILY, timedelta(days=1), True),
        (Schedule.OFF, timedelta(days=365), False),
    ],
)
def test_the_schedule_asks_for_a_run_a_period_after_the_last(
    schedule: Schedule, since: timedelta, due: bool
) -> None:
    last = LATER
    assert (
        scheduled_run_due(
            schedule, last_requested_at=last, activated_at=ACTIVATED, now=last + since
        )
        is due
    )


def test_the_first_scheduled_run_comes_a_period_after_the_activation() -> None:
    now = ACTIVATED + timedelta(days=7)
    assert scheduled_run_due(
        Schedule.WEEKLY, last_requested_at=None, activated_at=ACTIVATED, now=now
    )
    assert not scheduled_run_due(
        Schedule.WEEKLY, last_requested_at=None, activated_at=ACTIVATED, now=now - timedelta(1)
    )


def test_the_schedule_setting_is_parsed_with_a_clear_error() -> None:
    assert parse_schedule(" Daily ") is Schedule.DAILY
    with pytest.raises(InvalidInput, match="weekly, daily, off"):
        parse_schedule("hourly")
