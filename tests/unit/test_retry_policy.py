"""The outbox's retry schedule: exponential backoff with jitter, then giving up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ellity.domain.model.outbox import RetryPolicy, clip_error

POLICY = RetryPolicy()  # 30 s doubling, capped at 4 h, up to 25 % jitter, 10 attempts
NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempts", "plain"),
    [
        (1, timedelta(seconds=30)),
        (2, timedelta(minutes=1)),
        (3, timedelta(minutes=2)),
        (6, timedelta(minutes=16)),
        (9, timedelta(hours=2, minutes=8)),
        (10, timedelta(hours=4)),  # capped
        (60, timedelta(hours=4)),
    ],
)
def test_the_wait_doubles_per_attempt_up_to_the_cap_plus_at_most_a_quarter(
    attempts: int, plain: timedelta
) -> None:
    for item_id in range(1, 200):
        wait = POLICY.delay(attempts, item_id=item_id)
        assert plain <= wait < plain * 1.25


def test_items_that_failed_together_do_not_retry_together() -> None:
    waits = {POLICY.delay(1, item_id=item_id) for item_id in range(1, 101)}
    assert len(waits) > 90
    assert max(waits) - min(waits) > timedelta(seconds=5)


def test_the_schedule_of_one_item_is_reproducible() -> None:
    assert POLICY.delay(3, item_id=42) == POLICY.delay(3, item_id=42)
    assert POLICY.next_attempt_at(3, item_id=42, now=NOW) == NOW + POLICY.delay(3, item_id=42)


def test_after_the_last_attempt_there_is_no_next_one() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.next_attempt_at(2, item_id=1, now=NOW) is not None
    assert policy.next_attempt_at(3, item_id=1, now=NOW) is None


def test_stored_errors_are_one_bounded_line() -> None:
    assert clip_error("550 5.1.1\r\n  no such\tuser ") == "550 5.1.1 no such user"
    assert len(clip_error("x" * 5000)) == 1000
