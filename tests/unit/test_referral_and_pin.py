"""PINs (six digits, leading zeros kept) and referral codes and links."""

from __future__ import annotations

import pytest

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.pin import PIN_DIGITS, generate_pin
from ellity.domain.model.referral import (
    ALPHABET,
    CODE_LENGTH,
    DEFAULT_LINK_TEMPLATE,
    generate_referral_code,
    normalize_referral_code,
    referral_link,
    validate_link_template,
)
from tests.fakes import FakeRandom


@pytest.mark.parametrize(
    ("drawn", "pin"),
    [(4217, "004217"), (0, "000000"), (7, "000007"), (999_999, "999999"), (123_456, "123456")],
)
def test_a_pin_is_six_digits_with_leading_zeros_kept(drawn: int, pin: str) -> None:
    assert generate_pin(FakeRandom(script=[drawn]).randbelow) == pin


def test_a_pin_is_drawn_from_a_million_values() -> None:
    draws: list[int] = []

    def randbelow(n: int) -> int:
        draws.append(n)
        return n - 1

    assert generate_pin(randbelow) == "999999"
    assert draws == [10**PIN_DIGITS]


def test_pins_from_a_seeded_source_are_always_six_digits() -> None:
    rng = FakeRandom(seed=3)
    pins = [generate_pin(rng.randbelow) for _ in range(500)]
    assert all(len(pin) == 6 and pin.isdigit() for pin in pins)
    assert len(set(pins)) > 490


@pytest.mark.parametrize("ambiguous", ["0", "O", "1", "I"])
def test_the_referral_alphabet_has_no_ambiguous_characters(ambiguous: str) -> None:
    assert ambiguous not in ALPHABET


def test_the_referral_alphabet_is_upper_case_letters_and_digits_without_repeats() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert all(ch.isdigit() or ch.isupper() for ch in ALPHABET)


def test_a_referral_code_is_eight_characters_from_the_alphabet() -> None:
    rng = FakeRandom(seed=11)
    codes = [generate_referral_code(rng.randbelow) for _ in range(500)]
    assert all(len(code) == CODE_LENGTH == 8 for code in codes)
    assert all(set(code) <= set(ALPHABET) for code in codes)
    assert len(set(codes)) == 500


def test_a_referral_code_uses_every_draw_as_an_index_into_the_alphabet() -> None:
    rng = FakeRandom(script=[0, 1, 2, 3, 28, 29, 30, 31])
    assert generate_referral_code(rng.randbelow) == "2345WXYZ"


@pytest.mark.parametrize(
    ("given", "normal"), [(" ab2c3d4e ", "AB2C3D4E"), ("XYZ23456", "XYZ23456")]
)
def test_referral_codes_are_compared_upper_case_and_trimmed(given: str, normal: str) -> None:
    assert normalize_referral_code(given) == normal


@pytest.mark.parametrize(
    ("template", "shop_url", "link"),
    [
        (DEFAULT_LINK_TEMPLATE, "https://anna.example.cz", "https://anna.example.cz/?ref=AB23CD45"),
        (
            DEFAULT_LINK_TEMPLATE,
            "https://anna.example.cz/",
            "https://anna.example.cz/?ref=AB23CD45",
        ),
        (
            "{shop_url}/doporuceni/{code}",
            "https://anna.example.cz/eshop",
            "https://anna.example.cz/eshop/doporuceni/AB23CD45",
        ),
        (
            "https://promo.example.cz/r?c={code}&src=ellity",
            "https://anna.example.cz",
            "https://promo.example.cz/r?c=AB23CD45&src=ellity",
        ),
    ],
)
def test_the_referral_link_is_the_template_with_shop_url_and_code_filled_in(
    template: str, shop_url: str, link: str
) -> None:
    assert referral_link(template, shop_url=shop_url, code="AB23CD45") == link


def test_the_referral_link_is_empty_while_the_template_needs_a_shop_url_not_set_yet() -> None:
    assert referral_link(DEFAULT_LINK_TEMPLATE, shop_url="", code="AB23CD45") == ""
    assert referral_link("https://r.example.cz/{code}", shop_url="", code="AB23CD45") == (
        "https://r.example.cz/AB23CD45"
    )


def test_the_default_template_puts_the_code_in_a_ref_parameter() -> None:
    assert DEFAULT_LINK_TEMPLATE == "{shop_url}/?ref={code}"


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{shop_url}/?ref=", id="without-code"),
        pytest.param("", id="empty"),
        pytest.param("{shop_url}/?ref={CODE}", id="wrong-case"),
        pytest.param("{shop_url}/?ref={code}&u={user}", id="unknown-placeholder"),
        pytest.param("{shop_url}/?ref={code}}", id="stray-brace"),
        pytest.param("{code}" + "x" * 500, id="too-long"),
    ],
)
def test_bad_referral_link_templates_are_refused(template: str) -> None:
    with pytest.raises(InvalidInput):
        validate_link_template(template)


def test_a_valid_template_is_trimmed() -> None:
    assert validate_link_template("  {shop_url}/r/{code}  ") == "{shop_url}/r/{code}"
