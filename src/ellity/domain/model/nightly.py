"""When a merchant's nightly run (expiry, then the pre-expiry notices) is due.

The run belongs to the merchant's local calendar day: it is due once the local time is past
``NIGHTLY_AT`` and no run has finished for that local date yet. A night missed because no
worker ran is therefore run at the next check, whatever the hour.

A run holds a claim (a lease) while it works. A run that fails or is cancelled gives its
claim back; one whose process died cannot, so the claim runs out by itself: until then the
night is not due, afterwards it is due again.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from ellity.domain.model.expiry import local_date, zone

NIGHTLY_AT = time(2, 0)


def nightly_date(
    now: datetime,
    time_zone: str,
    last_run_on: date | None,
    claimed_until: datetime | None = None,
) -> date | None:
    """The local date to run the nightly for at ``now``, or None when it is not due (too
    early, done for today, or a run's claim still holds)."""
    local = now.astimezone(zone(time_zone))
    today = local.date()
    if local.time() < NIGHTLY_AT:
        return None
    if last_run_on is not None and last_run_on >= today:
        return None
    if claimed_until is not None and claimed_until > now:
        return None
    return today


def notice_window(now: datetime, time_zone: str, days: int) -> tuple[date, date]:
    """The last valid days a pre-expiry notice covers tonight: from today (so a missed night
    is caught up) to ``days`` days ahead, both included."""
    today = local_date(now, time_zone)
    return today, today + timedelta(days=days)
