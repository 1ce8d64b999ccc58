"""Delivering list webhooks: POST JSON, 10 s timeout, from the emulator's own thread.

A webhook is counted as pending the moment the state changes (so ``wait_for_webhooks`` right
after an API answer sees it) and sent once that request's response has gone out.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT = 10.0  # the campaign-report webhook's timeout (support article); assumed here too
CONCURRENCY = 16


@dataclass(slots=True)
class WebhookCall:
    url: str
    body: dict[str, Any]
    status: int | None
    error: str | None


class WebhookSender:
    def __init__(self) -> None:
        self.calls: list[WebhookCall] = []
        self._pending = 0
        self._done = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    def reserve(self) -> None:
        with self._done:
            self._pending += 1

    def send(self, deliveries: list[tuple[str, dict[str, Any]]]) -> None:
        """Send reserved deliveries in the background."""
        loop = self._start()
        for url, body in deliveries:
            asyncio.run_coroutine_threadsafe(self._deliver(url, body), loop)

    def wait(self, timeout: float) -> None:
        with self._done:
            if not self._done.wait_for(lambda: self._pending == 0, timeout):
                raise TimeoutError(f"{self._pending} webhook(s) still unanswered after {timeout}s")

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = self._client = None

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._done:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="ecomail-webhooks", daemon=True
                )
                self._thread.start()
            return self._loop

    def _transport(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        if self._client is None or self._slots is None:  # made on the sender's own loop
            self._client = httpx.AsyncClient(timeout=TIMEOUT)
            self._slots = asyncio.Semaphore(CONCURRENCY)
        return self._client, self._slots

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        status: int | None = None
        error: str | None = None
        try:
            client, slots = self._transport()
            async with slots:
                response = await client.post(url, json=body)
            status = response.status_code
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._done:
                self.calls.append(WebhookCall(url, body, status, error))
                self._pending -= 1
                self._done.notify_all()
