"""Merchant settings: every value is validated, on construction and on KEY=VALUE changes."""

from __future__ import annotations

import dataclasses

import pytest

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.merchant import SETTING_KEYS, MerchantSettings, clean_slug
from ellity.domain.model.money import Points

BASIC = MerchantSettings(name="Kavárna U Anny", shop_url="https://anna.example.cz")


def test_settings_have_the_documented_defaults() -> None:
    assert (BASIC.referral_link_template, BASIC.referral_bonus, BASIC.validity_months) == (
        "{shop_url}/?ref={code}",
        Points.zero(),
        12,
    )
    assert (BASIC.locale, BASIC.timezone) == ("cs", "Europe/Prague")
    assert BASIC.expiry_policy == ExpiryPolicy(12, "Europe/Prague")


def test_the_name_is_trimmed_and_the_shop_url_loses_its_trailing_slash() -> None:
    settings = MerchantSettings(name="  Anna  ", shop_url=" https://anna.example.cz/ ")
    assert (settings.name, settings.shop_url) == ("Anna", "https://anna.example.cz")


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"shop_url": "anna.example.cz"}, id="url-without-scheme"),
        pytest.param({"shop_url": "ftp://anna.example.cz"}, id="url-not-http"),
        pytest.param({"shop_url": "https://"}, id="url-without-host"),
        pytest.param({"shop_url": "https://a.cz/" + "x" * 500}, id="url-too-long"),
        pytest.param({"timezone": "Europe/Praha"}, id="unknown-time-zone"),
        pytest.param({"timezone": ""}, id="empty-time-zone"),
        pytest.param({"locale": "de"}, id="unknown-locale"),
        pytest.param({"referral_link_template": "{shop_url}/?ref="}, id="template-without-code"),
        pytest.param({"referral_bonus": Points.parse("-1")}, id="negative-bonus"),
        pytest.param({"name": "   "}, id="blank-name"),
        pytest.param({"name": "x" * 101}, id="name-too-long"),
        pytest.param({"validity_months": -1}, id="negative-validity"),
        pytest.param({"validity_months": 1201}, id="validity-too-long"),
    ],
)
def test_settings_with_a_bad_value_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        dataclasses.replace(BASIC, **changes)  # type: ignore[arg-type]


def test_changes_given_as_text_are_parsed_and_validated() -> None:
    changed = BASIC.with_changes(
        {
            "referral_bonus": "25.50",
            "validity_months": " 6 ",
            "locale": "en",
            "timezone": "UTC",
            "referral_link_template": "{shop_url}/r/{code}",
            "name": "Anna's",
            "shop_url": "https://a.cz/",
        }
    )
    assert changed == MerchantSettings(
        name="Anna's",
        shop_url="https://a.cz",
        referral_link_template="{shop_url}/r/{code}",
        referral_bonus=Points.parse("25.50"),
        validity_months=6,
        locale="en",
        timezone="UTC",
    )
    assert BASIC.validity_months == 12  # the original is untouched


def test_an_empty_shop_url_means_not_set_yet() -> None:
    assert MerchantSettings(name="Anna").shop_url == ""
    assert BASIC.with_changes({"shop_url": "  "}).shop_url == ""


def test_no_changes_give_equal_settings() -> None:
    assert BASIC.with_changes({}) == BASIC


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"colour": "red"}, id="unknown-key"),
        pytest.param({"locale": "cs", "Locale": "en"}, id="unknown-key-among-known"),
        pytest.param({"validity_months": "twelve"}, id="validity-not-a-number"),
        pytest.param({"validity_months": "1.5"}, id="validity-not-whole"),
        pytest.param({"validity_months": "-1"}, id="validity-negative"),
        pytest.param({"referral_bonus": "-5"}, id="bonus-negative"),
        pytest.param({"referral_bonus": "1.234"}, id="bonus-three-decimals"),
        pytest.param({"referral_bonus": "lots"}, id="bonus-not-a-number"),
        pytest.param({"shop_url": "nope"}, id="bad-url"),
        pytest.param({"timezone": "Mars/Olympus"}, id="bad-time-zone"),
        pytest.param({"locale": "sk"}, id="bad-locale"),
        pytest.param({"referral_link_template": "{shop_url}"}, id="template-without-code"),
    ],
)
def test_bad_changes_are_refused(changes: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        BASIC.with_changes(changes)


def test_an_unknown_key_is_named_together_with_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as refused:
        BASIC.with_changes({"colour": "red"})
    assert "colour" in refused.value.message
    assert all(key in refused.value.message for key in SETTING_KEYS)


def test_settings_printed_as_text_read_back_as_the_same_settings() -> None:
    settings = BASIC.with_changes({"referral_bonus": "12.50", "locale": "en"})
    assert list(settings.as_strings()) == list(SETTING_KEYS)
    assert BASIC.with_changes(settings.as_strings()) == settings


@pytest.mark.parametrize("slug", ["anna", "anna-shop-2", "0shop", "a" * 63])
def test_good_slugs_are_accepted(slug: str) -> None:
    assert clean_slug(f" {slug} ") == slug


@pytest.mark.parametrize(
    "slug", ["", "Anna", "-anna", "anna shop", "anna_shop", "a" * 64, "anna/.."]
)
def test_bad_slugs_are_refused(slug: str) -> None:
    with pytest.raises(InvalidInput):
        clean_slug(slug)


def test_newsletter_and_pre_expiry_settings_default_to_off_and_fourteen_days() -> None:
    assert (BASIC.newsletter_reward, BASIC.newsletter_take_back) == (Points.zero(), False)
    assert (BASIC.pre_expiry_notify, BASIC.pre_expiry_days) == (False, 14)


def test_newsletter_and_pre_expiry_settings_are_read_from_text() -> None:
    changed = BASIC.with_changes(
        {
            "newsletter_reward": "50",
            "newsletter_take_back": "yes",
            "pre_expiry_notify": "true",
            "pre_expiry_days": " 30 ",
        }
    )
    assert (changed.newsletter_reward, changed.newsletter_take_back) == (Points.parse("50"), True)
    assert (changed.pre_expiry_notify, changed.pre_expiry_days) == (True, 30)
    assert changed.as_strings()["newsletter_reward"] == "50.00"
    assert BASIC.with_changes(changed.as_strings()) == changed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"newsletter_reward": "-1"}, "newsletter reward cannot be negative"),
        ({"newsletter_reward": "0.001"}, "more than two decimal places"),
        ({"newsletter_take_back": "maybe"}, "newsletter_take_back setting must be true or false"),
        ({"pre_expiry_notify": "2"}, "pre_expiry_notify setting must be true or false"),
        ({"pre_expiry_days": "0"}, "between 1 and 365"),
        ({"pre_expiry_days": "366"}, "between 1 and 365"),
        ({"pre_expiry_days": "two weeks"}, "must be a whole number"),
    ],
)
def test_bad_newsletter_and_pre_expiry_values_are_refused_with_what_is_wrong(
    changes: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        BASIC.with_changes(changes)
    assert message in refused.value.message
