"""Customers: cleaning what the shop sends, registration and PINs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ellity.domain.model.customer import (
    Customer,
    clean_email,
    clean_name,
    clean_shop_customer_id,
    email_key,
)
from ellity.domain.model.errors import InvalidInput, RegisteredCustomerHasNoPin
from ellity.domain.model.ids import MerchantId
from tests.fakes import FakeRandom

CREATED = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
LATER = CREATED + timedelta(days=1)


def anonymous(pin: str = "123456") -> Customer:
    return Customer(
        merchant_id=MerchantId(1),
        referral_code="ABCD2345",
        created_at=CREATED,
        updated_at=CREATED,
        pin=pin,
    )


@pytest.mark.parametrize(
    ("given", "cleaned"),
    [
        ("ann@example.cz", "ann@example.cz"),
        ("  Ann.Novak@Example.CZ ", "Ann.Novak@Example.CZ"),
        ("a+tag@sub.example.com", "a+tag@sub.example.com"),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_emails_are_trimmed_and_blank_means_none(given: str | None, cleaned: str | None) -> None:
    assert clean_email(given) == cleaned


@pytest.mark.parametrize(
    "given",
    [
        "ann",
        "ann@",
        "@example.cz",
        "ann@example",
        "ann @example.cz",
        "a@b@c.cz",
        "x" * 250 + "@a.cz",
    ],
)
def test_malformed_emails_are_refused(given: str) -> None:
    with pytest.raises(InvalidInput):
        clean_email(given)


@pytest.mark.parametrize(
    ("given", "folded_length"),
    [
        ("ß" * 125 + "@x.cz", 255),  # 130 characters; "ß" folds to "ss"
        ("ß" * 127 + "@x.cz", 259),
        ("ﬃ" * 84 + "@x.cz", 257),  # "ﬃ" folds to "ffi"
        ("a" * 230 + "İ" * 10 + "@x.cz", 255),  # "İ" folds to "i̇", two characters
    ],
)
def test_an_email_whose_case_folded_form_is_too_long_is_refused_with_its_length(
    given: str, folded_length: int
) -> None:
    assert len(given) <= 254 < len(given.casefold()) == folded_length
    with pytest.raises(InvalidInput, match=f"it has {folded_length} characters.*at most 254"):
        clean_email(given)


@pytest.mark.parametrize(
    "given", ["ß" * 124 + "@x.cz", "ﬃ" * 83 + "@x.cz", "S" * 249 + "@x.cz", "a" * 248 + "@x.cz"]
)
def test_an_email_that_fits_also_when_case_folded_is_kept_as_typed(given: str) -> None:
    assert clean_email(given) == given
    assert len(email_key(given) or "") <= 254


@pytest.mark.parametrize(
    ("a", "b"), [("Ann@Example.CZ", "ann@example.cz"), ("STRASSE@x.de", "strasse@x.de")]
)
def test_emails_compare_case_insensitively(a: str, b: str) -> None:
    assert email_key(a) == email_key(b)
    assert email_key(None) is None


def test_names_are_trimmed_and_missing_names_are_empty() -> None:
    assert clean_name("  Anna ", "first name") == "Anna"
    assert clean_name(None, "first name") == ""


@pytest.mark.parametrize("given", ["x" * 101, "Ann\x00", "Ann\nNovak", "An\tn"])
def test_overlong_names_and_names_with_control_characters_are_refused(given: str) -> None:
    with pytest.raises(InvalidInput):
        clean_name(given, "first name")


@pytest.mark.parametrize(
    ("given", "cleaned"),
    [(" 42 ", "42"), ("", None), ("  ", None), (None, None), ("x" * 100, "x" * 100)],
)
def test_shop_customer_ids_are_trimmed_and_blank_means_none(
    given: str | None, cleaned: str | None
) -> None:
    assert clean_shop_customer_id(given) == cleaned


def test_an_overlong_shop_customer_id_is_refused() -> None:
    with pytest.raises(InvalidInput):
        clean_shop_customer_id("x" * 101)


def test_registering_drops_the_pin() -> None:
    customer = anonymous()
    assert customer.register(at=LATER)
    assert (customer.registered, customer.pin, customer.updated_at) == (True, None, LATER)


def test_registering_a_registered_customer_changes_nothing() -> None:
    customer = anonymous()
    customer.register(at=LATER)
    assert not customer.register(at=LATER + timedelta(hours=1))
    assert customer.updated_at == LATER


def test_a_customer_made_anonymous_again_gets_a_new_pin() -> None:
    customer = anonymous()
    customer.register(at=LATER)
    assert customer.make_anonymous(FakeRandom(script=[4217]).randbelow, at=LATER)
    assert (customer.registered, customer.pin) == (False, "004217")
    assert not customer.make_anonymous(FakeRandom().randbelow, at=LATER)
    assert customer.pin == "004217"


def test_regenerating_a_pin_always_gives_a_different_one() -> None:
    customer = anonymous(pin="111111")
    pin = customer.regenerate_pin(FakeRandom(script=[111111, 111111, 222222]).randbelow, at=LATER)
    assert pin == customer.pin == "222222"
    assert customer.updated_at == LATER


def test_a_registered_customer_cannot_have_a_pin_regenerated() -> None:
    customer = anonymous()
    customer.register(at=LATER)
    with pytest.raises(RegisteredCustomerHasNoPin):
        customer.regenerate_pin(FakeRandom().randbelow, at=LATER)
    assert customer.pin is None


def test_a_customers_email_key_is_case_insensitive() -> None:
    customer = anonymous()
    customer.email = "Ann@Example.CZ"
    assert customer.email_key == email_key("ann@example.cz")


@pytest.mark.parametrize(
    ("registered", "old", "new", "new_pin"),
    [
        pytest.param(False, "ann@example.cz", "anna@example.cz", True, id="anonymous-moves"),
        pytest.param(False, "ann@exmaple.cz", "ann@example.cz", True, id="typo-fixed"),
        pytest.param(False, "Ann@Example.cz", "ann@example.cz", False, id="only-the-case"),
        pytest.param(False, "ann@example.cz", "ann@example.cz", False, id="the-same"),
        pytest.param(False, None, "ann@example.cz", False, id="a-first-address"),
        pytest.param(True, "ann@example.cz", "anna@example.cz", False, id="registered-moves"),
    ],
)
def test_an_email_change_gives_only_an_anonymous_customer_who_moves_a_new_pin(
    registered: bool, old: str | None, new: str, new_pin: bool
) -> None:
    customer = anonymous(pin="111111")
    customer.email = old
    if registered:
        customer.register(at=CREATED)
    pin_before = customer.pin
    assert customer.change_email(new, FakeRandom(script=[222222]).randbelow, at=LATER) is new_pin
    assert customer.email == new
    assert (customer.pin != pin_before) is new_pin
    assert customer.pin == ("222222" if new_pin else pin_before)
    assert customer.updated_at == (CREATED if old == new else LATER)
