"""A newsletter notification's reason on the pages: each clause in the page's language, its
points and instants formatted for the reader, Ecomail's words and ids as they are."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import AddAttempt, SubscriptionChange, echo_of
from ellity.domain.model.reason import Reason
from ellity.domain.services.newsletter_confirmation import confirmation_problem
from ellity.ports.marketing import BudgetExhausted, BudgetHold, Membership, SubscriptionStatus
from ellity.web.i18n import NBSP, reason_text

NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
PRAGUE = "Europe/Prague"


def shown(reason: Reason, language: str) -> str:
    return reason_text(reason, language, time_zone=PRAGUE).replace(NBSP, " ")


def test_an_instant_is_shown_in_the_merchants_time_zone_and_the_pages_format() -> None:
    echo = echo_of(AddAttempt(NOW), received_at=NOW, unsubscribed_since=False, subscribed_at=NOW)
    assert shown(echo.reason, "cs") == (
        "Kontakt do seznamu přidalo samo Ellity (pokus 10. 3. 2024 10:00): zákazník se"
        " nepřihlásil sám, proto se nic nevyplácí a souhlas se nemění."
    )
    assert shown(echo.reason, "en") == (
        "Ellity's own add of this contact (attempted Mar 10, 2024, 10:00): not a subscription"
        " by the customer; nothing paid, consent unchanged."
    )


def test_points_follow_the_pages_number_format_and_never_break() -> None:
    paid = Reason("Paid %(points)s points.", points=Points.parse("1250.5"))
    assert reason_text(paid, "cs", time_zone=PRAGUE) == f"Vyplaceno bodů: 1{NBSP}250,50."
    assert reason_text(paid, "en", time_zone=PRAGUE) == "Paid 1,250.50 points."


def test_ecomails_statuses_are_translated_as_terms() -> None:
    membership = Membership(
        email="ann@example.cz",
        status=SubscriptionStatus.COMPLAINED,
        subscribed_at=None,
        unsubscribed_at=None,
    )
    reason = confirmation_problem(SubscriptionChange.SUBSCRIBED, membership)
    assert reason is not None
    assert shown(reason, "cs") == (
        "Podle Ecomailu má kontakt v seznamu teď stav „stížnost na spam“, ne „přihlášení“:"
        " nic se nezměnilo."
    )


def test_a_completing_clause_follows_the_languages_joint_with_its_first_letter_lowered() -> None:
    own = echo_of(None, received_at=NOW, unsubscribed_since=False, subscribed_at=NOW)
    reason = own.reason.completed_by(Reason("Paid %(points)s points.", points=Points(5000)))
    reason += Reason("Consent was granted already.")
    assert shown(reason, "cs") == (
        "Zákazník se přihlásil sám (Ellity se ho do seznamu nikdy nepokusilo přidat) – vyplaceno"
        " bodů: 50. Souhlas už byl udělený dřív."
    )
    assert shown(reason, "en") == reason.english()


@pytest.mark.parametrize(
    ("reason", "czech"),
    [
        (
            Reason(
                "Processing took longer than %(seconds)s seconds; it is tried again.",
                seconds=2.5,
            ),
            "Zpracování trvalo déle než 2,5 s; zkusí se znovu.",
        ),
        (
            Reason("Ecomail refused to confirm it (%(why)s): nothing changed.", why="1,5 MB max"),
            "Ecomail potvrzení odmítl (1,5 MB max): nic se nezměnilo.",
        ),
        (
            Reason(
                "The notification is about another list (id %(other)s); the integration uses"
                " the list %(list)s.",
                other="12345",
                list="7",
            ),
            "Oznámení se týká jiného seznamu (id 12345); propojení používá seznam 7.",
        ),
        (
            Reason.stored("Paid 50 points. Consent recorded as granted."),
            "Paid 50 points. Consent recorded as granted.",
        ),
    ],
)
def test_measures_are_formatted_while_ids_others_words_and_old_texts_stay_as_they_are(
    reason: Reason, czech: str
) -> None:
    assert shown(reason, "cs") == czech


@pytest.mark.parametrize("hold", list(BudgetHold))
def test_a_wait_for_the_request_budget_says_what_the_limiter_says(hold: BudgetHold) -> None:
    """Stored in English as the limiter words it; on a Czech page in Czech, with its seconds."""
    exhausted = BudgetExhausted(retry_after=12.2, hold=hold)
    reason = exhausted.reason
    assert reason.english() == str(exhausted)
    czech = shown(reason, "cs")
    assert "13 s" in czech
    assert czech != reason.english()
