"""What a customer search means, index ranges for prefixes, and local days for the dashboard."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ellity.domain.model.activity import day_periods
from ellity.domain.model.customer import email_domain_key, name_key
from ellity.domain.model.customer_query import parse_customer_query, prefix_end
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.text import search_fold


def shape(text: str) -> tuple[list[list[tuple[str, str]]], str | None]:
    query = parse_customer_query(text)
    alternatives: list[list[tuple[str, str]]] = [
        [(p.field, p.text) for p in alt.prefixes] for alt in query.alternatives
    ]
    return alternatives, query.referral_code


@pytest.mark.parametrize(
    ("text", "alternatives", "code"),
    [
        ("", [], None),
        ("   ", [], None),
        ("Ann@Ex", [[("email", "ann@ex")]], None),
        (
            "Nov",
            [[("last_name", "nov")], [("first_name", "nov")], [("email", "nov")]],
            None,
        ),
        (
            "  Jan   Novák ",
            [
                [("last_name", "novak"), ("first_name", "jan")],
                [("last_name", "jan"), ("first_name", "novak")],
                [("last_name", "jan novak")],
            ],
            None,
        ),
        (
            "RŮŽ",
            [[("last_name", "ruz")], [("first_name", "ruz")], [("email", "ruz")]],
            None,
        ),
        ("@Kavovar.CZ", [[("email_domain", "kavovar.cz")]], None),
        ("@", [[("email_domain", "")]], None),
        ("Jiří@Example", [[("email", "jiří@example")]], None),
        (
            "ab2cd3ef",
            [[("last_name", "ab2cd3ef")], [("first_name", "ab2cd3ef")], [("email", "ab2cd3ef")]],
            "AB2CD3EF",
        ),
        (
            "AB0CD3EF",
            [[("last_name", "ab0cd3ef")], [("first_name", "ab0cd3ef")], [("email", "ab0cd3ef")]],
            None,
        ),
        (
            "Straße",
            [[("last_name", "strasse")], [("first_name", "strasse")], [("email", "strasse")]],
            None,
        ),
    ],
)
def test_the_search_text_decides_what_is_searched(
    text: str, alternatives: list[list[tuple[str, str]]], code: str | None
) -> None:
    assert shape(text) == (alternatives, code)


@pytest.mark.parametrize("text", ["ann\x00", "\x00", "Nov\x1bák", "a\x7f", "Jan \x01 Novák"])
def test_a_search_with_a_control_character_is_refused_with_a_message(text: str) -> None:
    with pytest.raises(InvalidInput, match="must not contain control characters"):
        parse_customer_query(text)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Růžičková", "ruzickova"),
        ("ŠTĚPÁN Ďurďa", "stepan durda"),
        ("Straße", "strasse"),
        ("Łukasz", "łukasz"),  # no accent to drop: as typed, case-folded
        ("e\u0301", "e"),  # a combining accent typed apart
    ],
)
def test_searches_and_name_keys_drop_case_and_accents(text: str, folded: str) -> None:
    assert search_fold(text) == folded
    assert name_key(text) == folded


def test_the_domain_key_is_the_case_folded_part_after_the_at() -> None:
    assert email_domain_key("Jana.Novakova@Kavovar.CZ") == "kavovar.cz"
    assert email_domain_key(None) is None


def test_tabs_and_line_breaks_in_a_search_count_as_spaces() -> None:
    assert shape("\tJan\r\nNovák\n") == shape("Jan Novák")


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("ann", "ano"),
        ("a", "b"),
        ("az", "a{"),
        ("\U0010ffff", None),
        ("a\U0010ffff", "b"),
        ("\ud7ff", "\ue000"),
    ],
)
def test_a_prefix_range_ends_just_above_every_key_that_starts_with_it(
    prefix: str, end: str | None
) -> None:
    assert prefix_end(prefix) == end


def test_local_days_follow_midnights_across_the_change_to_summer_time() -> None:
    days = day_periods(date(2024, 3, 31), 2, "Europe/Prague")
    assert [(d.day, d.start, d.end) for d in days] == [
        (
            date(2024, 3, 30),
            datetime(2024, 3, 29, 23, 0, tzinfo=UTC),
            datetime(2024, 3, 30, 23, 0, tzinfo=UTC),
        ),
        (  # 23 hours long
            date(2024, 3, 31),
            datetime(2024, 3, 30, 23, 0, tzinfo=UTC),
            datetime(2024, 3, 31, 22, 0, tzinfo=UTC),
        ),
    ]
