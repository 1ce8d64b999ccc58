"""Fault knobs for the API endpoints (the Python inspection helpers never fail)."""

from __future__ import annotations

import threading
from collections import deque
from http import HTTPStatus

# Laravel's stock wording for these answers; Ecomail's own bodies are unconfirmed.
TOO_MANY = "Too Many Attempts."


class Faults:
    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._failures: deque[int] = deque()
        self._always: int | None = None
        self._throttles: deque[int] = deque()
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

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._throttles.clear()
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


def message_for(status: int) -> str:
    if status == 500:
        return "Server Error"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
