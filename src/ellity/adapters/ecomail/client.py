"""One merchant's Ecomail account over HTTP: ``MarketingPlatform`` on a shared httpx client.

Every call takes a slot from the request limiter first, sends the API key in the ``key``
header (never in the URL, so neither httpx's logs nor error messages can show it) and turns
every way it can fail into the port's errors:

- a 401, or any answer whose body is ``{"message": "Wrong api key"}`` -> ``InvalidApiKey``
- 429 -> ``MarketingRateLimited`` after telling the limiter to hold every worker back for
  ``Retry-After`` (seconds or an HTTP date; 60 s when missing)
- 5xx, timeouts, connection and other transport errors, an unexpected status, a 2xx whose
  body is not the JSON expected -> ``MarketingUnavailable``
- 404 on a list's path -> ``ListNotFound`` (except ``membership``: not a member -> ``None``,
  and ``unsubscribe_contact``: not a member -> ``False``, see there)
- any other 4xx -> ``MarketingRejected`` with Ecomail's ``message``/``errors``, clipped

Each call is logged at DEBUG (method, path, status, time); a failed one (no answer, or any
status but a 2xx and an expected 404) as a WARNING with its status and path. A path never
shows a contact's email address (``_shown``), and no line shows the key.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import quote, unquote

import httpx

from ellity.adapters.ecomail import wire
from ellity.adapters.ecomail.limiter import RequestLimiter, limiter_key
from ellity.ports.marketing import (
    BULK_LIMIT,
    MEMBERS_PER_PAGE,
    BeforeSend,
    ContactData,
    ContactList,
    InvalidApiKey,
    ListDetail,
    ListNotFound,
    MarketingRateLimited,
    MarketingRejected,
    MarketingUnavailable,
    MemberFilter,
    MemberPage,
    Membership,
    TrackerEvent,
    check_member_page,
    check_share,
)
from ellity.ports.operations import ECOMAIL_RATE_LIMITED, WorkCounters

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api2.ecomailapp.cz"
MAX_LIST_PAGES = 100  # a runaway paginator cannot keep a job busy for ever
WRONG_KEY = (
    "Ecomail does not accept the API key. Copy the current key from Ecomail"
    " (Manage your account → For developers) into Ellity's settings."
)


class EcomailMarketingPlatform:
    """Cheap to create: one per API key and task; the httpx client and limiter are shared."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_key: str,
        *,
        account: str = "",
        limiter: RequestLimiter | None = None,
        base_url: str = DEFAULT_BASE_URL,
        counters: WorkCounters | None = None,
        share: float | None = None,
    ) -> None:
        """``limiter=None`` sends unpaced; only for tests and one-off calls. ``counters``
        count the 429 answers. With a ``share`` every request also takes a slot of the key's
        share lane (``MarketingPlatforms.for_key``)."""
        check_share(share)
        self._http = http
        self._api_key = api_key.strip()
        self._account = account
        self._limiter = limiter
        self._limiter_key = limiter_key(self._api_key)
        self._base_url = base_url.rstrip("/")
        self._counters = counters
        self._share = share

    def __repr__(self) -> str:  # never show the key
        return f"EcomailMarketingPlatform(account={self._account!r}, base_url={self._base_url!r})"

    async def check_key(self) -> None:
        await self._call("GET", "/account")

    async def lists(self) -> list[ContactList]:
        with _readable():
            found, last_page = wire.contact_lists(await self._call("GET", "/lists"))
            page = 1
            while last_page is not None and page < min(last_page, MAX_LIST_PAGES):
                page += 1
                more, last_page = wire.contact_lists(
                    await self._call("GET", "/lists", params={"page": page})
                )
                found.extend(more)
        return found

    async def list_detail(self, list_id: str) -> ListDetail:
        body = await self._call("GET", f"/lists/{_segment(list_id)}", list_id=list_id)
        with _readable():
            return wire.list_detail(body)

    async def add_contacts(
        self,
        list_id: str,
        contacts: Sequence[ContactData],
        *,
        before_send: BeforeSend | None = None,
    ) -> int:
        if not _check_bulk(contacts):
            return 0
        body = await self._call(
            "POST",
            f"/lists/{_segment(list_id)}/subscribe-bulk",
            json=wire.subscribe_bulk(contacts),
            list_id=list_id,
            before_send=before_send,
        )
        with _readable():
            return wire.counter(body, "inserts")

    async def update_contacts(self, list_id: str, contacts: Sequence[ContactData]) -> int:
        if not _check_bulk(contacts):
            return 0
        body = await self._call(
            "PUT",
            f"/lists/{_segment(list_id)}/update-subscriber-bulk",
            json=wire.update_bulk(contacts),
            list_id=list_id,
        )
        with _readable():
            return wire.counter(body, "updates")

    async def membership(self, list_id: str, email: str) -> Membership | None:
        body = await self._call(
            "GET",
            f"/lists/{_segment(list_id)}/subscriber/{quote(email, safe='@')}",
            list_id=list_id,
            missing_ok=True,
        )
        if isinstance(body, _Missing):
            return None
        with _readable():
            return wire.membership(body, email)

    async def members(
        self, list_id: str, *, status: MemberFilter, page: int, per_page: int = MEMBERS_PER_PAGE
    ) -> MemberPage:
        check_member_page(page, per_page)
        body = await self._call(
            "GET",
            f"/lists/{_segment(list_id)}/subscribers",
            params={"status": MemberFilter(status).value, "page": page, "per_page": per_page},
            list_id=list_id,
        )
        with _readable():
            return wire.member_page(body, per_page=per_page)

    async def unsubscribe_contact(self, list_id: str, email: str) -> bool:
        path = f"/lists/{_segment(list_id)}/unsubscribe"
        body = await self._call(
            "DELETE", path, json=wire.unsubscribe(email), list_id=list_id, missing_ok=True
        )
        if not isinstance(body, _Missing):
            return True  # Ecomail answers the membership row, also for one unsubscribed before
        # Assumption: Ecomail's 404 bodies here are unconfirmed. The emulator (like Ecomail's
        # other 404s, as far as seen) says {"message": "Subscriber not found"} for an email
        # not in the list and {"message": "List not found"} for a list that is gone. A 404
        # whose message names the subscriber is taken at its word; any other 404 (the list
        # named, other words, no JSON) is settled by asking for the list: a deleted list
        # raises ListNotFound there, an existing one means the contact is not in it.
        if wire.names_the_subscriber(body.body):
            return False
        await self._call("GET", f"/lists/{_segment(list_id)}", list_id=list_id)
        return False

    async def send_event(
        self, event: TrackerEvent, *, before_send: BeforeSend | None = None
    ) -> None:
        await self._call(
            "POST", "/tracker/events", json=wire.tracker_event(event), before_send=before_send
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        list_id: str | None = None,
        missing_ok: bool = False,
        before_send: BeforeSend | None = None,
    ) -> Any:
        """The decoded JSON of a 2xx answer; with ``missing_ok`` a 404 is no error but a
        ``_Missing`` holding its body."""
        if not _usable(self._api_key):
            raise InvalidApiKey(WRONG_KEY)
        if self._limiter is not None:
            await self._limiter.acquire(self._limiter_key, share=self._share)
        if before_send is not None:
            await before_send()
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method,
                self._base_url + path,
                json=json,
                params=params,
                headers={"key": self._api_key, "Accept": "application/json"},
            )
        except httpx.TimeoutException as exc:
            self._log_failure(method, path, _reason(exc))
            raise MarketingUnavailable(self._timed_out(exc)) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            self._log_failure(method, path, _reason(exc))
            raise MarketingUnavailable(
                "Ellity could not reach Ecomail; it will try again."
            ) from None
        status = response.status_code
        logger.debug(
            "Ecomail %s %s: HTTP %d in %.0f ms",
            method,
            _shown(path),
            status,
            (time.perf_counter() - started) * 1000,
        )
        # a 429 is logged where every worker is held back (``_hold_back``)
        if not (200 <= status < 300 or status == 429 or (status == 404 and missing_ok)):
            self._log_failure(method, path, f"HTTP {status}")
        return await self._read(response, list_id=list_id, missing_ok=missing_ok)

    def _log_failure(self, method: str, path: str, reason: str) -> None:
        logger.warning(
            "Ecomail call %s %s for %s failed: %s", method, _shown(path), self._account, reason
        )

    async def _read(
        self, response: httpx.Response, *, list_id: str | None, missing_ok: bool
    ) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:  # not JSON, or not even text
            body = _NOT_JSON
        if status == 401 or wire.is_wrong_key(body):
            raise InvalidApiKey(WRONG_KEY)
        if status == 429:
            await self._hold_back(response)
        if status >= 500:
            raise MarketingUnavailable(
                f"Ecomail is having trouble (HTTP {status}); Ellity will try again."
            )
        if status == 404 and missing_ok:
            return _Missing(None if body is _NOT_JSON else body)
        if status == 404 and list_id is not None:
            raise ListNotFound(
                f"The Ecomail list {list_id} does not exist (any more); choose another list.",
                status=404,
            )
        if 400 <= status < 500:
            said = wire.refusal(body if body is not _NOT_JSON else None, _text(response))
            said = self._scrub(said)
            raise MarketingRejected(
                f"Ecomail refused the request (HTTP {status})" + (f": {said}" if said else "."),
                status=status,
            )
        if not 200 <= status < 300:
            raise MarketingUnavailable(
                f"Ecomail gave an unexpected answer (HTTP {status}); Ellity will try again."
            )
        if status == 204:
            return {}
        if body is _NOT_JSON:
            raise MarketingUnavailable(
                f"Ecomail sent an answer Ellity could not read (HTTP {status});"
                " Ellity will try again."
            )
        return body

    async def _hold_back(self, response: httpx.Response) -> NoReturn:
        """Ecomail says "too many": every worker waits ``Retry-After`` for this key."""
        wait = wire.retry_after(response.headers.get("Retry-After"), now=datetime.now(UTC))
        if self._counters is not None:
            self._counters.add(ECOMAIL_RATE_LIMITED)
        request = response.request
        logger.warning(
            "Ecomail call %s %s for %s failed: HTTP 429; holding calls back %.0f s",
            request.method,
            _shown(request.url.path),
            self._account,
            wait,
        )
        if self._limiter is not None:
            # Without Redis the limiter logs it; the caller still waits through retry_after.
            with suppress(MarketingUnavailable):
                await self._limiter.block(self._limiter_key, wait)
        raise MarketingRateLimited(
            f"Ecomail asked Ellity to slow down; Ellity will try again in"
            f" {max(1, math.ceil(wait))} s.",
            retry_after=wait,
        )

    def _timed_out(self, exc: httpx.TimeoutException) -> str:
        timeout = self._http.timeout
        if isinstance(exc, httpx.ConnectTimeout):
            return _within("Ellity could not connect to Ecomail", timeout.connect)
        if isinstance(exc, httpx.PoolTimeout):
            return "Ellity is making too many calls to Ecomail at once; it will try again."
        if isinstance(exc, httpx.WriteTimeout):
            return _within("Ellity could not send its request to Ecomail", timeout.write)
        return _within("Ecomail did not answer", timeout.read)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[API key]") if self._api_key else text


_NOT_JSON = object()


@dataclass(frozen=True, slots=True)
class _Missing:
    """A 404 the caller asked to see (``missing_ok``): its decoded JSON, ``None`` if none."""

    body: Any


def _within(what: str, seconds: float | None) -> str:
    if seconds is None:
        return f"{what} in time; Ellity will try again."
    return f"{what} within {seconds:g} seconds; Ellity will try again."


def _check_bulk(contacts: Sequence[ContactData]) -> bool:
    """False for nothing to send; refuses more than Ecomail takes (it drops the rest silently)."""
    if len(contacts) > BULK_LIMIT:
        raise ValueError(f"at most {BULK_LIMIT} contacts per call, not {len(contacts)}")
    return bool(contacts)


def _usable(api_key: str) -> bool:
    """A key that can go into a header at all (printable ASCII, no spaces)."""
    return bool(api_key) and api_key.isascii() and api_key.isprintable() and " " not in api_key


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _text(response: httpx.Response) -> str:
    try:
        return response.text[:2000]
    except (UnicodeDecodeError, LookupError):
        return ""


def _shown(path: str) -> str:
    """The path as logged: a segment that holds an email address (a subscriber's) is
    ``…``."""
    return "/".join("…" if "@" in unquote(segment) else segment for segment in path.split("/"))


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@contextmanager
def _readable() -> Iterator[None]:
    try:
        yield
    except wire.Unreadable as exc:
        logger.warning("unreadable answer from Ecomail: %s", exc)
        raise MarketingUnavailable(
            "Ecomail sent an answer Ellity could not read; Ellity will try again."
        ) from None
