"""Fault knobs for the API endpoints (the Python inspection helpers never fail)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus

# Laravel's stock wording for these answers; Ecomail's own bodies are unconfirmed.
TOO_MANY = "Too Many Attempts."


@dataclass(frozen=True, slots=True)
class AfterProcessing:
    """What happens to the answer of a request that was processed: replaced by ``status``
    (with a JSON message) when it is set, else held back ``late`` seconds."""

    status: int | None = None
    late: float = 0.0


class Faults:
    """Faults answered before the request reaches its endpoint (nothing changes):

    - ``fail_next(n, status)`` / ``fail_always(status)``: answer ``status`` with a JSON message.
    - ``rate_limit_next(n, retry_after)``: answer 429 with ``Retry-After``.
    - ``delay``: sleep that long once the whole request has arrived, then handle it (a client
      that gave up meanwhile has still sent a request that takes effect).

    Faults after the request was processed (state changed, webhooks fired), so the client may
    never learn what it did. Its webhooks are sent as soon as it is processed, before the
    (lost or late) answer:

    - ``lose_answer_next(n, status)``: answer ``status`` with a JSON message instead.
    - ``answer_late_next(n, seconds=...)``: send the real answer only ``seconds`` later (a client
      with a shorter timeout gives up after the request took effect).

    These two take the next requests that reach an endpoint, in the order they were asked
    for; a request answered before (another fault, a wrong key, the rate limit) does not use
    one up. The request log records the status the client was sent, once it is sent (a late
    answer's record appears after the wait). ``clear()`` ends all.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._failures: deque[int] = deque()
        self._always: int | None = None
        self._throttles: deque[int] = deque()
        self._after: deque[AfterProcessing] = deque()
        self.delay = 0.0  # seconds to sleep before a request is handled (it still is, after)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next ``n`` API requests answer ``status`` with a JSON message."""
        with self._lock:
            self._failures.extend([status] * n)

    def fail_always(self, status: int = 500) -> None:
        with self._lock:
            self._always = status

    def rate_limit_next(self, n: int = 1, retry_after: int = 2) -> None:
        """The next ``n`` API requests answer 429 with ``Retry-After: retry_after``."""
        with self._lock:
            self._throttles.extend([retry_after] * n)

    def lose_answer_next(self, n: int = 1, status: int = 500) -> None:
        """The next ``n`` requests are processed, then answered ``status`` with a JSON message."""
        with self._lock:
            self._after.extend([AfterProcessing(status=status)] * n)

    def answer_late_next(self, n: int = 1, *, seconds: float) -> None:
        """The next ``n`` requests are processed at once and answered ``seconds`` later."""
        with self._lock:
            self._after.extend([AfterProcessing(late=seconds)] * n)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._throttles.clear()
            self._after.clear()
            self._always = None
            self.delay = 0.0

    def take(self) -> tuple[int, dict[str, str], dict[str, str]] | None:
        """The injected answer for this request, if any: (status, body, headers)."""
        with self._lock:
            if self._throttles:
                seconds = self._throttles.popleft()
                return 429, {"message": TOO_MANY}, {"retry-after": str(seconds)}
            if self._failures:
                status = self._failures.popleft()
            elif self._always is not None:
                status = self._always
            else:
                return None
        return status, {"message": message_for(status)}, {}

    def take_after_processing(self) -> AfterProcessing | None:
        """What happens to the answer of this request, which reached its endpoint."""
        with self._lock:
            return self._after.popleft() if self._after else None


def message_for(status: int) -> str:
    if status == 500:
        return "Server Error"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
