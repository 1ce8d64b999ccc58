"""Expiry policy: month arithmetic at month ends and leap days, local days, local midnights."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.expiry import ExpiryPolicy, add_months, local_date, zone

PRAGUE = "Europe/Prague"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2024, 1, 31), 1, date(2024, 2, 29)),  # leap year
        (date(2023, 1, 31), 1, date(2023, 2, 28)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2024, 3, 31), 1, date(2024, 4, 30)),
        (date(2024, 8, 31), 6, date(2025, 2, 28)),
        (date(2024, 1, 31), 13, date(2025, 2, 28)),
        (date(2024, 12, 15), 1, date(2025, 1, 15)),
        (date(2024, 11, 30), 3, date(2025, 2, 28)),
        (date(2024, 5, 10), 0, date(2024, 5, 10)),
        (date(2024, 3, 31), -1, date(2024, 2, 29)),
        (date(2024, 1, 15), 1200, date(2124, 1, 15)),
    ],
)
def test_adding_months_clamps_to_the_last_day_of_a_shorter_month(
    day: date, months: int, expected: date
) -> None:
    assert add_months(day, months) == expected


@pytest.mark.parametrize(
    ("earned_at", "months", "time_zone", "last_valid_day"),
    [
        # 23:30 UTC on 31 December is already 1 January in Prague (UTC+1 in winter).
        (utc(2023, 12, 31, 23, 30), 12, PRAGUE, date(2025, 1, 1)),
        (utc(2023, 12, 31, 23, 30), 12, "UTC", date(2024, 12, 31)),
        (utc(2023, 12, 31, 22, 59), 12, PRAGUE, date(2024, 12, 31)),
        # In summer Prague is UTC+2: 22:30 UTC on 30 June is 1 July.
        (utc(2024, 6, 30, 22, 30), 12, PRAGUE, date(2025, 7, 1)),
        (utc(2024, 6, 30, 21, 59), 12, PRAGUE, date(2025, 6, 30)),
        (utc(2024, 1, 31, 10, 0), 1, PRAGUE, date(2024, 2, 29)),
        (utc(2024, 2, 29, 12, 0), 12, PRAGUE, date(2025, 2, 28)),
        # Earned on 31 January local time although it is still 30 January in UTC.
        (utc(2023, 1, 30, 23, 15), 1, PRAGUE, date(2023, 2, 28)),
        # The night clocks go forward (31 March 2024, 01:00 UTC) and back (27 October, 01:00 UTC).
        (utc(2024, 3, 30, 23, 30), 1, PRAGUE, date(2024, 4, 30)),
        (utc(2024, 3, 31, 1, 30), 1, PRAGUE, date(2024, 4, 30)),
        (utc(2024, 10, 26, 22, 30), 1, PRAGUE, date(2024, 11, 27)),
        (utc(2024, 10, 27, 22, 59), 1, PRAGUE, date(2024, 11, 27)),
        (utc(2024, 10, 27, 23, 0), 1, PRAGUE, date(2024, 11, 28)),
        (utc(2024, 5, 1, 12, 0), 0, PRAGUE, None),
    ],
)
def test_points_earned_on_a_local_day_are_valid_until_that_day_plus_the_validity(
    earned_at: datetime, months: int, time_zone: str, last_valid_day: date | None
) -> None:
    assert ExpiryPolicy(months, time_zone).expires_on(earned_at) == last_valid_day


@pytest.mark.parametrize(
    ("last_valid_day", "time_zone", "instant"),
    [
        (date(2024, 12, 31), PRAGUE, utc(2024, 12, 31, 23, 0)),
        (date(2025, 6, 30), PRAGUE, utc(2025, 6, 30, 22, 0)),
        (date(2024, 12, 31), "UTC", utc(2025, 1, 1, 0, 0)),
        # The midnight before the spring change is still winter time, the one after is summer.
        (date(2024, 3, 30), PRAGUE, utc(2024, 3, 30, 23, 0)),
        (date(2024, 3, 31), PRAGUE, utc(2024, 3, 31, 22, 0)),
        # The midnight before the autumn change is summer time, the one after is winter.
        (date(2024, 10, 26), PRAGUE, utc(2024, 10, 26, 22, 0)),
        (date(2024, 10, 27), PRAGUE, utc(2024, 10, 27, 23, 0)),
        (date(2024, 2, 29), "America/New_York", utc(2024, 3, 1, 5, 0)),
    ],
)
def test_points_expire_at_the_local_midnight_after_their_last_valid_day(
    last_valid_day: date, time_zone: str, instant: datetime
) -> None:
    assert ExpiryPolicy(12, time_zone).expiry_instant(last_valid_day) == instant


@pytest.mark.parametrize(
    "last_valid_day",
    [
        date(2024, 12, 31),
        date(2024, 2, 29),
        date(2024, 3, 30),
        date(2024, 3, 31),
        date(2024, 10, 26),
        date(2024, 10, 27),
        date(2025, 6, 30),
    ],
)
@pytest.mark.parametrize("time_zone", [PRAGUE, "UTC", "America/New_York", "Asia/Tokyo"])
def test_points_are_expired_from_their_expiry_instant_and_not_a_moment_before(
    last_valid_day: date, time_zone: str
) -> None:
    policy = ExpiryPolicy(12, time_zone)
    instant = policy.expiry_instant(last_valid_day)
    assert not policy.is_expired(last_valid_day, instant - timedelta(microseconds=1))
    assert policy.is_expired(last_valid_day, instant)


def test_points_earned_at_2330_utc_on_new_years_eve_expire_a_day_later_in_prague_than_in_utc() -> (
    None
):
    earned_at = utc(2023, 12, 31, 23, 30)
    prague, in_utc = ExpiryPolicy(12, PRAGUE), ExpiryPolicy(12, "UTC")
    prague_day, utc_day = prague.expires_on(earned_at), in_utc.expires_on(earned_at)
    assert prague_day is not None and utc_day is not None
    assert prague.expiry_instant(prague_day) == utc(2025, 1, 1, 23, 0)
    assert in_utc.expiry_instant(utc_day) == utc(2025, 1, 1, 0, 0)


def test_a_policy_of_zero_months_never_expires() -> None:
    assert ExpiryPolicy(0).never_expires
    assert not ExpiryPolicy(12).never_expires


@pytest.mark.parametrize("months", [-1, 1201])
def test_validity_outside_zero_to_1200_months_is_refused(months: int) -> None:
    with pytest.raises(InvalidInput):
        ExpiryPolicy(months)


@pytest.mark.parametrize("months", [0, 1, 1200])
def test_validity_from_zero_to_1200_months_is_accepted(months: int) -> None:
    assert ExpiryPolicy(months).validity_months == months


def test_the_default_time_zone_is_prague() -> None:
    assert ExpiryPolicy(12).time_zone == PRAGUE


@pytest.mark.parametrize(
    "name", ["Europe/Praha", "", "Mars/Olympus", "../../etc/passwd", "europe/prague"]
)
def test_unknown_time_zones_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(InvalidInput, match="time zone"):
        zone(name)


def test_known_time_zones_are_returned() -> None:
    assert zone(PRAGUE).key == PRAGUE


def test_the_local_date_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError):
        local_date(datetime(2024, 1, 1, 12, 0), PRAGUE)
    assert local_date(utc(2023, 12, 31, 23, 30), PRAGUE) == date(2024, 1, 1)
