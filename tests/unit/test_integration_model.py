"""The Ecomail integration's rules: what an API key may look like, which fields a list needs,
and what the tracker events carry."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ellity.domain.model.contact import FIELD_NAMES, FIELD_TYPES
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.integration import (
    MAX_API_KEY_LENGTH,
    Backfill,
    EcomailIntegration,
    clean_api_key,
    credit_event_value,
    expiry_event_value,
    field_problems,
    key_hint,
    pin_event_value,
)
from ellity.domain.model.ledger import Entry, EntryKind, Expiration
from ellity.domain.model.money import Points

P = Points.parse
AT = datetime(2024, 3, 10, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pasted", "key"),
    [
        ("a1b2c3d4e5", "a1b2c3d4e5"),
        ("  a1b2c3d4e5\n", "a1b2c3d4e5"),  # copied with blanks around it
        ("\ta1b2-c3_d4.e5 ", "a1b2-c3_d4.e5"),
        ("k" * MAX_API_KEY_LENGTH, "k" * MAX_API_KEY_LENGTH),
    ],
)
def test_an_api_key_is_taken_as_pasted_without_surrounding_blanks(pasted: str, key: str) -> None:
    assert clean_api_key(pasted) == key


@pytest.mark.parametrize(
    "pasted",
    [
        "",
        "   ",
        "a1b2 c3d4",  # two words
        "klíč1234",  # not ASCII
        "a1b2\tc3d4",  # a control character inside
        "a1b2\x00c3d4",
        "k" * (MAX_API_KEY_LENGTH + 1),
    ],
)
def test_anything_else_is_not_an_api_key(pasted: str) -> None:
    with pytest.raises(InvalidInput):
        clean_api_key(pasted)


def test_an_empty_key_is_asked_for_and_a_wrong_one_is_explained() -> None:
    with pytest.raises(InvalidInput, match="Paste the API key"):
        clean_api_key(" ")
    with pytest.raises(InvalidInput, match="does not look like an Ecomail API key"):
        clean_api_key("two words")


def test_a_stored_key_is_shown_by_its_last_four_characters() -> None:
    assert key_hint("a1b2c3d4e5f6") == "e5f6"
    integration = EcomailIntegration(
        merchant_id=MerchantId(1),
        key_hint=key_hint("a1b2c3d4e5f6"),
        list_id=None,
        list_name="",
        active=False,
        activated_at=None,
        backfill=None,
        last_success_at=None,
    )
    assert integration.masked_key == "••••e5f6"


def test_a_backfill_is_marking_until_it_has_marked_every_customer() -> None:
    marking = Backfill(
        requested_at=AT, after_id=CustomerId(40), marked=40, finished_marking_at=None
    )
    assert marking.marking
    assert not Backfill(
        requested_at=AT, after_id=CustomerId(90), marked=88, finished_marking_at=AT
    ).marking


def test_a_list_with_every_field_of_the_right_type_has_no_problems() -> None:
    assert field_problems(dict(FIELD_TYPES)) == []
    assert field_problems({**FIELD_TYPES, "shop": "string", "city": "int"}) == []  # others: fine


def test_a_list_without_the_fields_misses_all_eleven_in_the_specifications_order() -> None:
    assert field_problems({}) == [f"{name} is missing" for name in FIELD_NAMES]
    assert len(FIELD_NAMES) == 11


def test_each_missing_field_and_each_field_of_another_type_is_named() -> None:
    found = {**FIELD_TYPES, "ellity_credit_num": "string", "ellity_last_change_date": "int"}
    del found["ellity_pin"]
    assert field_problems(found) == [
        "ellity_credit_num is of type string, not int",
        "ellity_pin is missing",
        "ellity_last_change_date is of type int, not date",
    ]


def test_a_credit_event_carries_points_as_decimal_strings_and_the_next_expiry() -> None:
    entry = Entry(
        kind=EntryKind.EARN,
        points=P("120.5"),
        at=AT,
        balance_after=P("1250"),
        note="Order 77",
        order_ref="77",
    )
    value = credit_event_value(
        entry, next_expiration=Expiration(on=date(2025, 3, 31), points=P("80.25"))
    )
    assert value == {
        "change": "120.50",
        "balance": "1250.00",
        "reason": "earn",
        "note": "Order 77",
        "order_ref": "77",
        "at": "2024-03-10T09:30:00+00:00",
        "next_expiration_date": "2025-03-31",
        "next_expiration_points": "80.25",
    }


def test_a_spend_is_a_negative_change_and_nothing_expiring_is_null() -> None:
    entry = Entry(kind=EntryKind.SPEND, points=P("-3"), at=AT, balance_after=P("0"))
    value = credit_event_value(entry, next_expiration=None)
    assert (value["change"], value["balance"], value["reason"]) == ("-3.00", "0.00", "spend")
    assert (value["note"], value["order_ref"]) == (None, None)
    assert (value["next_expiration_date"], value["next_expiration_points"]) == (None, None)


def test_a_pin_event_says_why_and_never_holds_the_pin() -> None:
    assert pin_event_value("regenerated", at=AT) == {
        "reason": "regenerated",
        "at": "2024-03-10T09:30:00+00:00",
    }


def test_an_expiry_event_says_how_many_points_expire_on_which_day() -> None:
    assert expiry_event_value(P("12.5"), date(2024, 4, 30), balance=P("100")) == {
        "points": "12.50",
        "expiration_date": "2024-04-30",
        "balance": "100.00",
    }
