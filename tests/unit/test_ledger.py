"""The ledger: FIFO spending over lots, refusals that change nothing, expiry, the summary."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ellity.domain.model.errors import InsufficientPoints, InvalidInput
from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.ledger import (
    EntryKind,
    Expiration,
    LastChange,
    Ledger,
    LedgerSummary,
    Lot,
)
from ellity.domain.model.money import Points

P = Points.parse
PRAGUE_12_MONTHS = ExpiryPolicy(12, "Europe/Prague")
JAN = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
FEB = datetime(2024, 2, 10, 9, 0, tzinfo=UTC)
MAR = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
LATER = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)


def ledger_with(*amounts: str, policy: ExpiryPolicy = PRAGUE_12_MONTHS) -> Ledger:
    """A ledger holding lots of ``amounts`` earned in January, February, March ..."""
    ledger = Ledger(customer_id=CustomerId(1), policy=policy)
    for month, amount in enumerate(amounts, start=1):
        ledger.earn(P(amount), at=datetime(2024, month, 10, 9, 0, tzinfo=UTC))
    return ledger


def remaining(ledger: Ledger) -> list[str]:
    return [lot.remaining.decimal_string() for lot in ledger.lots]


@pytest.mark.parametrize(
    ("spends", "left"),
    [
        (["5"], ["5.00", "20.00", "30.00"]),
        (["10"], ["0.00", "20.00", "30.00"]),
        (["15"], ["0.00", "15.00", "30.00"]),
        (["5", "10"], ["0.00", "15.00", "30.00"]),
        (["5", "5", "5"], ["0.00", "15.00", "30.00"]),
        (["35"], ["0.00", "0.00", "25.00"]),
        (["12.50", "0.50"], ["0.00", "17.00", "30.00"]),
        (["60"], ["0.00", "0.00", "0.00"]),
    ],
)
def test_spending_consumes_the_oldest_lots_first(spends: list[str], left: list[str]) -> None:
    ledger = ledger_with("10", "20", "30")
    for amount in spends:
        ledger.spend(P(amount), at=LATER)
    assert remaining(ledger) == left


@pytest.mark.parametrize(
    ("loaded", "spend", "left_by_month"),
    [
        # Lots come from storage partly spent and in any order; FIFO follows when they were earned.
        (
            [(MAR, "30", "30"), (JAN, "10", "4"), (FEB, "20", "20")],
            "6",
            {1: "0.00", 2: "18.00", 3: "30.00"},
        ),
        (
            [(FEB, "20", "1"), (JAN, "10", "0.50"), (MAR, "30", "30")],
            "2",
            {1: "0.00", 2: "0.00", 3: "29.50"},
        ),
        ([(JAN, "10", "10"), (FEB, "20", "0.01")], "10.01", {1: "0.00", 2: "0.00"}),
    ],
)
def test_spending_consumes_partly_spent_lots_oldest_first_whatever_order_they_load_in(
    loaded: list[tuple[datetime, str, str]], spend: str, left_by_month: dict[int, str]
) -> None:
    lots = [
        Lot(
            earned_at=at,
            expires_on=PRAGUE_12_MONTHS.expires_on(at),
            amount=P(a),
            remaining=P(r),
            id=i,
        )
        for i, (at, a, r) in enumerate(loaded, start=1)
    ]
    ledger = Ledger(customer_id=CustomerId(1), policy=PRAGUE_12_MONTHS, lots=lots)
    ledger.spend(P(spend), at=LATER)
    assert {
        lot.earned_at.month: lot.remaining.decimal_string() for lot in ledger.lots
    } == left_by_month
    assert all(lot.is_changed == (lot.remaining != lot.loaded_remaining) for lot in ledger.lots)


def test_lots_earned_at_the_same_instant_are_spent_in_the_order_they_were_stored() -> None:
    lots = [
        Lot(earned_at=JAN, expires_on=None, amount=P("5"), remaining=P("5"), id=7),
        Lot(earned_at=JAN, expires_on=None, amount=P("5"), remaining=P("5"), id=3),
    ]
    ledger = Ledger(customer_id=CustomerId(1), policy=PRAGUE_12_MONTHS, lots=lots)
    ledger.spend(P("5"), at=LATER)
    assert {lot.id: lot.remaining for lot in ledger.lots} == {3: P("0"), 7: P("5")}


def test_earning_adds_a_lot_and_an_entry_with_the_balance_it_leaves() -> None:
    ledger = ledger_with("10")
    entry = ledger.earn(P("2.50"), at=LATER, order_ref=" order-7 ", note="  spring sale ")
    assert ledger.balance() == P("12.50")
    assert (entry.kind, entry.points, entry.balance_after, entry.at) == (
        EntryKind.EARN,
        P("2.50"),
        P("12.50"),
        LATER,
    )
    assert (entry.order_ref, entry.note) == ("order-7", "spring sale")
    assert ledger.lots[-1].is_new and ledger.lots[-1].expires_on == date(2025, 4, 1)
    assert len(ledger.new_entries) == 2


def test_a_spend_records_a_negative_entry_with_the_balance_it_leaves() -> None:
    ledger = ledger_with("10", "20")
    entry = ledger.spend(P("12"), at=LATER, order_ref="basket-1")
    assert (entry.kind, entry.points, entry.balance_after, entry.order_ref) == (
        EntryKind.SPEND,
        P("-12"),
        P("18"),
        "basket-1",
    )


@pytest.mark.parametrize(
    ("held", "wanted"), [(["10", "20"], "30.01"), ([], "0.01"), (["5"], "100")]
)
def test_a_spend_past_the_balance_is_refused_and_changes_nothing(
    held: list[str], wanted: str
) -> None:
    ledger = ledger_with(*held)
    before = (remaining(ledger), list(ledger.new_entries), ledger.last_change)
    with pytest.raises(InsufficientPoints):
        ledger.spend(P(wanted), at=LATER)
    assert (remaining(ledger), list(ledger.new_entries), ledger.last_change) == before


def test_the_insufficient_points_error_says_what_is_there_and_what_was_wanted() -> None:
    with pytest.raises(InsufficientPoints) as refused:
        ledger_with("1250.50").spend(P("2000"), at=LATER)
    assert "1,250.50" in refused.value.message and "2,000" in refused.value.message


@pytest.mark.parametrize("amount", ["0", "-1", "-0.01"])
def test_earning_or_spending_nothing_or_a_negative_amount_is_refused(amount: str) -> None:
    ledger = ledger_with("10")
    with pytest.raises(InvalidInput):
        ledger.earn(P(amount), at=LATER)
    with pytest.raises(InvalidInput):
        ledger.spend(P(amount), at=LATER)
    assert len(ledger.new_entries) == 1


def test_a_positive_adjustment_adds_an_expiring_lot() -> None:
    ledger = ledger_with("10")
    entry = ledger.adjust(P("5"), at=LATER, note="goodwill")
    assert (entry.kind, entry.points, entry.balance_after, entry.note) == (
        EntryKind.ADJUST,
        P("5"),
        P("15"),
        "goodwill",
    )
    assert ledger.lots[-1].expires_on == date(2025, 4, 1)


def test_a_negative_adjustment_consumes_the_oldest_lots_first() -> None:
    ledger = ledger_with("10", "20")
    entry = ledger.adjust(P("-15"), at=LATER, note="returned goods")
    assert (entry.kind, entry.points, entry.balance_after) == (EntryKind.ADJUST, P("-15"), P("15"))
    assert remaining(ledger) == ["0.00", "15.00"]


def test_a_negative_adjustment_never_takes_the_balance_below_zero() -> None:
    ledger = ledger_with("10")
    with pytest.raises(InsufficientPoints):
        ledger.adjust(P("-10.01"), at=LATER, note="too much")
    assert ledger.balance() == P("10")
    ledger.adjust(P("-10"), at=LATER, note="all of it")
    assert ledger.balance() == Points.zero()


def test_an_adjustment_of_zero_is_refused() -> None:
    with pytest.raises(InvalidInput):
        ledger_with("10").adjust(Points.zero(), at=LATER, note="nothing")


@pytest.mark.parametrize(
    ("held", "wanted", "taken", "balance_after"),
    [
        (["10"], "4", "4", "6"),
        (["10"], "10", "10", "0"),
        (["1", "2"], "10", "3", "0"),
        (["0.50"], "0.51", "0.50", "0"),
    ],
)
def test_an_automatic_deduction_takes_at_most_the_balance(
    held: list[str], wanted: str, taken: str, balance_after: str
) -> None:
    ledger = ledger_with(*held)
    entry = ledger.deduct_up_to(P(wanted), at=LATER, kind=EntryKind.NEWSLETTER_DEDUCTION)
    assert entry is not None
    assert (entry.kind, entry.points, entry.balance_after) == (
        EntryKind.NEWSLETTER_DEDUCTION,
        -P(taken),
        P(balance_after),
    )


def test_an_automatic_deduction_from_an_empty_ledger_records_nothing() -> None:
    ledger = ledger_with()
    assert ledger.deduct_up_to(P("5"), at=LATER, kind=EntryKind.NEWSLETTER_DEDUCTION) is None
    assert ledger.new_entries == []


def test_expiry_empties_the_lots_whose_last_day_has_passed_and_records_one_entry() -> None:
    ledger = ledger_with("10", "20", "30")  # valid until 10 Jan, 10 Feb, 10 Mar 2025
    ledger.spend(P("4"), at=LATER)
    at = datetime(2025, 2, 10, 23, 0, tzinfo=UTC)  # midnight after 10 Feb in Prague
    entry = ledger.expire(at=at)
    assert entry is not None
    assert (entry.kind, entry.points, entry.balance_after, entry.at) == (
        EntryKind.EXPIRE,
        P("-26"),
        P("30"),
        at,
    )
    assert remaining(ledger) == ["0.00", "0.00", "30.00"]
    assert ledger.last_change == LastChange(on=date(2025, 2, 11), points=P("-26"))


def test_expiry_waits_for_the_local_midnight_after_the_last_valid_day() -> None:
    ledger = Ledger(customer_id=CustomerId(1), policy=PRAGUE_12_MONTHS)
    ledger.earn(P("10"), at=datetime(2023, 12, 31, 23, 30, tzinfo=UTC))  # 1 Jan 2024 in Prague
    assert ledger.expire(at=datetime(2025, 1, 1, 22, 59, 59, tzinfo=UTC)) is None
    assert ledger.balance() == P("10")
    assert ledger.expire(at=datetime(2025, 1, 1, 23, 0, tzinfo=UTC)) is not None
    assert ledger.balance() == Points.zero()


#: The instant 10 January 2025 ends in Prague: the January 2024 lot of ``ledger_with`` expires.
JAN_LOT_GONE = datetime(2025, 1, 10, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "spendable"),
    [
        (JAN_LOT_GONE - timedelta(seconds=1), "30"),  # 23:59:59 on the last valid day
        (JAN_LOT_GONE, "20"),  # local midnight: the January lot is gone
        (JAN_LOT_GONE + timedelta(minutes=30), "20"),  # 00:30, before any nightly run
        (datetime(2025, 2, 10, 23, 0, tzinfo=UTC), "0"),  # and the February lot too
    ],
)
def test_points_past_their_expiry_instant_cannot_be_spent(at: datetime, spendable: str) -> None:
    ledger = ledger_with("10", "20")
    if P(spendable).is_positive():
        ledger.spend(P(spendable), at=at)
        assert ledger.balance() == Points.zero()
    with pytest.raises(InsufficientPoints):
        ledger.spend(P("0.01"), at=at)


def test_a_change_after_the_expiry_instant_records_the_expiry_first() -> None:
    ledger = ledger_with("10", "20")
    ledger.new_entries.clear()
    at = JAN_LOT_GONE + timedelta(minutes=30)
    spent = ledger.spend(P("5"), at=at)
    assert [(e.kind, e.points, e.balance_after, e.at) for e in ledger.new_entries] == [
        (EntryKind.EXPIRE, P("-10"), P("20"), at),
        (EntryKind.SPEND, P("-5"), P("15"), at),
    ]
    assert spent == ledger.new_entries[-1]
    assert remaining(ledger) == ["0.00", "15.00"]  # the spend took none of the expired lot


@pytest.mark.parametrize(
    "change",
    [
        lambda ledger, at: ledger.earn(P("1"), at=at),
        lambda ledger, at: ledger.adjust(P("1"), at=at, note="goodwill"),
        lambda ledger, at: ledger.adjust(P("-1"), at=at, note="correction"),
        lambda ledger, at: ledger.deduct_up_to(P("1"), at=at, kind=EntryKind.NEWSLETTER_DEDUCTION),
    ],
    ids=["earn", "positive adjustment", "negative adjustment", "deduction"],
)
def test_every_change_after_the_expiry_instant_expires_the_due_lots_first(change: Any) -> None:
    ledger = ledger_with("10", "20")
    ledger.new_entries.clear()
    change(ledger, JAN_LOT_GONE)
    first = ledger.new_entries[0]
    assert (first.kind, first.points, first.balance_after) == (EntryKind.EXPIRE, P("-10"), P("20"))
    assert len(ledger.new_entries) == 2


def test_a_deduction_takes_at_most_the_points_still_valid() -> None:
    ledger = ledger_with("10", "20")
    ledger.new_entries.clear()
    taken = ledger.deduct_up_to(
        P("25"), at=JAN_LOT_GONE, kind=EntryKind.NEWSLETTER_DEDUCTION, note="unsubscribed"
    )
    assert taken is not None and taken.points == P("-20")
    assert ledger.balance() == Points.zero()


def test_a_refused_change_after_the_expiry_instant_leaves_the_lots_as_they_were() -> None:
    ledger = ledger_with("10", "20")
    with pytest.raises(InvalidInput):
        ledger.earn(P("0"), at=JAN_LOT_GONE)
    assert remaining(ledger) == ["10.00", "20.00"]


@pytest.mark.parametrize(
    ("on", "balance", "next_expiration"),
    [
        (date(2025, 1, 10), "30", Expiration(date(2025, 1, 10), P("10"))),  # the last valid day
        (date(2025, 1, 11), "20", Expiration(date(2025, 2, 10), P("20"))),
        (date(2025, 2, 11), "0", None),
        (date(2024, 1, 1), "30", Expiration(date(2025, 1, 10), P("10"))),
    ],
)
def test_the_summary_on_a_day_leaves_out_lots_whose_last_valid_day_has_passed(
    on: date, balance: str, next_expiration: Expiration | None
) -> None:
    ledger = ledger_with("10", "20")
    summary = ledger.summary(on=on)
    assert (summary.balance, summary.next_expiration) == (P(balance), next_expiration)
    assert summary.last_change == ledger.last_change
    assert ledger.balance() == P("30")  # reading changes nothing


def test_points_that_never_expire_count_on_every_day() -> None:
    ledger = ledger_with("10", policy=ExpiryPolicy(0))
    assert ledger.summary(on=date(2124, 1, 1)).balance == P("10")
    ledger.spend(P("10"), at=datetime(2124, 1, 1, tzinfo=UTC))


def test_expiry_with_nothing_due_records_nothing() -> None:
    ledger = ledger_with("10")
    assert ledger.expire(at=LATER) is None
    assert len(ledger.new_entries) == 1


def test_points_that_never_expire_are_never_expired() -> None:
    ledger = ledger_with("10", policy=ExpiryPolicy(0))
    assert ledger.expire(at=datetime(2124, 1, 1, tzinfo=UTC)) is None
    assert ledger.next_expiration() is None


def test_next_expiration_adds_up_the_lots_that_share_the_earliest_date() -> None:
    ledger = Ledger(customer_id=CustomerId(1), policy=PRAGUE_12_MONTHS)
    morning, evening = MAR, MAR + timedelta(hours=12)  # 10:00 and 22:00 in Prague, same day
    ledger.earn(P("10"), at=morning)
    ledger.earn(P("5.50"), at=evening)
    ledger.earn(P("100"), at=MAR + timedelta(days=1))
    ledger.spend(P("3"), at=LATER)
    assert ledger.next_expiration() == Expiration(on=date(2025, 3, 10), points=P("12.50"))


def test_next_expiration_skips_dates_whose_lots_are_spent() -> None:
    ledger = ledger_with("10", "20")
    ledger.spend(P("10"), at=LATER)
    assert ledger.next_expiration() == Expiration(on=date(2025, 2, 10), points=P("20"))
    ledger.spend(P("20"), at=LATER)
    assert ledger.next_expiration() is None


def test_the_summary_has_balance_next_expiration_and_the_last_change_on_its_local_day() -> None:
    ledger = ledger_with("10")
    ledger.spend(P("1.50"), at=datetime(2024, 6, 30, 22, 30, tzinfo=UTC))  # 1 July in Prague
    assert ledger.summary() == LedgerSummary(
        balance=P("8.50"),
        next_expiration=Expiration(on=date(2025, 1, 10), points=P("8.50")),
        last_change=LastChange(on=date(2024, 7, 1), points=P("-1.50")),
    )


def test_an_empty_ledger_has_a_zero_balance_and_nothing_to_report() -> None:
    assert ledger_with().summary() == LedgerSummary(Points.zero(), None, None)


@pytest.mark.parametrize(
    ("order_ref", "note"), [("", None), ("   ", None), ("x" * 101, None), (None, "n" * 501)]
)
def test_blank_or_overlong_order_references_and_notes_are_refused(
    order_ref: str | None, note: str | None
) -> None:
    ledger = ledger_with("10")
    with pytest.raises(InvalidInput):
        ledger.earn(P("1"), at=LATER, order_ref=order_ref, note=note)
    assert ledger.balance() == P("10")


def test_a_blank_note_is_stored_as_no_note() -> None:
    entry = ledger_with().earn(P("1"), at=LATER, note="   ")
    assert entry.note is None


@pytest.mark.parametrize("note", [None, "", "   "])
def test_an_adjustment_without_a_note_is_refused_and_changes_nothing(note: str | None) -> None:
    ledger = ledger_with("10")
    with pytest.raises(InvalidInput):
        ledger.adjust(P("-5"), at=LATER, note=note)
    with pytest.raises(InvalidInput):
        ledger.adjust(P("5"), at=LATER, note=note)
    assert remaining(ledger) == ["10.00"] and len(ledger.new_entries) == 1
