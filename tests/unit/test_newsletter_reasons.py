"""Why a newsletter notification did what it did: each reason's clauses and values (what the
pages translate) and its English text (what logs, the CLI and the API keep)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ellity.domain.model.errors import Term
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.ledger import Ledger
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    NO_REWARD,
    NOTHING_HELD,
    TAKE_BACK_OFF,
    AddAttempt,
    RewardHold,
    SubscriptionChange,
    echo_of,
    own_subscription_reason,
    reward_subscription,
    take_back_reward,
)
from ellity.domain.model.reason import Clause, Joint, Reason, Value
from ellity.domain.services.newsletter_confirmation import (
    DOI_EXPIRED,
    DOI_WAITING,
    confirmation_problem,
)
from ellity.domain.services.newsletter_processing import SIGNUP_KEPT
from ellity.ports.marketing import Membership, SubscriptionStatus

P = Points.parse
NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
LATER = datetime(2024, 3, 13, 9, 0, tzinfo=UTC)


def clauses(reason: Reason) -> list[tuple[str, dict[str, Value], Joint]]:
    return [(part.template, part.values(), part.joint) for part in reason.parts]


def ledger(balance: str = "0") -> Ledger:
    book = Ledger(customer_id=CustomerId(1), policy=ExpiryPolicy(12, "Europe/Prague"))
    if P(balance).is_positive():
        book.earn(P(balance), at=NOW - timedelta(days=1))
    return book


# -- the rules' reasons --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "english"),
    [
        (NO_REWARD, "No newsletter reward is set (0 points)."),
        (TAKE_BACK_OFF, "Taking the reward back on unsubscribe is switched off."),
        (NOTHING_HELD, "The customer holds no newsletter reward to take back."),
    ],
)
def test_a_settings_reason_is_one_clause_without_values(reason: Reason, english: str) -> None:
    assert clauses(reason) == [(english, {}, Joint.SENTENCE)]
    assert reason.english() == str(reason) == english


def test_a_paid_reward_says_its_points_as_points() -> None:
    verdict = reward_subscription(RewardHold(), ledger(), reward=P("12.5"), at=NOW)
    assert clauses(verdict.reason) == [
        ("Paid %(points)s points.", {"points": P("12.5")}, Joint.SENTENCE)
    ]
    assert verdict.reason.english() == "Paid 12.50 points."


def test_a_held_reward_says_how_much_is_held() -> None:
    verdict = reward_subscription(RewardHold(P("1250")), ledger(), reward=P("50"), at=NOW)
    [(template, values, _)] = clauses(verdict.reason)
    assert values == {"points": P("1250")} and "%(points)s points to take back" in template
    assert verdict.reason.english() == (
        "The customer already holds the newsletter reward (1,250 points to take back): one"
        " reward at a time."
    )


@pytest.mark.parametrize(
    ("balance", "values", "english"),
    [
        (
            "50",
            {"taken": P("20.5")},
            "Deducted 20.50 points; the reward is released.",
        ),
        (
            "8",
            {"taken": P("8"), "wanted": P("20.5"), "left": P("12.5")},
            "Deducted 8 of 20.50 points (all the balance); 12.50 stay held and are taken with"
            " the next unsubscription.",
        ),
        (
            "0",
            {"wanted": P("20.5")},
            "The balance is 0: nothing could be taken back; 20.50 points stay held and are"
            " taken with the next unsubscription.",
        ),
    ],
)
def test_a_take_back_says_what_was_taken_and_what_stays_held(
    balance: str, values: dict[str, Value], english: str
) -> None:
    verdict = take_back_reward(RewardHold(P("20.5"), NOW), ledger(balance), take_back=True, at=NOW)
    [(_, got, _)] = clauses(verdict.reason)
    assert got == values
    assert verdict.reason.english() == english


# -- Ellity's echo -------------------------------------------------------------------------


def test_the_echo_keeps_the_attempt_as_an_instant() -> None:
    verdict = echo_of(AddAttempt(NOW), received_at=NOW, unsubscribed_since=False, subscribed_at=NOW)
    [(_, values, _)] = clauses(verdict.reason)
    assert values == {"attempted": NOW}
    assert verdict.reason.english() == (
        "Ellity's own add of this contact (attempted 2024-03-10 09:00:00 UTC): not a"
        " subscription by the customer; nothing paid, consent unchanged."
    )


@pytest.mark.parametrize(
    ("attempt", "received_at", "unsubscribed", "subscribed_at", "values", "english"),
    [
        (
            None,
            NOW,
            False,
            NOW,
            {},
            "The customer's own subscription (Ellity never tried to add this contact)",
        ),
        (
            AddAttempt(NOW),
            NOW - timedelta(seconds=1),
            False,
            NOW,
            {"attempted": NOW},
            "The customer's own subscription (notified before Ellity's add of this contact,"
            " attempted 2024-03-10 09:00:00 UTC)",
        ),
        (
            AddAttempt(NOW),
            NOW,
            True,
            NOW,
            {},
            "Subscribed again after unsubscribing",
        ),
        (
            AddAttempt(LATER),
            LATER,
            False,
            NOW,
            {"since": NOW, "attempted": LATER},
            "The customer's own subscription (Ecomail says since 2024-03-10 09:00:00 UTC,"
            " before Ellity's add of this contact, attempted 2024-03-13 09:00:00 UTC)",
        ),
        (
            AddAttempt(NOW, NOW, NOW),
            LATER,
            False,
            LATER,
            {"since": LATER},
            "Subscribed again after Ellity's add of this contact (Ecomail says since"
            " 2024-03-13 09:00:00 UTC)",
        ),
        (
            AddAttempt(NOW, NOW, NOW),
            LATER,
            False,
            NOW,
            {"attempted": NOW},
            "The same subscription as the echo of Ellity's add of this contact (attempted"
            " 2024-03-10 09:00:00 UTC), recorded already: nothing changed.",
        ),
    ],
)
def test_each_echo_verdict_keeps_its_instants_and_reads_as_before(
    *,
    attempt: AddAttempt | None,
    received_at: datetime,
    unsubscribed: bool,
    subscribed_at: datetime,
    values: dict[str, Value],
    english: str,
) -> None:
    verdict = echo_of(
        attempt,
        received_at=received_at,
        unsubscribed_since=unsubscribed,
        subscribed_at=subscribed_at,
    )
    [(_, got, _)] = clauses(verdict.reason)
    assert got == values
    assert verdict.reason.english() == english


def test_the_outcome_completes_why_the_subscription_is_the_customers_own() -> None:
    own = echo_of(None, received_at=NOW, unsubscribed_since=False, subscribed_at=NOW)
    paid = Reason("Paid %(points)s points.", points=P("50"))
    reason = own_subscription_reason(own, paid) + Reason("Consent recorded as granted.")
    assert [part.joint for part in reason.parts] == [
        Joint.SENTENCE,
        Joint.COMPLETION,
        Joint.SENTENCE,
    ]
    assert reason.english() == (
        "The customer's own subscription (Ellity never tried to add this contact): paid 50"
        " points. Consent recorded as granted."
    )


def test_a_completion_keeps_its_clauses_whatever_comes_first() -> None:
    """``completed_by`` and ``+`` set only the joint of the first clause they add."""
    reason = Reason("Why").completed_by(Reason("A.") + Reason("B."))
    assert [part.joint for part in reason.parts] == [
        Joint.SENTENCE,
        Joint.COMPLETION,
        Joint.SENTENCE,
    ]
    assert reason.english() == "Why: a. B."


# -- Ecomail's confirmation and the sign-up ------------------------------------------------


def test_ecomails_status_is_a_term_the_pages_translate() -> None:
    membership = Membership(
        email="ann@example.cz",
        status=SubscriptionStatus.COMPLAINED,
        subscribed_at=None,
        unsubscribed_at=None,
    )
    reason = confirmation_problem(SubscriptionChange.SUBSCRIBED, membership)
    assert reason is not None
    [(_, values, _)] = clauses(reason)
    assert values == {"status": Term("marked as spam"), "wanted": Term("subscribed")}
    assert all(isinstance(v, Term) for v in values.values())
    assert reason.english() == (
        "Ecomail says the contact is marked as spam in the list now, not subscribed: nothing"
        " changed."
    )


@pytest.mark.parametrize(
    ("reason", "days", "english"),
    [
        (
            DOI_WAITING,
            7,
            "Ecomail says the sign-up is not confirmed yet (double opt-in): Ellity asks again"
            " until the person confirms it, for up to 7 days.",
        ),
        (
            DOI_EXPIRED,
            7,
            "The sign-up was not confirmed within 7 days (double opt-in): nothing changed.",
        ),
        (
            SIGNUP_KEPT,
            30,
            "No customer has this email yet: the sign-up is kept, and paid if a customer with"
            " this email is created within 30 days.",
        ),
    ],
)
def test_a_waiting_reason_keeps_its_days_as_a_number(
    reason: Reason, days: int, english: str
) -> None:
    [(_, values, _)] = clauses(reason)
    assert values == {"days": days}
    assert reason.english() == english


# -- kept as JSON --------------------------------------------------------------------------


def test_a_reason_is_read_back_from_its_json_with_every_kind_of_value() -> None:
    reason = Reason(
        "Own (since %(since)s, list %(list)s, %(days)s days, %(s)s s, %(status)s)",
        since=datetime(2024, 3, 10, 9, 30, 15, tzinfo=UTC),
        list="0042",
        days=30,
        s=2.5,
        status=Term("unsubscribed"),
    ).completed_by(Reason("Paid %(points)s points.", points=P("-1250.5"))) + Reason.stored(
        "Kept as it was."
    )
    again = Reason.from_json(reason.to_json())
    assert again == reason
    assert [type(v) for _, v in again.parts[0].params] == [datetime, str, int, float, Term]
    assert again.english() == (
        "Own (since 2024-03-10 09:30:15 UTC, list 0042, 30 days, 2.5 s, unsubscribed): paid"
        " -1,250.50 points. Kept as it was."
    )


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{}",
        '[{"params": {}}]',
        '[{"template": 1}]',
        '[{"template": "x", "params": {"a": {"y": 1}}}]',
    ],
)
def test_json_that_is_no_reason_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a stored reason"):
        Reason.from_json(text)


def test_a_reason_stored_as_english_only_is_one_untranslated_clause() -> None:
    reason = Reason.stored("Deducted 20.50 points; the reward is released.")
    assert reason.parts == (
        Clause("Deducted 20.50 points; the reward is released.", translated=False),
    )
    assert reason.english() == "Deducted 20.50 points; the reward is released."


def test_others_words_are_clipped_as_stored_errors_are() -> None:
    long = "Ecomail  said\n" + "x" * 2000
    reason = Reason("Ecomail could not confirm it yet: %(why)s", why=long, points=P("1"))
    [(_, values, _)] = clauses(reason.clipped())
    why = values["why"]
    assert isinstance(why, str) and why.startswith("Ecomail said x") and len(why) == 1000
    assert values["points"] == P("1")
