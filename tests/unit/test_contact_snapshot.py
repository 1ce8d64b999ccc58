"""The contact snapshot: the eleven ellity_* values, formatted for the merchant's locale."""

from __future__ import annotations

import gc
import random
from datetime import date

import pytest

from ellity.domain.model.contact import (
    FIELD_NAMES,
    FIELD_TYPES,
    CustomerLoyalty,
    ProgrammeLook,
    cleared_fields,
    contact_snapshot,
    loyalty_row,
    snapshots_of_rows,
)
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.ledger import Expiration, LastChange, LedgerSummary
from ellity.domain.model.money import Locale, Points, display_of

P = Points.parse
CZECH = ProgrammeLook(
    locale="cs", shop_url="https://anna.example.cz", referral_link_template="{shop_url}/?ref={code}"
)
ENGLISH = ProgrammeLook(
    locale="en", shop_url="https://bob.example.com/", referral_link_template="{shop_url}/r/{code}"
)
HOLDING = LedgerSummary(
    balance=P("1250.50"),
    next_expiration=Expiration(on=date(2025, 1, 31), points=P("120.75")),
    last_change=LastChange(on=date(2024, 3, 10), points=P("-120")),
)
NOTHING = LedgerSummary(balance=Points.zero(), next_expiration=None, last_change=None)


def loyalty(
    *, registered: bool = False, pin: str | None = "004217", summary: LedgerSummary = HOLDING
) -> CustomerLoyalty:
    return CustomerLoyalty(
        customer_id=CustomerId(7),
        email="ann@example.cz",
        first_name="Anna",
        last_name="Nováková",
        registered=registered,
        pin=pin,
        referral_code="AB23CD45",
        summary=summary,
    )


def test_the_snapshot_has_the_eleven_fields_in_the_specified_order() -> None:
    assert FIELD_NAMES == (
        "ellity_credit",
        "ellity_credit_num",
        "ellity_pin",
        "ellity_registered",
        "ellity_next_expiration_date",
        "ellity_next_expiration_value",
        "ellity_next_expiration_value_num",
        "ellity_last_change_date",
        "ellity_last_change_value",
        "ellity_referral_code",
        "ellity_referral_link",
    )
    assert list(contact_snapshot(loyalty(), CZECH).fields) == list(FIELD_NAMES)
    assert list(FIELD_TYPES) == list(FIELD_NAMES)


def test_an_anonymous_customer_holding_points_reads_in_czech() -> None:
    snapshot = contact_snapshot(loyalty(), CZECH)
    assert snapshot.fields == {
        "ellity_credit": "1 250,50",
        "ellity_credit_num": 1250,
        "ellity_pin": "004217",
        "ellity_registered": "anonymous",
        "ellity_next_expiration_date": "2025-01-31",
        "ellity_next_expiration_value": "120,75",
        "ellity_next_expiration_value_num": 120,
        "ellity_last_change_date": "2024-03-10",
        "ellity_last_change_value": "-120",
        "ellity_referral_code": "AB23CD45",
        "ellity_referral_link": "https://anna.example.cz/?ref=AB23CD45",
    }
    assert (snapshot.customer_id, snapshot.email, snapshot.first_name, snapshot.last_name) == (
        7,
        "ann@example.cz",
        "Anna",
        "Nováková",
    )


def test_the_same_customer_reads_in_english_with_the_english_programme_look() -> None:
    fields = contact_snapshot(loyalty(), ENGLISH).fields
    assert fields["ellity_credit"] == "1,250.50"
    assert fields["ellity_next_expiration_value"] == "120.75"
    assert fields["ellity_referral_link"] == "https://bob.example.com/r/AB23CD45"


@pytest.mark.parametrize("pin", ["004217", None])
def test_a_registered_customer_shows_no_pin(pin: str | None) -> None:
    fields = contact_snapshot(loyalty(registered=True, pin=pin), CZECH).fields
    assert (fields["ellity_pin"], fields["ellity_registered"]) == ("", "registered")


def test_a_customer_without_points_or_history_has_zeros_and_empty_text() -> None:
    fields = contact_snapshot(loyalty(summary=NOTHING), CZECH).fields
    assert {name: fields[name] for name in FIELD_NAMES[:9]} == {
        "ellity_credit": "0",
        "ellity_credit_num": 0,
        "ellity_pin": "004217",
        "ellity_registered": "anonymous",
        "ellity_next_expiration_date": "",
        "ellity_next_expiration_value": "",
        "ellity_next_expiration_value_num": 0,
        "ellity_last_change_date": "",
        "ellity_last_change_value": "",
    }


@pytest.mark.parametrize(
    ("balance", "text", "number"),
    [("0.99", "0,99", 0), ("1000000", "1 000 000", 1000000), ("0.05", "0,05", 0)],
)
def test_the_numeric_fields_are_the_display_values_rounded_down(
    balance: str, text: str, number: int
) -> None:
    summary = LedgerSummary(P(balance), Expiration(date(2025, 1, 1), P(balance)), None)
    fields = contact_snapshot(loyalty(summary=summary), CZECH).fields
    assert (fields["ellity_credit"], fields["ellity_credit_num"]) == (text, number)
    assert (fields["ellity_next_expiration_value"], fields["ellity_next_expiration_value_num"]) == (
        text,
        number,
    )


def test_cleared_fields_are_every_field_empty_with_zero_in_the_whole_numbers() -> None:
    cleared = cleared_fields()
    assert list(cleared) == list(FIELD_NAMES)
    assert cleared == {
        "ellity_credit": "",
        "ellity_credit_num": 0,
        "ellity_pin": "",
        "ellity_registered": "",
        "ellity_next_expiration_date": "",
        "ellity_next_expiration_value": "",
        "ellity_next_expiration_value_num": 0,
        "ellity_last_change_date": "",
        "ellity_last_change_value": "",
        "ellity_referral_code": "",
        "ellity_referral_link": "",
    }
    cleared["ellity_pin"] = "x"
    assert cleared_fields()["ellity_pin"] == ""  # a fresh mapping each time


#: Amounts at every edge of the display rules: signs, hundredths, grouping, the short way.
EDGE_CENTS = (
    *range(-1001, 1002, 7),
    -100_001,
    -100_000,
    -99_999,
    -99_900,
    -150,
    -100,
    -99,
    -1,
    0,
    1,
    99,
    100,
    101,
    99_899,
    99_900,
    99_999,
    100_000,
    100_001,
    123_456,
    99_999_999,
    100_000_000,
    123_456_789_012,
    -123_456_789_012,
)
LOOKS = (
    CZECH,
    ENGLISH,
    ProgrammeLook("cs", "", "{shop_url}/?ref={code}"),
    ProgrammeLook("en", "", "https://fixed.example/?r={code}"),
    ProgrammeLook("en", "https://x.cz/{code}/", "{shop_url}?r={code}&again={code}"),
    ProgrammeLook("cs", "https://x.cz", "{shop_url}/join"),
    ProgrammeLook("en", "/", "{code}@{shop_url}"),
)


def customers_with_every_kind_of_value() -> list[CustomerLoyalty]:
    pick = random.Random(16)
    found = []
    for n, cents in enumerate(EDGE_CENTS):
        other = pick.choice(EDGE_CENTS)
        found.append(
            CustomerLoyalty(
                customer_id=CustomerId(n + 1),
                email=None if n % 5 == 0 else f"c{n}@x.cz",
                first_name=f"First{n}",
                last_name="",
                registered=n % 3 == 0,
                pin=None if n % 7 == 0 else f"{n:06d}",
                referral_code=f"CODE{n}",
                summary=LedgerSummary(
                    balance=Points(cents),
                    next_expiration=(
                        None if n % 4 == 0 else Expiration(date(2026, 1, 1 + n % 28), Points(other))
                    ),
                    last_change=(
                        None if n % 6 == 0 else LastChange(date(999, 12, 31), Points(-other))
                    ),
                ),
            )
        )
    return found


@pytest.mark.parametrize("look", LOOKS)
def test_snapshots_made_in_bulk_from_rows_are_the_snapshots_of_each_customer(
    look: ProgrammeLook,
) -> None:
    customers = customers_with_every_kind_of_value()
    rows = [loyalty_row(customer) for customer in customers]
    assert snapshots_of_rows(rows, look) == [contact_snapshot(c, look) for c in customers]


@pytest.mark.parametrize("look", [CZECH, ENGLISH])
def test_bulk_snapshots_show_every_amount_as_its_points_would(look: ProgrammeLook) -> None:
    """Each of the three amounts at every edge of the display rules (the usual amounts are
    read from a table made once, the others formatted)."""
    customers = [
        CustomerLoyalty(
            customer_id=CustomerId(n + 1),
            email=None,
            first_name="",
            last_name="",
            registered=False,
            pin=None,
            referral_code="CODE",
            summary=LedgerSummary(
                balance=Points(cents),
                next_expiration=Expiration(date(2026, 1, 31), Points(cents)),
                last_change=LastChange(date(2026, 1, 1), Points(cents)),
            ),
        )
        for n, cents in enumerate(EDGE_CENTS)
    ]
    rows = [loyalty_row(customer) for customer in customers]
    assert snapshots_of_rows(rows, look) == [contact_snapshot(c, look) for c in customers]


def test_display_of_hundredths_is_the_display_of_points() -> None:
    """The rule, written out once more here: minus, whole points grouped by thousands, then
    the decimal mark and two digits only when there are hundredths."""
    separators: dict[Locale, tuple[str, str]] = {"cs": (" ", ","), "en": (",", ".")}
    for locale, (thousands, mark) in separators.items():
        for cents in EDGE_CENTS:
            units, rest = divmod(abs(cents), 100)
            whole = f"{units:,}".replace(",", thousands)
            expected = ("-" if cents < 0 else "") + whole + (f"{mark}{rest:02d}" if rest else "")
            assert display_of(cents, locale) == expected == Points(cents).display(locale)


def test_bulk_snapshots_leave_the_garbage_collector_as_they_found_it() -> None:
    rows = [loyalty_row(customer) for customer in customers_with_every_kind_of_value()]
    assert gc.isenabled()
    snapshots_of_rows(rows, CZECH)
    assert gc.isenabled()
    gc.disable()
    try:
        snapshots_of_rows(rows, CZECH)
        assert not gc.isenabled()
    finally:
        gc.enable()
