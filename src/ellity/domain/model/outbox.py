"""The outbox: work for the outside world, recorded in the transaction that causes it.

An item is ``pending`` until a worker settles it as ``delivered``, ``skipped`` (nothing to send
any more, e.g. the merchant switched system emails off meanwhile) or ``failed`` (given up; the
merchant sees why and may retry). A worker *claims* pending items for a lease; a claim that
runs out (the worker died) is taken over by another worker. Delivery is therefore
at-least-once: an item whose worker dies during its call (after the call began, before the
outcome was recorded) is sent again; the worker records that the call begins, so such an item
is known (``OutboxItem.interrupted``) and no other item is ever sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeAlias

from ellity.domain.model.ids import CustomerId, MerchantId

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
Payload: TypeAlias = dict[str, JsonValue]

MAX_ERROR_LENGTH = 1000


class Topic(StrEnum):
    """What an item asks for; each topic has one handler in ``services.delivery_handlers``."""

    POINTS_CHANGED_EMAIL = "email.points_changed"
    PIN_ISSUED_EMAIL = "email.pin_issued"
    POINTS_EXPIRING_EMAIL = "email.points_expiring"
    ECOMAIL_EVENT = "ecomail.event"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A pending item as a worker claimed it. ``attempts`` counts this claim too.
    ``interrupted``: an earlier attempt's call began and its outcome was never recorded (its
    worker died during the call), so the item may have been delivered already.
    ``request_id``: the web request that recorded it, if one did (its log lines' id)."""

    id: int
    merchant_id: MerchantId
    customer_id: CustomerId | None
    topic: str
    payload: Payload
    attempts: int
    created_at: datetime
    interrupted: bool = False
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """An item given up on, as the merchant sees it."""

    id: int
    topic: str
    customer_id: CustomerId | None
    attempts: int
    last_error: str
    created_at: datetime
    last_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class EmailProblem:
    """Why the merchant's emails are not going out: the newest error among the emails that
    wait for a retry or failed, and how many wait."""

    error: str
    at: datetime | None  # when the failing attempt was made
    waiting: int  # emails waiting to be sent (retries included)
    failed: int  # emails given up on


@dataclass(frozen=True, slots=True)
class DeliveryHealth:
    """What is waiting, what failed, and when something was last delivered."""

    pending: int
    failed: int
    oldest_pending_at: datetime | None
    last_delivered_at: datetime | None


def clip_error(message: str) -> str:
    """Errors are stored and shown to merchants: one bounded piece of text."""
    message = " ".join(message.split())
    return message if len(message) <= MAX_ERROR_LENGTH else message[: MAX_ERROR_LENGTH - 1] + "…"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, giving up after ``max_attempts``.

    The n-th failed attempt waits ``min(base * 2**(n-1), cap)``, stretched by a jitter of up to
    ``jitter`` (a fraction) so that items which failed together do not retry together. The
    jitter is derived from the item id and the attempt: no randomness needs to be passed in,
    and the schedule of one item is reproducible.
    """

    max_attempts: int = 10
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=4)
    jitter: float = 0.25

    def delay(self, attempts: int, *, item_id: int) -> timedelta:
        """How long to wait after the ``attempts``-th failed attempt (1-based)."""
        if attempts < 1:
            raise ValueError("attempts counts from 1")
        plain = min(self.base * (1 << min(attempts - 1, 32)), self.cap)
        return plain * (1 + self.jitter * _spread(item_id, attempts))

    def next_attempt_at(self, attempts: int, *, item_id: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts`` failed attempts; ``None``: give up."""
        if attempts >= self.max_attempts:
            return None
        return now + self.delay(attempts, item_id=item_id)


def _spread(item_id: int, attempts: int) -> float:
    """A number in [0, 1) that looks random across items and attempts (Knuth's hash)."""
    mixed = ((item_id * 2654435761) ^ (attempts * 40503)) & 0xFFFFFFFF
    mixed = (mixed * 2246822519) & 0xFFFFFFFF
    return mixed / 2**32
