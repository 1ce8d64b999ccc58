"""The emulator: accounts by API key, request log, rate limit, faults, webhooks."""

from __future__ import annotations

import gc
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.ecomail_emulator.controls import ControlsMixin
from tests.ecomail_emulator.faults import Faults
from tests.ecomail_emulator.model import Account, Contact, MailingList, Member
from tests.ecomail_emulator.webhooks import WebhookCall, WebhookSender

if TYPE_CHECKING:
    from litestar.types import ASGIApp

#: With this many members made, the emulator moves its objects out of the garbage collector's
#: way every FREEZE_EVERY members (gc.freeze): at a million members a full collection stalls a
#: bulk call for up to a second and the backfill takes twice as long. ``close()`` undoes it.
FREEZE_FROM = 100_000
FREEZE_EVERY = 50_000

#: Webhooks fired while one API request is handled; sent after its response (see app.Gate).
OUTBOX: ContextVar[list[tuple[str, dict[str, Any]]] | None] = ContextVar(
    "ecomail_outbox", default=None
)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    at: float  # time.monotonic() when the request arrived
    key: str | None
    method: str
    path: str
    status: int


class Emulator(ControlsMixin):
    """State is shared between the test thread and the server thread: every change happens
    under ``lock``. Reading the plain attributes from a test needs no lock. The changes made
    behind the client's back (``edit_field``, ``unsubscribe``, ``delete_member``, ...) are in
    ``ControlsMixin``."""

    def __init__(
        self,
        rate_limit: int = 1000,
        rate_window: float = 60.0,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rate_limit = rate_limit  # requests a key may make in any rate_window seconds
        self.rate_window = rate_window
        self.lock = threading.RLock()
        self.faults = Faults(self.lock)
        self.accounts: dict[str, Account] = {}
        self.requests: list[RequestRecord] = []
        self.clock = clock or (lambda: datetime.now(UTC))
        self.list_ids = itertools.count(1)
        self.contact_ids: Iterator[int] = itertools.count(1001)
        self.member_ids: Iterator[int] = itertools.count(1)
        self.event_ids = itertools.count(1)
        self._account_ids = itertools.count(1)
        self._served: dict[str, deque[float]] = {}
        self._webhooks = WebhookSender()
        self._app: ASGIApp | None = None
        self._members_made = 0
        self._froze = False

    # --- set-up and inspection ---------------------------------------------------------

    def add_account(self, key: str, name: str | None = None) -> Account:
        with self.lock:
            if key in self.accounts:
                raise ValueError(f"an account with key {key!r} exists already")
            number = next(self._account_ids)
            account = Account(self, number, key, name or f"Account {number}")
            self.accounts[key] = account
            return account

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            from tests.ecomail_emulator.app import create_app  # noqa: PLC0415 (import cycle)

            self._app = create_app(self)
        return self._app

    @property
    def webhook_calls(self) -> list[WebhookCall]:
        return self._webhooks.calls

    def wait_for_webhooks(self, timeout: float = 5.0) -> None:
        """Block until every fired webhook has been answered or has failed."""
        self._webhooks.wait(timeout)

    def max_requests_in_window(self, key: str, window: float = 60.0) -> int:
        """The most requests (any answer, refused ones too) ``key`` sent in any ``window``."""
        times = sorted(r.at for r in list(self.requests) if r.key == key)
        most = start = 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            most = max(most, end - start + 1)
        return most

    def max_requests_per_minute(self, key: str) -> int:
        """The most requests ``key`` sent in any 60 seconds (refused ones too): Ecomail allows
        1000."""
        return self.max_requests_in_window(key, 60.0)

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        self._webhooks.close()
        if self._froze:
            gc.unfreeze()
            self._froze = False

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- used by the model and the app -------------------------------------------------

    def new_member(
        self, lst: MailingList, email: str, status: int, fields: dict[str, Any], now: datetime
    ) -> Member:
        contact = lst.account.contacts.get(email)
        if contact is None:
            contact = Contact(next(self.contact_ids), email, now)
            lst.account.contacts[email] = contact
        contact.memberships += 1
        member = Member(
            next(self.member_ids),
            contact,
            status,
            fields,
            now,
            now if status == 2 else None,
            "api",
            None,
            lst,
        )
        lst.members[email] = member
        lst.index.add(member)
        self._members_made += 1
        if self._members_made >= FREEZE_FROM and self._members_made % FREEZE_EVERY == 0:
            gc.freeze()
            self._froze = True
        return member

    def fire_webhook(
        self, lst: MailingList, email: str, status: str, campaign_id: int | None = None
    ) -> None:
        if not lst.webhook_url:
            return
        body = {
            "payload": {
                "email": email,
                "status": status,
                "listId": lst.id,
                "campaignId": campaign_id,
            }
        }
        self._webhooks.reserve()
        outbox = OUTBOX.get()
        if outbox is None:  # an app-side action from a test: send now
            self._webhooks.send([(lst.webhook_url, body)])
        else:
            outbox.append((lst.webhook_url, body))

    def send_webhooks(self, deliveries: list[tuple[str, dict[str, Any]]]) -> None:
        self._webhooks.send(deliveries)

    def admit(self, key: str | None) -> Account | tuple[int, dict[str, Any], dict[str, str]]:
        """The account this request may use, or the refusal to answer with. Injected faults
        come first (whatever the key) and, like refusals, do not count against the limit."""
        injected = self.faults.take()
        if injected is not None:
            return injected
        with self.lock:
            account = self.accounts.get(key) if key else None
            if account is None:
                # Body per the official PrestaShop module; the status (401) is an assumption,
                # and a missing key is assumed to answer like a wrong one.
                return 401, {"message": "Wrong api key"}, {}
            wait = self._throttle(account.key, time.monotonic())
            if wait is not None:
                return 429, {"message": "Too Many Attempts."}, {"retry-after": str(wait)}
            return account

    def _throttle(self, key: str, now: float) -> int | None:
        """Sliding window per key; a refused request is not counted as served."""
        served = self._served.setdefault(key, deque())
        while served and served[0] <= now - self.rate_window:
            served.popleft()
        if len(served) >= self.rate_limit:
            # the oldest request that must leave the window before one more fits
            oldest = served[len(served) - self.rate_limit] if self.rate_limit > 0 else now
            return max(1, math.ceil(oldest + self.rate_window - now))
        served.append(now)
        return None
