"""How long earned points stay valid, in the merchant's time zone."""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ellity.domain.model.errors import InvalidInput

MAX_VALIDITY_MONTHS = 1200


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole months; a day past the target month's end becomes its last day.

    31 January + 1 month is 28 February (29 in a leap year); 29 February + 12 months is
    28 February of the next year.
    """
    month_index = day.month - 1 + months
    year, month0 = divmod(month_index, 12)
    year += day.year
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last_day))


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or a clear error."""
    try:
        if name not in _known_zones():
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "'%(zone)s' is not a known time zone (e.g. Europe/Prague).", zone=name
        ) from None


def local_date(at: datetime, time_zone: str) -> date:
    """The calendar date of the instant ``at`` (timezone-aware) in ``time_zone``."""
    if at.tzinfo is None:
        raise ValueError("local_date needs a timezone-aware datetime")
    return at.astimezone(ZoneInfo(time_zone)).date()


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """Points earned on day D expire at the end of day D + ``validity_months``.

    ``validity_months == 0`` means points never expire.
    """

    validity_months: int
    time_zone: str = "Europe/Prague"

    def __post_init__(self) -> None:
        if not 0 <= self.validity_months <= MAX_VALIDITY_MONTHS:
            raise InvalidInput(
                "Validity must be between 0 (never expires) and %(max)s months.",
                max=MAX_VALIDITY_MONTHS,
            )

    @property
    def never_expires(self) -> bool:
        return self.validity_months == 0

    def expires_on(self, earned_at: datetime) -> date | None:
        """The last day on which points earned at ``earned_at`` are still valid."""
        if self.never_expires:
            return None
        return add_months(local_date(earned_at, self.time_zone), self.validity_months)

    def expiry_instant(self, last_valid_day: date) -> datetime:
        """The instant points with this last valid day expire: the next local midnight."""
        next_day = last_valid_day + timedelta(days=1)
        return datetime.combine(next_day, time(0), tzinfo=ZoneInfo(self.time_zone))

    def is_expired(self, last_valid_day: date, at: datetime) -> bool:
        return last_valid_day < local_date(at, self.time_zone)
