"""Marketing consent and whom Ellity adds to the Ecomail list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ellity.domain.model.consent import (
    ConsentCounts,
    ConsentSource,
    EcomailAdd,
    MarketingConsent,
    adds_more,
    may_add,
    membership_plan,
    parse_consent,
    parse_ecomail_add,
)
from ellity.domain.model.customer import Customer
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import MerchantSettings

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
T1 = datetime(2026, 12, 2, 9, tzinfo=UTC)
GRANTED, REFUSED, UNKNOWN = (
    MarketingConsent.GRANTED,
    MarketingConsent.REFUSED,
    MarketingConsent.UNKNOWN,
)


@pytest.mark.parametrize(
    ("setting", "added"),
    [
        (EcomailAdd.CONSENTED, {GRANTED}),
        (EcomailAdd.CUSTOMERS, {GRANTED, UNKNOWN}),
        (EcomailAdd.NONE, set()),
    ],
)
def test_who_ellity_adds_follows_the_setting_and_never_a_refusal(
    setting: EcomailAdd, added: set[MarketingConsent]
) -> None:
    assert {c for c in MarketingConsent if may_add(setting, c)} == added


CONSENTED, CUSTOMERS, NONE = EcomailAdd.CONSENTED, EcomailAdd.CUSTOMERS, EcomailAdd.NONE


@pytest.mark.parametrize(
    ("before", "after", "more"),
    [
        (NONE, CONSENTED, True),
        (NONE, CUSTOMERS, True),
        (CONSENTED, CUSTOMERS, True),
        (CUSTOMERS, CONSENTED, False),
        (CUSTOMERS, NONE, False),
        (CONSENTED, NONE, False),
        (CONSENTED, CONSENTED, False),
        (NONE, NONE, False),
    ],
)
def test_a_change_of_the_setting_adds_more_only_when_it_allows_someone_new(
    before: EcomailAdd, after: EcomailAdd, more: bool
) -> None:
    assert adds_more(before, after) is more


def test_the_plan_counts_who_is_added_updated_only_or_never_added() -> None:
    counts = ConsentCounts(granted=3, refused=2, unknown=5, without_email=7)
    consented = membership_plan(EcomailAdd.CONSENTED, counts)
    assert (consented.added, consented.updated_only, consented.never_added) == (3, 5, 2)
    assert consented.without_email == 7
    customers = membership_plan(EcomailAdd.CUSTOMERS, counts)
    assert (customers.added, customers.updated_only, customers.never_added) == (8, 0, 2)
    nobody = membership_plan(EcomailAdd.NONE, counts)
    assert (nobody.added, nobody.updated_only, nobody.never_added) == (0, 8, 2)


def test_consent_and_the_setting_are_parsed_with_a_clear_error() -> None:
    assert parse_consent(" Granted ") is GRANTED
    assert parse_consent("unknown") is UNKNOWN
    with pytest.raises(InvalidInput, match="granted, refused"):
        parse_consent("unknown", allow_unknown=False)
    with pytest.raises(InvalidInput, match="granted, refused, unknown"):
        parse_consent("yes")
    assert parse_ecomail_add("NONE") is EcomailAdd.NONE
    with pytest.raises(InvalidInput, match="consented, customers, none"):
        parse_ecomail_add("all")


def test_the_setting_defaults_to_consented_and_is_a_settings_key() -> None:
    settings = MerchantSettings(name="Kavárna")
    assert settings.ecomail_add is EcomailAdd.CONSENTED
    assert settings.as_strings()["ecomail_add"] == "consented"
    assert settings.with_changes({"ecomail_add": "customers"}).ecomail_add is EcomailAdd.CUSTOMERS
    with pytest.raises(InvalidInput):
        settings.with_changes({"ecomail_add": "everyone"})


def _customer() -> Customer:
    return Customer(
        merchant_id=MerchantId(1),
        referral_code="ABCD2345",
        created_at=T0,
        updated_at=T0,
        id=CustomerId(7),
    )


def test_a_consent_change_is_recorded_with_who_and_when_and_a_repeat_changes_nothing() -> None:
    customer = _customer()
    assert customer.marketing_consent is UNKNOWN and customer.consent_source is None
    change = customer.set_consent(GRANTED, ConsentSource.API, at=T0)
    assert change is not None
    assert (change.previous, change.consent, change.source, change.at) == (
        UNKNOWN,
        GRANTED,
        ConsentSource.API,
        T0,
    )
    assert change.customer_id == 7
    assert customer.set_consent(GRANTED, ConsentSource.STAFF, at=T1) is None
    assert (customer.consent_source, customer.consent_changed_at) == (ConsentSource.API, T0)
    refused = customer.set_consent(REFUSED, ConsentSource.ECOMAIL, at=T1)
    assert refused is not None and refused.previous is GRANTED
    assert (customer.marketing_consent, customer.consent_changed_at) == (REFUSED, T1)
