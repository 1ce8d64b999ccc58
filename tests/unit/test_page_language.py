"""The pages' language helpers: the browser's wish, translated domain errors with their values
formatted for the reader, ledger notes, the charts' texts."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ellity.domain.model.activity import DayTotals
from ellity.domain.model.errors import InsufficientPoints, InvalidInput, Term
from ellity.domain.model.ledger import Entry, EntryKind
from ellity.domain.model.money import Points
from ellity.domain.model.staff import LoginThrottled
from ellity.domain.services.newsletter_intake import WebhookUnreadable
from ellity.web.i18n import browser_language, date_text, datetime_text, ui_language
from ellity.web.pages.charts import history_chart
from ellity.web.pages.common import entry_note
from ellity.web.pages.errors import translated_error
from ellity.web.pages.integration import error_message

NBSP = "\u00a0"
AT = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("", "cs"),
        ("cs", "cs"),
        ("en-US,en;q=0.9", "en"),
        ("de;q=1, en;q=0.4, cs;q=0.6", "cs"),
        ("de, en;q=0", "cs"),  # q=0: not wanted at all
        ("fr-CA, en;q=bad", "cs"),
        ("sk, EN-gb", "en"),
    ],
)
def test_before_a_log_in_the_browser_chooses_czech_unless_it_prefers_english(
    header: str, language: str
) -> None:
    assert browser_language(header) == language


def test_a_stored_language_the_pages_do_not_speak_means_czech() -> None:
    assert ui_language("en") == "en"
    assert ui_language("de") == "cs"
    assert ui_language(None) == "cs"


def test_insufficient_points_reads_in_the_pages_language_with_its_numbers_formatted() -> None:
    error = InsufficientPoints(available=Points(16250), wanted=Points(9999900))
    assert error.message == "The customer holds 162.50 points; 99,999 points cannot be taken."
    assert translated_error(error, "en") == (
        "The customer holds 162.50 points; 99,999 points cannot be taken."
    )
    assert translated_error(error, "cs") == (
        f"Zákazník má 162,50 bodů; 99{NBSP}999 bodů nelze odebrat."
    )


def test_a_term_in_a_message_is_translated_too() -> None:
    error = InvalidInput(
        "The %(what)s must not contain control characters.", what=Term("first name")
    )
    assert error.message == "The first name must not contain control characters."
    assert translated_error(error, "cs") == "Pole „jméno“ nesmí obsahovat řídicí znaky."


@pytest.mark.parametrize(
    ("minutes", "english", "czech"),
    [(1, "1 minute", "1 minutu"), (3, "3 minutes", "3 minuty"), (15, "15 minutes", "15 minut")],
)
def test_a_login_block_says_its_minutes_in_either_language(
    minutes: int, english: str, czech: str
) -> None:
    error = LoginThrottled(retry_at=AT.replace(minute=minutes), now=AT)
    assert f"blocked for {english};" in error.message
    shown = czech.replace(" ", NBSP)  # a number and its unit stay on one line
    assert f"zablokované na {shown};" in translated_error(error, "cs")


def test_a_message_without_a_translation_is_shown_as_it_is() -> None:
    error = InvalidInput("Something nobody translated.")
    assert translated_error(error, "cs") == "Something nobody translated."


def test_older_newsletter_entries_hide_their_english_note_but_staff_notes_stay() -> None:
    def entry(kind: EntryKind, note: str | None) -> Entry:
        return Entry(kind, Points(100), AT, Points(100), note=note)

    assert entry_note(entry(EntryKind.NEWSLETTER_REWARD, "Subscribed to the newsletter")) == ""
    assert (
        entry_note(entry(EntryKind.NEWSLETTER_DEDUCTION, "Unsubscribed from the newsletter")) == ""
    )
    assert entry_note(entry(EntryKind.NEWSLETTER_REWARD, None)) == ""
    assert entry_note(entry(EntryKind.ADJUST, "Subscribed to the newsletter")) == (
        "Subscribed to the newsletter"  # what staff wrote is never hidden
    )
    assert entry_note(entry(EntryKind.EARN, "dárek")) == "dárek"


def test_dates_and_times_follow_the_language_in_the_merchants_time_zone() -> None:
    assert date_text(date(2024, 3, 10), "cs") == f"10.{NBSP}3.{NBSP}2024"  # one line
    assert date_text(date(2024, 3, 10), "en") == "Mar 10, 2024"
    assert datetime_text(AT, "Europe/Prague", "cs") == f"10.{NBSP}3.{NBSP}2024 10:00"
    assert datetime_text(AT, "Europe/Prague", "en") == "Mar 10, 2024, 10:00"


def test_the_charts_speak_the_pages_language() -> None:
    days = [
        DayTotals(date(2024, 3, 9), Points(0), Points(0), Points(0)),
        DayTotals(date(2024, 3, 10), Points(125050), Points(0), Points(0)),
    ]
    czech = history_chart(days, "cs")
    assert czech.title == "Body po dnech"
    assert czech.columns[1].title == (
        f"10.{NBSP}3.{NBSP}2024: připsáno 1 250,50, uplatněno 0, propadlo 0"
    )
    assert {"10. 3.", "+1 250,50"} <= {label.text for label in czech.labels}
    english = history_chart(days, "en")
    assert english.title == "Points per day"
    assert english.columns[1].title == "Mar 10, 2024: issued 1,250.50, spent 0, expired 0"
    assert "Mar 10" in [label.text for label in english.labels]


def test_why_the_webhook_url_is_not_shown_reads_in_czech() -> None:
    problem = WebhookUnreadable(
        "The webhook URL cannot be decrypted (was ELLITY_SECRET_KEY changed?): make a new"
        " one and paste it into the Ecomail list's settings."
    )
    assert error_message(problem, "cs").startswith("Adresu webhooku nejde dešifrovat")
    assert error_message(problem, "en") == problem.message
