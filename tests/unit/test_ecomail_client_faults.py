"""The Ecomail client against ``httpx.MockTransport``: what it sends, and how every way a call
can fail reaches the caller as one of the port's errors (never an httpx exception, never the key).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from ellity.adapters.ecomail import EcomailPlatforms, EcomailSettings, LocalRequestLimiter
from ellity.ports.marketing import (
    BULK_LIMIT,
    BudgetExhausted,
    BudgetHold,
    ContactData,
    InvalidApiKey,
    JsonValue,
    ListNotFound,
    MarketingError,
    MarketingPlatform,
    MarketingRateLimited,
    MarketingRejected,
    MarketingUnavailable,
    MemberFilter,
    SubscriptionStatus,
    TrackerEvent,
    TypedValue,
)

KEY = "k3y-5ecret-0123456789abcdef"
BASE = "https://api2.ecomailapp.cz"

Handler = Callable[[httpx.Request], httpx.Response]


class Ecomail:
    """A scripted Ecomail: answers every request with ``handler`` and keeps what was sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.handler: Handler = lambda request: httpx.Response(200, json={})

    def answer(self, status: int = 200, **kwargs: Any) -> None:
        self.handler = lambda request: httpx.Response(status, **kwargs)

    def fail(self, exc_type: type[httpx.TransportError], message: str = "boom") -> None:
        def raise_(request: httpx.Request) -> httpx.Response:
            raise exc_type(message, request=request)

        self.handler = raise_

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def sent(self) -> Any:
        return json.loads(self.requests[-1].content)


@pytest.fixture
def ecomail() -> Ecomail:
    return Ecomail()


@pytest.fixture
async def platforms(ecomail: Ecomail) -> AsyncIterator[EcomailPlatforms]:
    async with EcomailPlatforms(
        LocalRequestLimiter(limit=100, window=60.0, max_wait=1.0),
        transport=httpx.MockTransport(ecomail),
    ) as platforms:
        yield platforms


@pytest.fixture
def platform(platforms: EcomailPlatforms) -> MarketingPlatform:
    return platforms.for_key(KEY, account="anna")


def contact(email: str = "ann@example.cz", **fields: TypedValue) -> ContactData:
    return ContactData(email=email, custom_fields=fields)


CALLS: dict[str, Callable[[MarketingPlatform], Any]] = {
    "check_key": lambda p: p.check_key(),
    "lists": lambda p: p.lists(),
    "list_detail": lambda p: p.list_detail("7"),
    "add_contacts": lambda p: p.add_contacts("7", [contact()]),
    "update_contacts": lambda p: p.update_contacts("7", [contact()]),
    "membership": lambda p: p.membership("7", "ann@example.cz"),
    "members": lambda p: p.members("7", status=MemberFilter.SUBSCRIBED, page=1),
    "unsubscribe_contact": lambda p: p.unsubscribe_contact("7", "ann@example.cz"),
    "send_event": lambda p: p.send_event(
        TrackerEvent(email="ann@example.cz", category="c", action="a", label="l", value={})
    ),
}


# --- what is sent -----------------------------------------------------------------------


async def test_every_call_sends_the_key_in_the_key_header_and_never_in_the_url(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.handler = lambda request: httpx.Response(
        200, json=[] if request.url.path == "/lists" else {"inserts": 0, "updates": 0}
    )
    calls = ("check_key", "lists", "add_contacts", "update_contacts", "unsubscribe_contact")
    for call in (*calls, "send_event"):
        await CALLS[call](platform)
    assert len(ecomail.requests) == 6
    for request in ecomail.requests:
        assert request.headers["key"] == KEY
        assert KEY not in str(request.url)
        assert request.url.host == "api2.ecomailapp.cz"


async def test_check_key_asks_for_the_account_and_accepts_any_2xx(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(200, json={"name": "Anna"})
    await platform.check_key()
    assert (ecomail.requests[0].method, ecomail.requests[0].url.path) == ("GET", "/account")


async def test_add_contacts_subscribes_in_bulk_with_typed_fields_and_no_status(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(200, json={"inserts": 1})
    added = await platform.add_contacts(
        "7",
        [
            ContactData(
                email="ann@example.cz",
                first_name="Ann",
                last_name="Novak",
                custom_fields={
                    "ellity_points": TypedValue(120, "int"),
                    "ellity_expires": TypedValue("2025-03-31", "date"),
                },
            ),
            ContactData(email="bob@example.cz", custom_fields={}),
        ],
    )
    request = ecomail.requests[0]
    assert (request.method, request.url.path) == ("POST", "/lists/7/subscribe-bulk")
    assert request.headers["content-type"] == "application/json"
    assert ecomail.sent == {
        "subscriber_data": [
            {
                "email": "ann@example.cz",
                "name": "Ann",
                "surname": "Novak",
                "custom_fields": {
                    "ellity_points": {"value": 120, "type": "int"},
                    "ellity_expires": {"value": "2025-03-31", "type": "date"},
                },
            },
            {"email": "bob@example.cz"},
        ],
        "update_existing": True,
        "resubscribe": False,
        "trigger_autoresponders": False,
    }
    assert added == 1


async def test_update_contacts_updates_in_bulk_without_resubscribing(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(200, json={"updates": 1})
    updated = await platform.update_contacts("7", [contact(ellity_points=TypedValue(5, "int"))])
    request = ecomail.requests[0]
    assert (request.method, request.url.path) == ("PUT", "/lists/7/update-subscriber-bulk")
    assert ecomail.sent == {
        "subscriber_data": [
            {
                "email": "ann@example.cz",
                "custom_fields": {"ellity_points": {"value": 5, "type": "int"}},
            }
        ],
        "allow_resubscribe": False,
    }
    assert updated == 1


async def test_send_event_sends_the_value_as_a_json_encoded_string(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(200, json={"id": 1})
    value: dict[str, JsonValue] = {"points": 120, "reason": "nákup", "lots": [1, 2]}
    await platform.send_event(
        TrackerEvent(
            email="ann@example.cz", category="ellity", action="credit", label="Nákup", value=value
        )
    )
    request = ecomail.requests[0]
    assert (request.method, request.url.path) == ("POST", "/tracker/events")
    event = ecomail.sent["event"]
    assert {k: event[k] for k in ("email", "category", "action", "label")} == {
        "email": "ann@example.cz",
        "category": "ellity",
        "action": "credit",
        "label": "Nákup",
    }
    assert isinstance(event["value"], str)
    assert json.loads(event["value"]) == value


async def test_more_contacts_than_ecomail_takes_are_refused_before_anything_is_sent(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    too_many = [contact(f"c{n}@example.cz") for n in range(BULK_LIMIT + 1)]
    with pytest.raises(ValueError, match="3000"):
        await platform.add_contacts("7", too_many)
    with pytest.raises(ValueError, match="3000"):
        await platform.update_contacts("7", too_many)
    assert ecomail.requests == []


async def test_exactly_the_bulk_limit_is_sent(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(200, json={"inserts": BULK_LIMIT})
    added = await platform.add_contacts("7", [contact(f"c{n}@x.cz") for n in range(BULK_LIMIT)])
    assert added == BULK_LIMIT
    assert len(ecomail.sent["subscriber_data"]) == BULK_LIMIT


async def test_no_contacts_means_no_call(ecomail: Ecomail, platform: MarketingPlatform) -> None:
    assert await platform.add_contacts("7", []) == 0
    assert await platform.update_contacts("7", []) == 0
    assert ecomail.requests == []


async def test_the_base_url_is_configurable(ecomail: Ecomail) -> None:
    ecomail.answer(200, json={})
    settings = EcomailSettings(base_url="http://127.0.0.1:9999/emulator/")
    async with EcomailPlatforms(
        LocalRequestLimiter(), settings, transport=httpx.MockTransport(ecomail)
    ) as platforms:
        await platforms.for_key(KEY, account="anna").check_key()
    assert str(ecomail.requests[0].url) == "http://127.0.0.1:9999/emulator/account"


# --- what is read -----------------------------------------------------------------------


async def test_lists_read_a_bare_array_with_ids_as_strings(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(
        200, json=[{"id": 1, "name": "Newsletter", "from_name": "A"}, {"id": 2, "name": "VIP"}]
    )
    found = await platform.lists()
    assert [(x.id, x.name) for x in found] == [("1", "Newsletter"), ("2", "VIP")]


async def test_lists_follow_the_pages_of_a_paginated_answer(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    def paged(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        return httpx.Response(
            200,
            json={"current_page": page, "last_page": 3, "data": [{"id": page, "name": f"L{page}"}]},
        )

    ecomail.handler = paged
    found = await platform.lists()
    assert [x.id for x in found] == ["1", "2", "3"]
    assert len(ecomail.requests) == 3


async def test_list_detail_reads_the_field_types_with_lower_cased_keys(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(
        200,
        json={
            "list": {
                "id": "7",
                "name": "Newsletter",
                "custom_fields": {
                    "ELLITY_POINTS": {"type": "int", "name": "Points"},
                    "date1": {"type": "string", "name": "Date Field"},
                },
            },
            "subscribers": {"subscribed": 3},
        },
    )
    detail = await platform.list_detail("7")
    assert (detail.id, detail.name) == ("7", "Newsletter")
    assert dict(detail.custom_fields) == {"ellity_points": "int", "date1": "string"}
    assert ecomail.requests[0].url.path == "/lists/7"


async def test_a_list_without_fields_has_an_empty_array_and_reads_as_no_fields(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(200, json={"list": {"id": "7", "name": "Empty", "custom_fields": []}})
    assert dict((await platform.list_detail("7")).custom_fields) == {}


async def test_membership_reads_status_both_timestamp_styles_and_fields(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(
        200,
        json={
            "subscriber": {
                "email": "Ann+vip@Example.cz",
                "list_id": 7,
                "status": 2,
                "subscribed_at": "2015-01-21 10:50:04",
                "unsubscribed_at": "2024-11-27T11:18:00.000000Z",
                "custom_fields": {"ELLITY_POINTS": 120, "note": {"value": "x", "type": "string"}},
            }
        },
    )
    member = await platform.membership("7", "ann+vip@example.cz")
    assert ecomail.requests[0].url.raw_path == b"/lists/7/subscriber/ann%2Bvip@example.cz"
    assert member is not None
    assert member.status is SubscriptionStatus.UNSUBSCRIBED
    assert member.subscribed_at == datetime(2015, 1, 21, 10, 50, 4, tzinfo=UTC)
    assert member.unsubscribed_at == datetime(2024, 11, 27, 11, 18, tzinfo=UTC)
    assert dict(member.custom_fields) == {"ellity_points": 120, "note": "x"}


async def test_membership_with_empty_fields_and_no_unsubscription(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(
        200,
        json={
            "subscriber": {
                "email": "ann@example.cz",
                "status": 1,
                "subscribed_at": None,
                "unsubscribed_at": None,
                "custom_fields": [],
            }
        },
    )
    member = await platform.membership("7", "ann@example.cz")
    assert member is not None
    assert (member.status, member.subscribed_at, member.unsubscribed_at) == (
        SubscriptionStatus.SUBSCRIBED,
        None,
        None,
    )
    assert dict(member.custom_fields) == {}


async def test_membership_of_someone_not_in_the_list_is_none(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(404, json={"message": "Subscriber not found"})
    assert await platform.membership("7", "stranger@example.cz") is None


async def test_unsubscribe_contact_sends_a_delete_with_the_email_in_a_json_body(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(
        200,
        json={
            "id": 4,
            "list_id": 7,
            "email": "ann+vip@example.cz",
            "status": 2,
            "subscribed_at": "2024-11-27T11:18:00.000000Z",
            "unsubscribed_at": "2025-01-02T10:00:00.000000Z",
            "custom_fields": [],
            "source": "api",
        },
    )
    assert await platform.unsubscribe_contact("7", "ann+vip@example.cz") is True
    [request] = ecomail.requests
    assert (request.method, request.url.raw_path) == ("DELETE", b"/lists/7/unsubscribe")
    assert request.headers["content-type"] == "application/json"
    assert ecomail.sent == {"email": "ann+vip@example.cz"}


@pytest.mark.parametrize(
    "message", ["Subscriber not found", "Subscriber is not in this list", "Email not found"]
)
async def test_unsubscribe_contact_of_someone_not_in_the_list_is_false_without_more_calls(
    ecomail: Ecomail, platform: MarketingPlatform, message: str
) -> None:
    ecomail.answer(404, json={"message": message})
    assert await platform.unsubscribe_contact("7", "stranger@example.cz") is False
    assert len(ecomail.requests) == 1


def answer_unsubscribe_404(ecomail: Ecomail, body: Any, list_status: int) -> None:
    """The unsubscribe answers 404 with ``body``; asking for the list answers ``list_status``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            if isinstance(body, str):
                return httpx.Response(404, text=body)
            return httpx.Response(404, json=body)
        if list_status == 200:
            return httpx.Response(200, json={"list": {"id": "7", "name": "N", "custom_fields": []}})
        return httpx.Response(list_status, json={"message": "List not found"})

    ecomail.handler = handler


UNTOLD_404S = {
    "the list named": {"message": "List not found"},
    "other words": {"message": "Not Found"},
    "no message": {},
    "an html page": "<html><body>404</body></html>",
}


@pytest.mark.parametrize("body", UNTOLD_404S.values(), ids=UNTOLD_404S)
async def test_an_unsubscribe_404_that_does_not_name_the_subscriber_asks_for_the_list(
    ecomail: Ecomail, platform: MarketingPlatform, body: Any
) -> None:
    answer_unsubscribe_404(ecomail, body, list_status=404)
    with pytest.raises(ListNotFound, match="list 7"):
        await platform.unsubscribe_contact("7", "ann@example.cz")
    answer_unsubscribe_404(ecomail, body, list_status=200)
    assert await platform.unsubscribe_contact("7", "ann@example.cz") is False
    assert [(r.method, r.url.path) for r in ecomail.requests] == [
        ("DELETE", "/lists/7/unsubscribe"),
        ("GET", "/lists/7"),
    ] * 2


async def test_a_failing_list_check_after_an_unsubscribe_404_raises_its_error(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    answer_unsubscribe_404(ecomail, {"message": "Not Found"}, list_status=503)
    with pytest.raises(MarketingUnavailable, match="HTTP 503"):
        await platform.unsubscribe_contact("7", "ann@example.cz")


async def test_unsubscribe_contact_logs_neither_the_email_nor_the_key(
    ecomail: Ecomail, platforms: EcomailPlatforms, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    email = "ann.secret@example.cz"
    ecomail.answer(200, json={"email": email, "status": 2})
    await platforms.for_key(KEY, account="anna").unsubscribe_contact("7", email)
    for name in sorted(FAULTS, key=lambda name: name == "429"):  # a 429 holds the key back
        FAULTS[name](ecomail)
        with contextlib.suppress(MarketingError):
            await platforms.for_key(KEY, account="anna").unsubscribe_contact("7", email)
    assert len(ecomail.requests) > len(FAULTS)  # the 404 asked for the list too
    assert caplog.records
    assert email not in caplog.text
    assert KEY not in caplog.text


# --- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS)
async def test_a_401_means_the_key_is_wrong(
    ecomail: Ecomail, platform: MarketingPlatform, call: str
) -> None:
    ecomail.answer(401, json={"message": "Unauthorized"})
    with pytest.raises(InvalidApiKey, match="API key"):
        await CALLS[call](platform)


@pytest.mark.parametrize("status", [200, 400, 403, 404])
async def test_the_wrong_api_key_body_means_the_key_is_wrong_whatever_the_status(
    ecomail: Ecomail, platform: MarketingPlatform, status: int
) -> None:
    ecomail.answer(status, json={"message": "Wrong api key"})
    with pytest.raises(InvalidApiKey):
        await platform.check_key()
    with pytest.raises(InvalidApiKey):
        await platform.membership("7", "ann@example.cz")


@pytest.mark.parametrize("bad_key", ["", "   ", "klíč", "two words"])
async def test_a_key_that_cannot_be_a_key_is_refused_without_a_call(
    ecomail: Ecomail, platforms: EcomailPlatforms, bad_key: str
) -> None:
    with pytest.raises(InvalidApiKey):
        await platforms.for_key(bad_key, account="anna").check_key()
    assert ecomail.requests == []


async def test_a_429_with_retry_after_seconds_is_rate_limited_for_that_long(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(429, headers={"Retry-After": "17"}, json={"message": "Too Many Attempts."})
    with pytest.raises(MarketingRateLimited) as raised:
        await platform.lists()
    assert raised.value.retry_after == 17
    assert isinstance(raised.value, MarketingUnavailable)
    assert "17 s" in str(raised.value)


async def test_a_429_with_an_http_date_waits_until_then(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    then = datetime.now(UTC) + timedelta(seconds=30)
    ecomail.answer(429, headers={"Retry-After": format_datetime(then, usegmt=True)})
    with pytest.raises(MarketingRateLimited) as raised:
        await platform.lists()
    assert raised.value.retry_after is not None
    assert 27 <= raised.value.retry_after <= 30


@pytest.mark.parametrize("header", [None, "soon"])
async def test_a_429_without_a_usable_retry_after_waits_a_minute(
    ecomail: Ecomail, platform: MarketingPlatform, header: str | None
) -> None:
    ecomail.answer(429, headers={"Retry-After": header} if header else {}, text="")
    with pytest.raises(MarketingRateLimited) as raised:
        await platform.send_event(
            TrackerEvent(email="a@x.cz", category="c", action="a", label="l", value={})
        )
    assert raised.value.retry_after == 60


async def test_after_a_429_the_key_is_held_back_without_calling_ecomail(
    ecomail: Ecomail, platforms: EcomailPlatforms
) -> None:
    ecomail.answer(429, headers={"Retry-After": "30"})
    with pytest.raises(MarketingRateLimited):
        await platforms.for_key(KEY, account="anna").lists()
    ecomail.answer(200, json=[])
    # Another merchant object with the same key shares the block; the limiter does not wait 30 s.
    with pytest.raises(MarketingRateLimited) as raised:
        await platforms.for_key(KEY, account="anna-again").lists()
    assert raised.value.retry_after is not None
    assert 28 < raised.value.retry_after <= 30
    assert len(ecomail.requests) == 1
    # Another key is not held back.
    assert await platforms.for_key("other-key", account="bob").lists() == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_server_error_is_unavailable(
    ecomail: Ecomail, platform: MarketingPlatform, status: int
) -> None:
    ecomail.answer(status, text="<html>Bad Gateway</html>")
    with pytest.raises(MarketingUnavailable, match=f"HTTP {status}") as raised:
        await platform.add_contacts("7", [contact()])
    assert type(raised.value) is MarketingUnavailable


async def test_a_read_timeout_is_unavailable_and_names_the_wait(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.fail(httpx.ReadTimeout)
    with pytest.raises(MarketingUnavailable, match="did not answer within 20 seconds"):
        await platform.list_detail("7")


async def test_a_connect_timeout_is_unavailable(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.fail(httpx.ConnectTimeout)
    with pytest.raises(MarketingUnavailable, match="could not connect to Ecomail within 5 seconds"):
        await platform.check_key()


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.ProxyError]
)
async def test_connection_and_protocol_errors_are_unavailable(
    ecomail: Ecomail, platform: MarketingPlatform, error: type[httpx.TransportError]
) -> None:
    ecomail.fail(error, "[Errno 111] Connection refused")
    with pytest.raises(MarketingUnavailable, match="could not reach Ecomail"):
        await platform.send_event(
            TrackerEvent(email="a@x.cz", category="c", action="a", label="l", value={})
        )


@pytest.mark.parametrize("call", CALLS)
async def test_a_2xx_with_an_html_page_is_unavailable(
    ecomail: Ecomail, platform: MarketingPlatform, call: str
) -> None:
    ecomail.answer(200, text="<!doctype html><title>Maintenance</title>")
    with pytest.raises(MarketingUnavailable, match="could not read"):
        await CALLS[call](platform)


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("lists", {"unexpected": True}),
        ("list_detail", {"list": "7"}),
        ("list_detail", {"list": {"name": "no id"}}),
        ("add_contacts", ["inserts"]),
        ("update_contacts", {"updates": "many"}),
        ("membership", {"subscriber": {"email": "a@x.cz", "status": 99}}),
        ("members", [{"email": "a@x.cz", "status": 1}]),
        ("members", {"data": [{"email": "a@x.cz", "status": 1}]}),  # no total
        ("members", {"data": [{"status": 1}], "total": 1}),
        ("members", {"data": [{"email": "a@x.cz", "status": 1, "custom_fields": "x"}], "total": 1}),
        ("members", {"data": ["a@x.cz"], "total": 1}),
    ],
)
async def test_a_2xx_with_json_of_the_wrong_shape_is_unavailable(
    ecomail: Ecomail, platform: MarketingPlatform, call: str, body: Any
) -> None:
    ecomail.answer(200, json=body)
    with pytest.raises(MarketingUnavailable, match="could not read"):
        await CALLS[call](platform)


@pytest.mark.parametrize("call", ["list_detail", "add_contacts", "update_contacts", "members"])
async def test_a_404_on_a_list_means_the_list_is_gone(
    ecomail: Ecomail, platform: MarketingPlatform, call: str
) -> None:
    ecomail.answer(404, json={"message": "List not found"})
    with pytest.raises(ListNotFound, match="list 7") as raised:
        await CALLS[call](platform)
    assert raised.value.status == 404
    assert isinstance(raised.value, MarketingRejected)


async def test_a_422_is_rejected_with_ecomails_message_and_errors(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(
        422,
        json={
            "message": "The given data was invalid.",
            "errors": {"subscriber_data.0.email": ["The email must be a valid email address."]},
        },
    )
    with pytest.raises(MarketingRejected) as raised:
        await platform.add_contacts("7", [contact("not-an-email")])
    assert raised.value.status == 422
    assert type(raised.value) is MarketingRejected
    assert str(raised.value) == (
        "Ecomail refused the request (HTTP 422): The given data was invalid."
        " subscriber_data.0.email: The email must be a valid email address."
    )


async def test_an_unknown_email_for_an_event_is_rejected(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(400, json={"errors": "Subscriber does not exist"})
    with pytest.raises(MarketingRejected, match="Subscriber does not exist") as raised:
        await platform.send_event(
            TrackerEvent(email="nobody@x.cz", category="c", action="a", label="l", value={})
        )
    assert raised.value.status == 400


async def test_a_long_refusal_is_clipped(ecomail: Ecomail, platform: MarketingPlatform) -> None:
    ecomail.answer(400, json={"message": "x" * 5000})
    with pytest.raises(MarketingRejected) as raised:
        await platform.lists()
    assert len(str(raised.value)) < 360
    assert str(raised.value).endswith("…")


async def test_a_refusal_as_an_html_page_shows_only_the_status(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(403, text="<html><body>Forbidden by WAF</body></html>")
    with pytest.raises(MarketingRejected) as raised:
        await platform.check_key()
    assert str(raised.value) == "Ecomail refused the request (HTTP 403)."


async def test_an_unexpected_redirect_is_unavailable_and_not_followed(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(302, headers={"Location": "https://elsewhere.example/"})
    with pytest.raises(MarketingUnavailable, match="HTTP 302"):
        await platform.check_key()
    assert len(ecomail.requests) == 1


# --- the key stays secret ---------------------------------------------------------------

FAULTS: dict[str, Callable[[Ecomail], None]] = {
    "401": lambda e: e.answer(401, json={"message": "Wrong api key"}),
    "429": lambda e: e.answer(429),
    "500": lambda e: e.answer(500, text=f"upstream said {KEY}"),
    "timeout": lambda e: e.fail(httpx.ReadTimeout),
    "connect": lambda e: e.fail(httpx.ConnectError),
    "html": lambda e: e.answer(200, text="<html></html>"),
    "404": lambda e: e.answer(404, json={"message": "nope"}),
    "422 echoing the key": lambda e: e.answer(
        422, json={"message": f"Key {KEY} may not do this", "errors": {"key": [KEY]}}
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("call", CALLS)
async def test_the_key_never_appears_in_an_error(
    ecomail: Ecomail, platforms: EcomailPlatforms, fault: str, call: str
) -> None:
    FAULTS[fault](ecomail)
    platform = platforms.for_key(KEY, account="anna")  # a fresh one: no 429 block carried over
    if (fault, call) == ("404", "membership"):
        assert await CALLS[call](platform) is None
        return
    with pytest.raises(MarketingError) as raised:
        await CALLS[call](platform)
    assert KEY not in str(raised.value)
    assert KEY not in repr(raised.value)
    assert raised.value.__cause__ is None  # no httpx exception (with its request) rides along
    assert KEY not in repr(platform)


async def test_a_rejection_that_echoes_the_key_has_it_blanked(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    FAULTS["422 echoing the key"](ecomail)
    with pytest.raises(MarketingRejected, match=r"Key \[API key\] may not do this"):
        await platform.check_key()


async def test_before_send_runs_once_the_add_may_go_and_never_when_the_budget_holds_it(
    ecomail: Ecomail,
) -> None:
    ecomail.answer(200, json={"inserts": 1})
    seen: list[int] = []

    async def before_send() -> None:
        seen.append(len(ecomail.requests))  # how many requests had left by then

    async with EcomailPlatforms(
        LocalRequestLimiter(limit=1, window=60.0, max_wait=0.1),
        transport=httpx.MockTransport(ecomail),
    ) as platforms:
        platform = platforms.for_key(KEY, account="anna")
        assert await platform.add_contacts("7", [contact()], before_send=before_send) == 1
        with pytest.raises(BudgetExhausted):
            await platform.add_contacts("7", [contact()], before_send=before_send)
    assert seen == [0]  # before the one request that went, and not for the one held back
    assert len(ecomail.requests) == 1


async def test_a_platform_with_a_share_stays_within_it_and_leaves_the_rest_to_the_others(
    ecomail: Ecomail,
) -> None:
    ecomail.answer(200, json={})
    async with EcomailPlatforms(
        LocalRequestLimiter(limit=10, window=60.0, max_wait=0.0),
        transport=httpx.MockTransport(ecomail),
    ) as platforms:
        background = platforms.for_key(KEY, account="anna", share=0.3)
        for _ in range(3):
            await background.check_key()
        with pytest.raises(BudgetExhausted) as raised:
            await background.check_key()
        assert raised.value.hold is BudgetHold.SPENT
        live = platforms.for_key(KEY, account="anna")
        for _ in range(7):
            await live.check_key()
        with pytest.raises(BudgetExhausted):
            await live.check_key()
        with pytest.raises(ValueError, match="share"):
            platforms.for_key(KEY, account="anna", share=1.5)
    assert len(ecomail.requests) == 10


# --- reading a list's members page by page ------------------------------------------------


def member_item(email: str, status: int, fields: Any) -> dict[str, Any]:
    return {
        "id": 4,
        "list_id": 7,
        "email": email,
        "status": status,
        "subscribed_at": "2024-11-27T11:18:00.000000Z",
        "unsubscribed_at": None,
        "custom_fields": fields,
        "groups": None,
        "source": "app",
        "subscriber": {"id": 1, "name": None, "email": email},
    }


async def test_members_asks_for_one_page_of_one_status_and_reads_each_membership(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(
        200,
        json={
            "current_page": 2,
            "data": [
                member_item("ann@example.cz", 4, {"ELLITY_POINTS": 120, "note": None}),
                member_item("bob@example.cz", 3, []),
            ],
            "per_page": 2,
            "total": 5,
            "last_page": 3,
            "from": 3,
            "to": 4,
        },
    )
    page = await platform.members("7", status=MemberFilter.BOUNCED, page=2, per_page=2)

    request = ecomail.requests[0]
    assert (request.method, request.url.path) == ("GET", "/lists/7/subscribers")
    assert dict(request.url.params) == {"status": "bounced", "page": "2", "per_page": "2"}
    assert (page.page, page.last_page, page.total) == (2, 3, 5)
    ann, bob = page.members
    assert (ann.email, ann.status) == ("ann@example.cz", SubscriptionStatus.HARD_BOUNCED)
    assert ann.subscribed_at == datetime(2024, 11, 27, 11, 18, tzinfo=UTC)
    assert ann.unsubscribed_at is None
    assert dict(ann.custom_fields) == {"ellity_points": 120, "note": ""}
    assert (bob.status, dict(bob.custom_fields)) == (SubscriptionStatus.SOFT_BOUNCED, {})


@pytest.mark.parametrize(
    ("total", "per_page", "last_page"), [(0, 5000, 1), (5000, 5000, 1), (5001, 5000, 2), (7, 3, 3)]
)
async def test_members_without_a_last_page_computes_it_from_the_total(
    ecomail: Ecomail, platform: MarketingPlatform, total: int, per_page: int, last_page: int
) -> None:
    ecomail.answer(200, json={"current_page": 1, "data": [], "per_page": per_page, "total": total})
    page = await platform.members("7", status=MemberFilter.SUBSCRIBED, page=1, per_page=per_page)
    assert (page.last_page, page.total, list(page.members)) == (last_page, total, [])


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (-1, 10), (1, 0), (1, 5001)])
async def test_members_refuses_a_page_or_page_size_ecomail_does_not_serve_without_a_call(
    ecomail: Ecomail, platform: MarketingPlatform, page: int, per_page: int
) -> None:
    with pytest.raises(ValueError, match="page"):
        await platform.members("7", status=MemberFilter.SUBSCRIBED, page=page, per_page=per_page)
    assert ecomail.requests == []


async def test_members_asks_for_5000_a_page_unless_told(
    ecomail: Ecomail, platform: MarketingPlatform
) -> None:
    ecomail.answer(200, json={"current_page": 1, "data": [], "per_page": 5000, "total": 0})
    await platform.members("7", status=MemberFilter.NOT_CONFIRMED, page=1)
    assert ecomail.requests[0].url.params["per_page"] == "5000"
    assert ecomail.requests[0].url.params["status"] == "not_confirmed"


# --- what is logged -----------------------------------------------------------------------

LOGGED_FAILURES: dict[str, tuple[Callable[[Ecomail], None], str]] = {
    "500": (lambda e: e.answer(500), "HTTP 500"),
    "422": (lambda e: e.answer(422, json={"message": "no"}), "HTTP 422"),
    "401": (lambda e: e.answer(401, json={"message": "Wrong api key"}), "HTTP 401"),
    "429": (lambda e: e.answer(429, headers={"Retry-After": "1"}), "HTTP 429"),
    "timeout": (lambda e: e.fail(httpx.ReadTimeout), "ReadTimeout"),
    "connect": (lambda e: e.fail(httpx.ConnectError), "ConnectError"),
}


def client_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "ellity.adapters.ecomail.client"
    ]


async def test_a_call_that_works_is_logged_at_debug_with_its_path_and_status(
    ecomail: Ecomail, platform: MarketingPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ellity.adapters.ecomail.client")
    ecomail.answer(200, json={"email": "ann@example.cz", "status": 1})
    await platform.membership("7", "ann@example.cz")
    ecomail.answer(404, json={"message": "Subscriber not found"})  # expected: not a member
    assert await platform.membership("7", "ann@example.cz") is None
    [(level, first), (level_404, second)] = client_lines(caplog)
    assert (level, level_404) == (logging.DEBUG, logging.DEBUG)
    assert re.fullmatch(r"Ecomail GET /lists/7/subscriber/…: HTTP 200 in \d+ ms", first)
    assert second.startswith("Ecomail GET /lists/7/subscriber/…: HTTP 404")


@pytest.mark.parametrize("fault", LOGGED_FAILURES)
async def test_a_failed_call_is_one_warning_with_its_status_and_path(
    ecomail: Ecomail,
    platforms: EcomailPlatforms,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ellity.adapters.ecomail.client")
    make, status = LOGGED_FAILURES[fault]
    make(ecomail)
    with pytest.raises(MarketingError):
        await CALLS["send_event"](platforms.for_key(KEY, account="anna"))
    warnings = [text for level, text in client_lines(caplog) if level >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("Ecomail call POST /tracker/events for anna failed: " + status)
    assert KEY not in caplog.text
