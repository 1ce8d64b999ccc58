"""The Ecomail emulator keeps the quirks of ecomail-api.md §9, through real HTTP semantics.

Most tests talk to ``emu.app`` through ``httpx.ASGITransport``; webhooks, faults on the wire
(some through Ellity's own client) and the standalone command use a real server. Behaviour
the docs leave open (statuses of errors, 404s, the 5000-character count) is the emulator's
documented assumption.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ellity.adapters.ecomail import EcomailPlatforms, EcomailSettings, LocalRequestLimiter
from ellity.ports.marketing import ContactData, MarketingUnavailable
from tests.asgi import asgi_transport
from tests.ecomail_emulator import Emulator, EmulatorServer, RequestRecord, ThreadedServer
from tests.ecomail_emulator.controls import SeedRow
from tests.processes import clean_env, free_port

KEY = "key-a"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = Emulator()
    emulator.add_account(KEY).add_list("Newsletter")
    yield emulator
    emulator.close()


@pytest.fixture
def list_id(emu: Emulator) -> int:
    return next(iter(emu.accounts[KEY].lists))


@pytest.fixture
async def api(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = asgi_transport(emu.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ecomail.test", headers={"key": KEY}
    ) as client:
        yield client


class Receiver:
    """A webhook endpoint on a real port that records every request."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.server = ThreadedServer(self)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append({"method": scope["method"], "body": json.loads(body or b"null")})
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    @property
    def url(self) -> str:
        return f"{self.server.url}/ecomail-webhook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    with hook.server:
        yield hook


def members(emu: Emulator, list_id: int) -> dict[str, Any]:
    return emu.accounts[KEY].lists[list_id].members


async def subscribe(api: httpx.AsyncClient, list_id: int, **body: Any) -> httpx.Response:
    return await api.post(f"/lists/{list_id}/subscribe", json=body)


# --- authentication and rate limit ----------------------------------------------------------


async def test_a_wrong_or_missing_key_answers_401_wrong_api_key(emu: Emulator) -> None:
    async with httpx.AsyncClient(
        transport=asgi_transport(emu.app), base_url="http://e.test"
    ) as client:
        wrong = await client.get("/account", headers={"key": "nope"})
        missing = await client.get("/lists")

    assert (wrong.status_code, wrong.json()) == (401, {"message": "Wrong api key"})
    assert (missing.status_code, missing.json()) == (401, {"message": "Wrong api key"})


async def test_the_key_header_name_is_case_insensitive(emu: Emulator) -> None:
    async with httpx.AsyncClient(
        transport=asgi_transport(emu.app), base_url="http://e.test"
    ) as client:
        for name in ("key", "Key", "KEY"):
            response = await client.get("/account", headers={name: KEY})
            assert response.status_code == 200, name


async def test_a_key_reaches_only_its_own_accounts_lists(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    emu.add_account("key-b").add_list("Other")

    assert (await api.get(f"/lists/{list_id}", headers={"key": "key-b"})).status_code == 404
    assert [
        item["name"] for item in (await api.get("/lists", headers={"key": "key-b"})).json()
    ] == ["Other"]


async def test_requests_over_the_limit_answer_429_with_retry_after_until_the_window_frees() -> None:
    emu = Emulator(rate_limit=3, rate_window=1.0)
    emu.add_account(KEY)
    async with httpx.AsyncClient(
        transport=asgi_transport(emu.app), base_url="http://e.test", headers={"key": KEY}
    ) as client:
        served = [(await client.get("/lists")).status_code for _ in range(3)]
        refused = await client.get("/lists")
        refused_again = await client.get("/lists")
        await asyncio.sleep(1.05)
        after_the_window = await client.get("/lists")

    assert served == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "message" in refused.json()
    assert refused_again.status_code == 429  # refused requests are not counted as served
    assert after_the_window.status_code == 200


async def test_lowering_the_rate_limit_at_run_time_takes_effect_at_once(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    statuses = [(await api.get("/lists")).status_code for _ in range(5)]
    emu.rate_limit = 5

    refused = await api.get("/lists")

    assert statuses == [200] * 5
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


async def test_the_rate_limit_is_per_key(emu: Emulator, api: httpx.AsyncClient) -> None:
    emu.add_account("key-b")
    emu.rate_limit = 1

    assert (await api.get("/lists")).status_code == 200
    assert (await api.get("/lists", headers={"key": "key-b"})).status_code == 200
    assert (await api.get("/lists")).status_code == 429


async def test_max_requests_in_window_counts_the_busiest_window_of_a_key(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    for _ in range(4):
        await api.get("/lists")
    await asyncio.sleep(0.3)
    await api.get("/lists")

    assert emu.max_requests_in_window(KEY, window=0.2) == 4
    assert emu.max_requests_in_window(KEY) == 5
    assert emu.max_requests_in_window("nobody") == 0


# --- lists ------------------------------------------------------------------------------


async def test_lists_are_a_bare_array_with_int_ids(api: httpx.AsyncClient, list_id: int) -> None:
    body = (await api.get("/lists")).json()

    assert body == [
        {
            "id": list_id,
            "name": "Newsletter",
            "from_name": "Newsletter",
            "from_email": "newsletter@example.com",
            "reply_to": "newsletter@example.com",
        }
    ]


async def test_list_detail_is_wrapped_with_a_string_id_and_counters(
    api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    await api.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "ann@x.cz"})
    await subscribe(api, list_id, subscriber_data={"email": "bob@x.cz"})

    body = (await api.get(f"/lists/{list_id}")).json()

    assert body["list"]["id"] == str(list_id)
    assert body["list"]["double_optin"] is False
    assert body["list"]["custom_fields"] == []  # PHP's empty array
    assert body["subscribers"] == {
        "unknown": 0,
        "subscribed": 1,
        "unsubscribed": 1,
        "soft_bounced": 0,
        "hard_bounced": 0,
        "complained": 0,
        "unconfirmed": 0,
    }


async def test_an_unknown_or_deleted_list_answers_404_with_a_message(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    unknown = await api.get("/lists/999")
    emu.accounts[KEY].delete_list(list_id)
    deleted = await api.post(
        f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": [{"email": "a@x.cz"}]}
    )

    assert unknown.status_code == 404 and "message" in unknown.json()
    assert deleted.status_code == 404 and "message" in deleted.json()


async def test_put_list_answers_a_flat_object_with_an_int_id(
    api: httpx.AsyncClient, list_id: int
) -> None:
    body = (await api.put(f"/lists/{list_id}", json={"name": "Renamed"})).json()

    assert body["id"] == list_id
    assert body["name"] == "Renamed"
    assert "list" not in body and "custom_fields" not in body


# --- custom fields ---------------------------------------------------------------------


async def test_a_first_write_creates_the_field_with_its_type_under_the_lower_cased_key(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(
        api,
        list_id,
        subscriber_data={
            "email": "ann@x.cz",
            "custom_fields": {
                " Ellity_Points ": {"value": "120", "type": "int"},
                "EXPIRES": {"value": "2027-01-31", "type": "date"},
                "tier": "gold",
            },
        },
    )

    fields = (await api.get(f"/lists/{list_id}")).json()["list"]["custom_fields"]
    assert fields == {
        "ellity_points": {"type": "int", "name": "ellity_points"},
        "expires": {"type": "date", "name": "expires"},
        "tier": {"type": "string", "name": "tier"},
    }
    stored = members(emu, list_id)["ann@x.cz"].custom_fields
    assert stored == {"ellity_points": 120, "expires": "2027-01-31", "tier": "gold"}


async def test_a_fields_type_stays_as_first_written_and_values_are_stored_as_given(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    data = {
        "email": "ann@x.cz",
        "custom_fields": {"code": 7, "points": {"value": 5, "type": "int"}},
    }
    await subscribe(api, list_id, subscriber_data=data)
    data = {"email": "bob@x.cz", "custom_fields": {"CODE": {"value": "A7", "type": "int"}}}
    refused = await subscribe(api, list_id, subscriber_data=data)

    fields = emu.accounts[KEY].lists[list_id].fields
    assert fields["code"]["type"] == "string"
    assert members(emu, list_id)["ann@x.cz"].custom_fields == {"code": 7, "points": 5}
    assert refused.status_code == 200  # "code" stays a string field: "A7" is fine


async def test_an_int_field_refuses_a_value_that_is_not_an_integer(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    data = {"email": "ann@x.cz", "custom_fields": {"points": {"value": "many", "type": "int"}}}

    response = await subscribe(api, list_id, subscriber_data=data)

    assert response.status_code == 422
    assert "ann@x.cz" not in members(emu, list_id)


async def test_writes_merge_custom_fields_keeping_the_other_keys(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    first = {"email": "ann@x.cz", "custom_fields": {"a": "1", "b": "2"}}
    await subscribe(api, list_id, subscriber_data=first)
    await api.put(
        f"/lists/{list_id}/update-subscriber",
        json={"email": "ann@x.cz", "subscriber_data": {"custom_fields": {"B": "two", "c": "3"}}},
    )

    assert members(emu, list_id)["ann@x.cz"].custom_fields == {"a": "1", "b": "two", "c": "3"}


async def test_keys_that_collide_after_normalisation_are_refused_and_nothing_is_written(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    single = await subscribe(
        api,
        list_id,
        subscriber_data={"email": "ann@x.cz", "custom_fields": {"Shop": "a", "shop ": "b"}},
    )
    bulk = await api.post(
        f"/lists/{list_id}/subscribe-bulk",
        json={
            "subscriber_data": [
                {"email": "bob@x.cz", "custom_fields": {"new_field": "x"}},
                {"email": "cyd@x.cz", "custom_fields": {"SHOP": "a", "shop": "b"}},
            ]
        },
    )

    assert single.status_code == 422
    assert set(single.json()) == {"message", "errors"}
    assert bulk.status_code == 422
    assert any(key.startswith("subscriber_data.1.") for key in bulk.json()["errors"])
    assert members(emu, list_id) == {}
    assert emu.accounts[KEY].lists[list_id].fields == {}


async def test_custom_fields_over_5000_characters_in_total_are_refused(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    # json.dumps({"note": "x" * n}) is n + 12 characters
    at_the_limit = {"email": "ann@x.cz", "custom_fields": {"note": "x" * 4988}}
    assert (await subscribe(api, list_id, subscriber_data=at_the_limit)).status_code == 200

    # the member's merged fields count: one more short field tips it over
    more = {"email": "ann@x.cz", "subscriber_data": {"custom_fields": {"b": "1"}}}
    over = await api.put(f"/lists/{list_id}/update-subscriber", json=more)

    assert over.status_code == 422
    assert members(emu, list_id)["ann@x.cz"].custom_fields == {"note": "x" * 4988}


async def test_non_ascii_values_count_as_json_dumps_escapes_them(
    api: httpx.AsyncClient, list_id: int
) -> None:
    # "ž" is written as \u017e: 6 characters each
    data = {"email": "ann@x.cz", "custom_fields": {"note": "ž" * 900}}

    assert (await subscribe(api, list_id, subscriber_data=data)).status_code == 422


async def test_an_unknown_field_type_is_refused(api: httpx.AsyncClient, list_id: int) -> None:
    data = {"email": "ann@x.cz", "custom_fields": {"price": {"value": 1.5, "type": "float"}}}

    assert (await subscribe(api, list_id, subscriber_data=data)).status_code == 422


# --- single subscribe ------------------------------------------------------------------


async def test_subscribe_marks_only_existing_members_as_already_subscribed(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    new = await subscribe(api, list_id, subscriber_data={"email": "Ann@X.cz", "name": "Ann"})
    again = await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})

    assert new.status_code == 200
    assert "already_subscribed" not in new.json()
    assert new.json()["bounced_hard"] == 0 and "bounce_hard" not in new.json()
    assert new.json()["email"] == "ann@x.cz"
    assert again.json()["already_subscribed"] is True
    member = members(emu, list_id)["ann@x.cz"]
    assert (member.status, member.name, member.source) == (1, "Ann", "api")


async def test_single_subscribe_does_not_update_an_existing_member_unless_asked(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz", "name": "Ann"})
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz", "name": "Anna"})
    assert members(emu, list_id)["ann@x.cz"].name == "Ann"

    await subscribe(
        api, list_id, subscriber_data={"email": "ann@x.cz", "name": "Anna"}, update_existing=True
    )
    assert members(emu, list_id)["ann@x.cz"].name == "Anna"


async def test_subscribe_to_a_double_opt_in_list_stores_status_6_unless_confirmation_is_skipped(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    doi = emu.accounts[KEY].add_list("DOI", double_optin=True)

    await subscribe(api, doi, subscriber_data={"email": "ann@x.cz"})
    await subscribe(api, doi, subscriber_data={"email": "bob@x.cz"}, skip_confirmation=True)

    assert members(emu, doi)["ann@x.cz"].status == 6
    assert members(emu, doi)["bob@x.cz"].status == 1


async def test_resubscribe_brings_back_an_unsubscribed_member_only_to_status_1(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    for email in ("ann@x.cz", "bob@x.cz", "cyd@x.cz"):
        await subscribe(api, list_id, subscriber_data={"email": email})
        await api.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": email})

    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    await subscribe(api, list_id, subscriber_data={"email": "bob@x.cz"}, resubscribe=True)
    await subscribe(
        api, list_id, subscriber_data={"email": "cyd@x.cz", "status": 4}, resubscribe=True
    )

    statuses = {email: m.status for email, m in members(emu, list_id).items()}
    assert statuses == {"ann@x.cz": 2, "bob@x.cz": 1, "cyd@x.cz": 2}
    bob = members(emu, list_id)["bob@x.cz"]
    assert bob.unsubscribed_at is None and bob.subscribed_at is not None


# --- bulk ----------------------------------------------------------------------------------


async def test_subscribe_bulk_processes_at_most_3000_items_and_drops_the_rest_silently(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    items = [{"email": f"c{i}@x.cz"} for i in range(3001)]

    response = await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": items})

    assert (response.status_code, response.json()) == (200, {"inserts": 3000})
    assert len(members(emu, list_id)) == 3000
    assert "c3000@x.cz" not in members(emu, list_id)


async def test_subscribe_bulk_updates_existing_members_by_default(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz", "name": "Ann"})
    url = f"/lists/{list_id}/subscribe-bulk"

    await api.post(url, json={"subscriber_data": [{"email": "ann@x.cz", "name": "Anna"}]})
    assert members(emu, list_id)["ann@x.cz"].name == "Anna"

    kept = await api.post(
        url,
        json={"subscriber_data": [{"email": "ann@x.cz", "name": "A."}], "update_existing": False},
    )
    assert members(emu, list_id)["ann@x.cz"].name == "Anna"
    assert kept.json() == {"inserts": 0}


async def test_subscribe_bulk_ignores_double_opt_in_and_takes_item_statuses(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    doi = emu.accounts[KEY].add_list("DOI", double_optin=True)
    items = [
        {"email": "ann@x.cz"},
        {"email": "bob@x.cz", "status": 2},
        {"email": "cy@x.cz", "status": 4},
    ]

    await api.post(f"/lists/{doi}/subscribe-bulk", json={"subscriber_data": items})
    refused = await api.post(
        f"/lists/{doi}/subscribe-bulk", json={"subscriber_data": [{"email": "d@x.cz", "status": 6}]}
    )

    assert {e: m.status for e, m in members(emu, doi).items()} == {
        "ann@x.cz": 1,
        "bob@x.cz": 2,
        "cy@x.cz": 4,
    }
    assert members(emu, doi)["bob@x.cz"].unsubscribed_at is not None
    assert refused.status_code == 422


async def test_subscribe_bulk_does_not_resubscribe_an_unsubscribed_member_unless_asked(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    await api.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "ann@x.cz"})
    url = f"/lists/{list_id}/subscribe-bulk"
    item = {"email": "ann@x.cz", "name": "Ann", "custom_fields": {"points": 5}}

    counted = await api.post(url, json={"subscriber_data": [item]})
    ann = members(emu, list_id)["ann@x.cz"]
    assert (ann.status, ann.name, ann.custom_fields) == (2, "Ann", {"points": 5})
    assert counted.json() == {"inserts": 1}  # updated, still unsubscribed

    await api.post(url, json={"subscriber_data": [item], "resubscribe": True})
    assert ann.status == 1


async def test_a_bulk_item_with_an_invalid_email_refuses_the_whole_call(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    items = [{"email": "ann@x.cz"}, {"email": "not-an-email"}]

    response = await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": items})

    assert response.status_code == 422
    assert "subscriber_data.1.email" in response.json()["errors"]
    assert members(emu, list_id) == {}


async def test_update_subscriber_bulk_updates_only_members_and_counts_them(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    seed = [{"email": f"c{i}@x.cz"} for i in range(3000)]
    await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": seed})
    emails = [f"c{i}@x.cz" for i in range(2998)] + ["stranger@x.cz", "c2998@x.cz", "c2999@x.cz"]
    items = [{"email": email, "surname": "Updated"} for email in emails]  # 3001 items

    response = await api.put(
        f"/lists/{list_id}/update-subscriber-bulk", json={"subscriber_data": items}
    )

    assert response.json() == {"updates": 2999}
    assert members(emu, list_id)["c2998@x.cz"].surname == "Updated"
    assert members(emu, list_id)["c2999@x.cz"].surname is None  # the 3001st item is dropped
    assert "stranger@x.cz" not in members(emu, list_id)


async def test_update_subscriber_bulk_brings_back_unsubscribed_only_with_allow_resubscribe(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    await api.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "ann@x.cz"})
    url = f"/lists/{list_id}/update-subscriber-bulk"
    items = [{"email": "ann@x.cz", "status": 1}]

    await api.put(url, json={"subscriber_data": items})
    assert members(emu, list_id)["ann@x.cz"].status == 2
    await api.put(url, json={"subscriber_data": [{"email": "ann@x.cz"}], "allow_resubscribe": True})
    assert members(emu, list_id)["ann@x.cz"].status == 2  # no status, no change
    await api.put(url, json={"subscriber_data": items, "allow_resubscribe": True})
    assert members(emu, list_id)["ann@x.cz"].status == 1


async def test_update_subscriber_answers_bounce_hard_and_404_for_a_non_member(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    url = f"/lists/{list_id}/update-subscriber"

    updated = await api.put(url, json={"email": "ann@x.cz", "subscriber_data": {"name": "Ann"}})
    stranger = await api.put(url, json={"email": "bob@x.cz", "subscriber_data": {"name": "Bob"}})

    assert updated.json()["bounce_hard"] is None and "bounced_hard" not in updated.json()
    assert updated.json()["name"] == "Ann"
    assert members(emu, list_id)["ann@x.cz"].status == 1
    assert stranger.status_code == 404


# --- reads ---------------------------------------------------------------------------------


async def test_a_member_read_merges_person_and_membership(
    api: httpx.AsyncClient, list_id: int
) -> None:
    data = {"email": "ann@x.cz", "name": "Ann", "city": "Brno", "custom_fields": {"p": 1}}
    await subscribe(api, list_id, subscriber_data=data)

    found = await api.get(f"/lists/{list_id}/subscriber/Ann%40x.cz")
    missing = await api.get(f"/lists/{list_id}/subscriber/bob@x.cz")

    member = found.json()["subscriber"]
    assert (member["email"], member["name"], member["city"]) == ("ann@x.cz", "Ann", "Brno")
    assert (member["list_id"], member["status"], member["custom_fields"]) == (list_id, 1, {"p": 1})
    assert member["subscribed_at"].endswith("Z") and "T" in member["subscribed_at"]
    assert missing.status_code == 404


async def test_a_subscriber_read_keys_lists_by_string_id(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    other = emu.accounts[KEY].add_list("Other")
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    await subscribe(api, other, subscriber_data={"email": "ann@x.cz"})

    body = (await api.get("/subscribers/ann@x.cz")).json()["subscriber"]

    assert set(body["lists"]) == {str(list_id), str(other)}
    assert body["lists"][str(other)]["list_id"] == other
    assert len(body["inserted_at"]) == len("2015-01-21 10:50:04")
    assert (await api.get("/subscribers/bob@x.cz")).status_code == 404


async def test_member_pages_are_laravel_paginators_with_empty_custom_fields_as_a_list(
    api: httpx.AsyncClient, list_id: int
) -> None:
    items: list[dict[str, Any]] = [{"email": f"c{i}@x.cz"} for i in range(5)]
    items[0]["custom_fields"] = {"p": 1}
    await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": items})

    page = (
        await api.get(f"/lists/{list_id}/subscribers", params={"per_page": 2, "page": 3})
    ).json()
    first = (await api.get(f"/lists/{list_id}/subscribers", params={"per_page": 2})).json()
    huge = (await api.get(f"/lists/{list_id}/subscribers", params={"per_page": 9999})).json()

    assert (page["current_page"], page["per_page"], page["total"], page["last_page"]) == (
        3,
        2,
        5,
        3,
    )
    assert (page["from"], page["to"], page["next_page_url"]) == (5, 5, None)
    assert [m["email"] for m in page["data"]] == ["c4@x.cz"]
    assert page["data"][0]["custom_fields"] == []
    assert first["data"][0]["custom_fields"] == {"p": 1}
    assert first["data"][0]["subscriber"]["email"] == "c0@x.cz"
    assert huge["per_page"] == 5000


async def test_member_pages_filter_by_status_and_follow_status_changes(
    api: httpx.AsyncClient, list_id: int
) -> None:
    items = [{"email": f"c{i}@x.cz"} for i in range(4)]
    await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": items})
    await api.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "c1@x.cz"})

    async def emails(status: str | None = None) -> list[str]:
        params = {"status": status} if status else {}
        body = (await api.get(f"/lists/{list_id}/subscribers", params=params)).json()
        return [member["email"] for member in body["data"]]

    assert await emails() == ["c0@x.cz", "c2@x.cz", "c3@x.cz"]
    assert await emails("unsubscribed") == ["c1@x.cz"]
    assert await emails("bounced") == []


# --- unsubscribe ------------------------------------------------------------------------


async def test_delete_unsubscribe_reads_the_json_body_and_answers_the_membership_row(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})

    response = await api.request(
        "DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "ann@x.cz"}
    )
    stranger = await api.request(
        "DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "bob@x.cz"}
    )

    row = response.json()
    assert response.status_code == 200
    assert (row["list_id"], row["email"], row["status"]) == (list_id, "ann@x.cz", 2)
    assert row["unsubscribed_at"].endswith("Z")
    assert members(emu, list_id)["ann@x.cz"].unsubscribed_at is not None
    assert stranger.status_code == 404


# --- webhooks -----------------------------------------------------------------------------


async def test_api_subscribe_fires_the_subscribed_webhook_and_api_unsubscribe_none(
    emu: Emulator, api: httpx.AsyncClient, list_id: int, receiver: Receiver
) -> None:
    emu.accounts[KEY].lists[list_id].webhook_url = receiver.url

    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    await api.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "ann@x.cz"})
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})  # not resubscribed
    emu.wait_for_webhooks()

    expected = {
        "payload": {
            "email": "ann@x.cz",
            "status": "SUBSCRIBED",
            "listId": list_id,
            "campaignId": None,
        }
    }
    assert receiver.received == [{"method": "POST", "body": expected}]
    assert [(c.url, c.body, c.status, c.error) for c in emu.webhook_calls] == [
        (receiver.url, expected, 200, None)
    ]


async def test_bulk_subscribe_fires_subscribed_for_each_member_that_became_subscribed(
    emu: Emulator, api: httpx.AsyncClient, list_id: int, receiver: Receiver
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "old@x.cz"})
    await api.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "old@x.cz"})
    await subscribe(api, list_id, subscriber_data={"email": "kept@x.cz"})
    emu.accounts[KEY].lists[list_id].webhook_url = receiver.url
    items = [
        {"email": "new@x.cz"},
        {"email": "gone@x.cz", "status": 2},
        {"email": "kept@x.cz"},
        {"email": "old@x.cz"},
    ]

    await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": items})
    await api.post(
        f"/lists/{list_id}/subscribe-bulk",
        json={"subscriber_data": [{"email": "old@x.cz"}], "resubscribe": True},
    )
    emu.wait_for_webhooks()

    assert sorted(r["body"]["payload"]["email"] for r in receiver.received) == [
        "new@x.cz",
        "old@x.cz",
    ]


async def test_a_double_opt_in_sign_up_fires_once_and_confirmation_does_not(
    emu: Emulator, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    doi = emu.accounts[KEY].add_list("DOI", double_optin=True, webhook_url=receiver.url)

    await subscribe(api, doi, subscriber_data={"email": "ann@x.cz"})
    emu.accounts[KEY].lists[doi].confirm_double_optin("ann@x.cz")
    emu.wait_for_webhooks()

    assert [r["body"]["payload"]["status"] for r in receiver.received] == ["SUBSCRIBED"]
    assert members(emu, doi)["ann@x.cz"].status == 1


def test_form_sign_up_and_unsubscribe_link_fire_subscribed_and_unsubscribed(
    emu: Emulator, list_id: int, receiver: Receiver
) -> None:
    newsletter = emu.accounts[KEY].lists[list_id]
    newsletter.webhook_url = receiver.url

    newsletter.subscribe_by_form("Ann@x.cz", name="Ann")
    emu.wait_for_webhooks()
    newsletter.unsubscribe_by_link("ann@x.cz")
    emu.wait_for_webhooks()

    assert [r["body"]["payload"]["status"] for r in receiver.received] == [
        "SUBSCRIBED",
        "UNSUBSCRIBED",
    ]
    ann = newsletter.members["ann@x.cz"]
    assert (ann.status, ann.name, ann.source) == (2, "Ann", "form")


def test_a_webhook_that_cannot_be_delivered_is_recorded_with_its_error(
    emu: Emulator, list_id: int
) -> None:
    newsletter = emu.accounts[KEY].lists[list_id]
    newsletter.webhook_url = f"http://127.0.0.1:{free_port()}/hook"

    newsletter.subscribe_by_form("ann@x.cz")
    emu.wait_for_webhooks()

    [call] = emu.webhook_calls
    assert call.status is None and call.error and "Connect" in call.error


# --- tracker events -------------------------------------------------------------------------


async def test_a_tracker_event_for_a_contact_is_stored_with_the_value_as_a_json_string(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})
    event = {
        "email": "ann@x.cz",
        "category": "ellity",
        "action": "points_credited",
        "label": "Order 12",
        "property": "order-12",
        "value": {"points": 120, "balance": 1250},
    }

    response = await api.post("/tracker/events", json={"event": event})
    plain = await api.post(
        "/tracker/events", json={"event": {"email": "ann@x.cz", "value": "as is"}}
    )

    body = response.json()
    assert response.status_code == 200
    assert body["value"] == '{"points":120,"balance":1250}'
    assert json.loads(body["value"]) == event["value"]
    assert isinstance(body["id"], int)
    assert plain.json()["value"] == "as is"
    assert emu.accounts[KEY].events == [body, plain.json()]


async def test_a_tracker_event_for_an_unknown_email_answers_404(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    response = await api.post("/tracker/events", json={"event": {"email": "nobody@x.cz"}})

    assert response.status_code == 404 and "message" in response.json()
    assert emu.accounts[KEY].events == []


async def test_a_tracker_event_value_over_20000_characters_is_refused(
    api: httpx.AsyncClient, list_id: int
) -> None:
    await subscribe(api, list_id, subscriber_data={"email": "ann@x.cz"})

    response = await api.post(
        "/tracker/events", json={"event": {"email": "ann@x.cz", "value": ["x" * 20000]}}
    )

    assert response.status_code == 422


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"subscriber_data": {}}',
        b'{"subscriber_data": {"email": "not-an-email"}}',
        b'{"subscriber_data": {"email": "a@x.cz", "gender": "other"}}',
        b'["a list"]',
    ],
)
async def test_malformed_json_and_missing_or_invalid_fields_answer_422_with_a_message(
    api: httpx.AsyncClient, list_id: int, body: bytes
) -> None:
    response = await api.post(
        f"/lists/{list_id}/subscribe", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["message"]


# --- faults on the wire ----------------------------------------------------------------------


@pytest.fixture
def server(emu: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emu, port=0) as running:
        yield running


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Key": KEY}, timeout=5) as client:
        yield client


def test_fail_next_answers_the_status_for_the_next_requests_only(
    emu: Emulator, http: httpx.Client
) -> None:
    emu.faults.fail_next(2, status=503)

    statuses = [http.get("/lists").status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert http.get("/lists").json() != {"message": "Service Unavailable"}
    assert [r.status for r in emu.requests] == [503, 503, 200, 200]


def test_fail_always_answers_until_cleared_with_a_json_message(
    emu: Emulator, http: httpx.Client
) -> None:
    emu.faults.fail_always()

    failed = [http.get("/lists") for _ in range(2)]
    emu.faults.clear()

    assert [(r.status_code, r.json()) for r in failed] == [(500, {"message": "Server Error"})] * 2
    assert http.get("/lists").status_code == 200


def test_rate_limit_next_answers_429_with_the_given_retry_after(
    emu: Emulator, http: httpx.Client
) -> None:
    emu.faults.rate_limit_next(1, retry_after=7)

    throttled = http.get("/lists")

    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
    assert http.get("/lists").status_code == 200


def test_rate_limit_after_lets_k_requests_through_then_answers_one_429(
    emu: Emulator, http: httpx.Client
) -> None:
    emu.faults.rate_limit_after(2, retry_after=9)

    answers = [http.get("/lists") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 429, 200]
    assert answers[2].headers["Retry-After"] == "9"


def test_a_delayed_answer_times_the_client_out_but_the_request_is_still_applied(
    emu: Emulator, http: httpx.Client, list_id: int
) -> None:
    emu.faults.delay = 0.5

    with pytest.raises(httpx.ReadTimeout):
        http.post(
            f"/lists/{list_id}/subscribe",
            json={"subscriber_data": {"email": "ann@x.cz"}},
            timeout=0.1,
        )
    deadline = time.monotonic() + 5
    while "ann@x.cz" not in members(emu, list_id) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert "ann@x.cz" in members(emu, list_id)


def test_lose_answer_next_applies_the_next_requests_and_answers_the_status_instead(
    emu: Emulator, http: httpx.Client, list_id: int
) -> None:
    emu.faults.lose_answer_next(2, status=504)

    answers = [
        http.post(f"/lists/{list_id}/subscribe", json={"subscriber_data": {"email": email}})
        for email in ("ann@x.cz", "bob@x.cz", "cyril@x.cz")
    ]

    assert [(r.status_code, r.json().get("message")) for r in answers[:2]] == [
        (504, "Gateway Timeout")
    ] * 2
    assert answers[2].status_code == 200
    assert sorted(members(emu, list_id)) == ["ann@x.cz", "bob@x.cz", "cyril@x.cz"]
    assert [r.status for r in emu.requests] == [504, 504, 200]


def test_requests_answered_before_processing_do_not_use_up_a_lost_answer(
    emu: Emulator, http: httpx.Client, list_id: int
) -> None:
    path, ann = f"/lists/{list_id}/subscribe", {"subscriber_data": {"email": "ann@x.cz"}}
    emu.faults.lose_answer_next()

    statuses = [http.post(path, json=ann, headers={"key": "wrong"}).status_code]
    emu.faults.fail_next(1, status=503)
    statuses.append(http.post(path, json=ann).status_code)
    applied_before = "ann@x.cz" in members(emu, list_id)
    statuses.append(http.post(path, json=ann).status_code)
    statuses.append(http.post(path, json={"subscriber_data": {"email": "bob@x.cz"}}).status_code)

    assert statuses == [401, 503, 500, 200]
    assert not applied_before
    assert sorted(members(emu, list_id)) == ["ann@x.cz", "bob@x.cz"]


def test_answer_late_next_applies_the_request_at_once_and_answers_after_the_wait(
    emu: Emulator, http: httpx.Client, list_id: int
) -> None:
    emu.faults.answer_late_next(seconds=0.4)

    started = time.monotonic()
    late = http.post(f"/lists/{list_id}/subscribe", json={"subscriber_data": {"email": "a@x.cz"}})
    waited = time.monotonic() - started
    started = time.monotonic()
    on_time = http.get("/lists")

    assert (late.status_code, late.json()["email"]) == (200, "a@x.cz")
    assert waited >= 0.4
    assert on_time.status_code == 200
    assert time.monotonic() - started < 0.4


def test_a_late_answer_sends_its_webhook_before_the_answer_the_client_gave_up_on(
    emu: Emulator, http: httpx.Client, list_id: int, receiver: Receiver
) -> None:
    emu.accounts[KEY].lists[list_id].webhook_url = receiver.url
    emu.faults.answer_late_next(seconds=5.0)

    with pytest.raises(httpx.ReadTimeout):
        http.post(
            f"/lists/{list_id}/subscribe",
            json={"subscriber_data": {"email": "ann@x.cz"}},
            timeout=0.2,
        )
    applied = "ann@x.cz" in members(emu, list_id)
    emu.wait_for_webhooks(timeout=2.0)

    assert applied  # at once, not after the wait
    assert [r["body"]["payload"]["email"] for r in receiver.received] == ["ann@x.cz"]
    assert emu.requests == []  # the webhook went out before the answer, which is still held


def test_clear_ends_lost_and_late_answers(emu: Emulator, http: httpx.Client) -> None:
    emu.faults.lose_answer_next(2)
    emu.faults.answer_late_next(2, seconds=5.0)
    emu.faults.clear()

    assert http.get("/lists", timeout=1.0).status_code == 200


async def test_a_lost_answer_to_a_bulk_add_is_unavailable_yet_the_member_is_added_and_announced(
    emu: Emulator, server: EmulatorServer, list_id: int, receiver: Receiver
) -> None:
    emu.accounts[KEY].lists[list_id].webhook_url = receiver.url
    emu.faults.lose_answer_next()

    async with ellity_client(server) as platforms:
        with pytest.raises(MarketingUnavailable, match="HTTP 500"):
            await platforms.for_key(KEY, account="anna").add_contacts(
                str(list_id), [ContactData(email="ann@x.cz", custom_fields={})]
            )
    emu.wait_for_webhooks()

    assert members(emu, list_id)["ann@x.cz"].status == 1
    assert [r["body"]["payload"] for r in receiver.received] == [
        {"email": "ann@x.cz", "status": "SUBSCRIBED", "listId": list_id, "campaignId": None}
    ]


async def test_a_late_answer_times_the_client_out_yet_the_member_is_added(
    emu: Emulator, server: EmulatorServer, list_id: int
) -> None:
    emu.faults.answer_late_next(seconds=2.0)

    async with ellity_client(server, read_timeout=0.2) as platforms:
        with pytest.raises(MarketingUnavailable, match=r"did not answer within 0\.2 seconds"):
            await platforms.for_key(KEY, account="anna").add_contacts(
                str(list_id), [ContactData(email="ann@x.cz", custom_fields={})]
            )

    assert members(emu, list_id)["ann@x.cz"].status == 1


def ellity_client(server: EmulatorServer, *, read_timeout: float = 5.0) -> EcomailPlatforms:
    settings = EcomailSettings(base_url=server.url, read_timeout=read_timeout)
    return EcomailPlatforms(LocalRequestLimiter(limit=100, window=60.0, max_wait=1.0), settings)


def test_a_stopped_server_refuses_connections_and_listens_again_on_the_same_port(
    server: EmulatorServer,
) -> None:
    url = server.url

    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/lists", headers={"key": KEY})
    server.start()

    assert server.url == url
    assert httpx.get(f"{url}/lists", headers={"key": KEY}).status_code == 200


def test_requests_are_logged_with_key_method_path_and_status(
    emu: Emulator, http: httpx.Client, list_id: int
) -> None:
    http.request("DELETE", f"/lists/{list_id}/unsubscribe", json={"email": "a@x.cz"})
    http.get("/account", headers={"key": "wrong"})

    logged = [(r.key, r.method, r.path, r.status) for r in emu.requests]
    assert logged == [
        (KEY, "DELETE", f"/lists/{list_id}/unsubscribe", 404),
        ("wrong", "GET", "/account", 401),
    ]


async def test_a_bulk_call_of_3000_items_stays_fast(api: httpx.AsyncClient, list_id: int) -> None:
    fields = {f"ellity_field_{n}": {"value": f"value {n}", "type": "string"} for n in range(6)}
    items = [{"email": f"c{i}@x.cz", "name": "Jana", "custom_fields": fields} for i in range(3000)]
    content = json.dumps({"subscriber_data": items}).encode()
    headers = {"content-type": "application/json"}

    started = time.perf_counter()
    response = await api.post(f"/lists/{list_id}/subscribe-bulk", content=content, headers=headers)
    elapsed = time.perf_counter() - started

    assert response.json() == {"inserts": 3000}
    assert elapsed < 1.0  # typically 30-60 ms; generous for a busy CI machine


# --- standalone --------------------------------------------------------------------------------


def test_the_module_runs_standalone_and_prints_its_url_key_and_list() -> None:
    port = free_port()
    command = [sys.executable, "-m", "tests.ecomail_emulator", "--port", str(port)]
    command += ["--api-key", "demo-key", "--list", "Newsletter"]
    with subprocess.Popen(
        command, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            banner = [process.stdout.readline() for _ in range(2)]
            deadline = time.monotonic() + 10
            while True:
                try:
                    lists = httpx.get(f"http://127.0.0.1:{port}/lists", headers={"key": "demo-key"})
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            process.terminate()

    assert f"http://127.0.0.1:{port}" in banner[0]
    assert "demo-key" in banner[1] and "list 1" in banner[1]
    assert lists.json()[0]["name"] == "Newsletter"


# --- the member index behind pages and counters -------------------------------------------------


@pytest.mark.parametrize("squeeze_from", [4, 1024])
def test_pages_and_counters_match_a_plain_model_through_random_status_changes(
    emu: Emulator, list_id: int, monkeypatch: pytest.MonkeyPatch, squeeze_from: int
) -> None:
    monkeypatch.setattr(
        "tests.ecomail_emulator.status_index.StatusIndex.SQUEEZE_FROM", squeeze_from
    )
    rng = random.Random(7)
    newsletter = emu.accounts[KEY].lists[list_id]
    expected: dict[int, list[str]] = {status: [] for status in (1, 2, 4, 6)}
    for step in range(600):
        email = f"c{rng.randrange(150)}@x.cz"
        status = rng.choice((1, 2, 4, 6))
        member = newsletter.members.get(email)
        if member is None:
            newsletter.add_member(email, status=status)
        elif member.status != status:
            expected[member.status].remove(email)
            member.status = status
        else:
            continue
        expected[status].append(email)
        if step % 20 == 0:
            for statuses in ((1,), (2,), (4, 6)):
                joined = [e for s in statuses for e in expected[s]]
                offset, limit = rng.randrange(len(joined) + 3), rng.randrange(1, 40)
                total, page = newsletter.index.page(statuses, offset, limit)
                assert total == len(joined)
                assert [m.email for m in page] == joined[offset : offset + limit]
    assert newsletter.counts()["hard_bounced"] == len(expected[4])


async def test_a_refused_email_fails_the_whole_write_with_422_and_changes_nothing(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    lst = emu.accounts[KEY].lists[list_id]
    lst.refused["blocked@spam.example"] = "This address is on the blocklist."
    items = [{"email": "ok@x.cz"}, {"email": "Blocked@spam.example"}]
    refused = await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": items})
    assert refused.status_code == 422
    assert refused.json()["errors"] == {
        "subscriber_data.1.email": ["This address is on the blocklist."]
    }
    assert members(emu, list_id) == {}
    fine = await api.post(f"/lists/{list_id}/subscribe-bulk", json={"subscriber_data": items[:1]})
    assert fine.status_code == 200
    update = await api.put(
        f"/lists/{list_id}/update-subscriber-bulk", json={"subscriber_data": items}
    )
    assert update.status_code == 422


# --- member pages as §4 describes them ------------------------------------------------------


async def test_a_member_page_without_parameters_is_page_1_of_20_subscribed_members(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    emu.seed_members(list_id, ((f"c{n}@x.cz", 1, None) for n in range(25)))
    emu.seed_members(list_id, [("gone@x.cz", 2, None)])

    body = (await api.get(f"/lists/{list_id}/subscribers")).json()

    assert (body["current_page"], body["per_page"], body["total"], body["last_page"]) == (
        1,
        20,
        25,
        2,
    )
    assert (body["from"], body["to"]) == (1, 20)
    assert [m["email"] for m in body["data"]] == [f"c{n}@x.cz" for n in range(20)]


# --- changes behind the client's back (no webhook ever) -----------------------------------------


@pytest.fixture
def hooked(emu: Emulator, list_id: int) -> int:
    """The list with a webhook: a call is recorded even if nobody listens."""
    emu.find_list(list_id).webhook_url = f"http://127.0.0.1:{free_port()}/hook"
    return list_id


def no_webhook_fired(emu: Emulator) -> bool:
    emu.wait_for_webhooks()
    return emu.webhook_calls == []


async def page_of(api: httpx.AsyncClient, list_id: int, status: str) -> dict[str, Any]:
    found = await api.get(f"/lists/{list_id}/subscribers", params={"status": status})
    return {m["email"]: m for m in found.json()["data"]}


async def test_a_field_edited_by_hand_is_read_back_and_fires_nothing(
    emu: Emulator, api: httpx.AsyncClient, hooked: int
) -> None:
    emu.add_member(hooked, "ann@x.cz", custom_fields={"ellity_points": 120})
    emu.add_member(hooked, "bob@x.cz", custom_fields={"ellity_points": 7})

    emu.edit_field(hooked, "Ann@x.cz", "ellity_points", 999)
    emu.edit_field(hooked, "ann@x.cz", "NOTE", "edited")
    emu.edit_field(hooked, "bob@x.cz", "ellity_points", None)

    page = await page_of(api, hooked, "subscribed")
    assert page["ann@x.cz"]["custom_fields"] == {"ellity_points": 999, "note": "edited"}
    assert page["bob@x.cz"]["custom_fields"] == []
    detail = (await api.get(f"/lists/{hooked}")).json()["list"]
    assert detail["custom_fields"]["note"]["type"] == "string"
    assert no_webhook_fired(emu)


async def test_an_unsubscribe_by_another_tool_sets_status_2_and_its_time_and_fires_nothing(
    emu: Emulator, api: httpx.AsyncClient, hooked: int
) -> None:
    emu.add_member(hooked, "ann@x.cz")

    emu.unsubscribe(hooked, "ann@x.cz")

    assert await page_of(api, hooked, "subscribed") == {}
    (ann,) = (await page_of(api, hooked, "unsubscribed")).values()
    assert ann["status"] == 2 and ann["unsubscribed_at"] is not None
    assert no_webhook_fired(emu)


async def test_a_bounce_or_a_complaint_moves_the_member_to_its_page_and_fires_nothing(
    emu: Emulator, api: httpx.AsyncClient, hooked: int
) -> None:
    for email in ("soft@x.cz", "hard@x.cz", "spam@x.cz"):
        emu.add_member(hooked, email)

    emu.set_status(hooked, "soft@x.cz", 3)
    emu.set_status(hooked, "hard@x.cz", 4)
    emu.set_status(hooked, "spam@x.cz", 5)

    bounced = await page_of(api, hooked, "bounced")
    assert {email: m["status"] for email, m in bounced.items()} == {"soft@x.cz": 3, "hard@x.cz": 4}
    assert list(await page_of(api, hooked, "complained")) == ["spam@x.cz"]
    assert await page_of(api, hooked, "subscribed") == {}
    assert emu.find_list(hooked).counts()["hard_bounced"] == 1
    with pytest.raises(ValueError, match="status"):
        emu.set_status(hooked, "spam@x.cz", 9)
    assert no_webhook_fired(emu)


async def test_a_member_deleted_by_the_merchant_is_gone_from_pages_counters_and_the_account(
    emu: Emulator, api: httpx.AsyncClient, hooked: int
) -> None:
    for n in range(3):
        emu.add_member(hooked, f"c{n}@x.cz")

    emu.delete_member(hooked, "c1@x.cz")

    page = (await api.get(f"/lists/{hooked}/subscribers")).json()
    assert [m["email"] for m in page["data"]] == ["c0@x.cz", "c2@x.cz"]
    assert page["total"] == 2
    assert (await api.get(f"/lists/{hooked}/subscriber/c1@x.cz")).status_code == 404
    assert (await api.get("/subscribers/c1@x.cz")).status_code == 404
    assert "c1@x.cz" not in emu.accounts[KEY].contacts  # in no list: the person is gone
    with pytest.raises(KeyError):
        emu.delete_member(hooked, "c1@x.cz")
    emu.add_member(hooked, "c1@x.cz")  # may join again, at the end
    page = (await api.get(f"/lists/{hooked}/subscribers")).json()
    assert [m["email"] for m in page["data"]] == ["c0@x.cz", "c2@x.cz", "c1@x.cz"]
    assert no_webhook_fired(emu)


async def test_a_confirmed_double_opt_in_is_subscribed_from_then_and_fires_nothing_more() -> None:
    now = [datetime(2026, 3, 1, 9, 0, tzinfo=UTC)]
    emu = Emulator(clock=lambda: now[0])
    doi = emu.add_account(KEY).add_list("DOI", double_optin=True)
    emu.find_list(doi).webhook_url = f"http://127.0.0.1:{free_port()}/hook"
    async with httpx.AsyncClient(
        transport=asgi_transport(emu.app), base_url="http://e.test", headers={"key": KEY}
    ) as client:
        await subscribe(client, doi, subscriber_data={"email": "ann@x.cz"})
        assert list(await page_of(client, doi, "not_confirmed")) == ["ann@x.cz"]
        emu.wait_for_webhooks()
        assert [call.body["payload"]["status"] for call in emu.webhook_calls] == ["SUBSCRIBED"]

        now[0] = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
        emu.confirm_double_optin(doi, "ann@x.cz")

        (ann,) = (await page_of(client, doi, "subscribed")).values()
    assert ann["status"] == 1
    assert ann["subscribed_at"] == "2026-03-02T10:30:00.000000Z"
    emu.wait_for_webhooks()
    assert len(emu.webhook_calls) == 1  # only the sign-up's
    emu.close()


async def test_a_member_added_behind_the_clients_back_has_its_status_and_fields_and_no_webhook(
    emu: Emulator, api: httpx.AsyncClient, hooked: int
) -> None:
    emu.add_member(hooked, "Ann@x.cz", custom_fields={"ELLITY_Points": 5})
    emu.add_member(hooked, "pending@x.cz", status=6)

    (ann,) = (await page_of(api, hooked, "subscribed")).values()
    assert (ann["email"], ann["custom_fields"]) == ("ann@x.cz", {"ellity_points": 5})
    assert list(await page_of(api, hooked, "not_confirmed")) == ["pending@x.cz"]
    with pytest.raises(ValueError, match="already"):
        emu.add_member(hooked, "ann@x.cz")
    assert no_webhook_fired(emu)


async def test_seeded_members_keep_their_order_statuses_and_fields_and_skip_emails_seen(
    emu: Emulator, api: httpx.AsyncClient, hooked: int
) -> None:
    shared = {"ellity_points": 1}
    emu.add_member(hooked, "first@x.cz", custom_fields=shared)  # defines the field
    rows: list[SeedRow] = [
        ("a@x.cz", 1, shared),
        ("B@x.cz", 4, {"ELLITY_TIER": "gold"}),
        ("c@x.cz", 1, shared),
        ("a@x.cz", 2, None),  # seen: skipped
        ("d@x.cz", 2, None),
    ]

    assert emu.seed_members(hooked, iter(rows)) == 4

    subscribed = await page_of(api, hooked, "subscribed")
    assert list(subscribed) == ["first@x.cz", "a@x.cz", "c@x.cz"]
    assert (await page_of(api, hooked, "bounced"))["b@x.cz"]["custom_fields"] == {
        "ellity_tier": "gold"
    }
    (d,) = (await page_of(api, hooked, "unsubscribed")).values()
    assert d["unsubscribed_at"] is not None and d["custom_fields"] == []
    emu.edit_field(hooked, "a@x.cz", "ellity_points", 2)  # a shared dict is never changed
    assert emu.find_member(hooked, "c@x.cz").custom_fields == {"ellity_points": 1}
    assert (await api.get("/subscribers/d@x.cz")).status_code == 200
    assert no_webhook_fired(emu)


async def test_a_page_of_5000_stays_fast_in_a_list_of_300000(
    emu: Emulator, api: httpx.AsyncClient, list_id: int
) -> None:
    started = time.perf_counter()
    rows = ((f"m{n}@x.cz", 1 if n % 10 else 4, {"ellity_points": n}) for n in range(300_000))
    emu.seed_members(list_id, rows)
    seeded = time.perf_counter() - started
    for n in range(1, 300_000, 50):  # holes in the subscribed sequence
        if n % 10:
            emu.unsubscribe(list_id, f"m{n}@x.cz")

    started = time.perf_counter()
    page = await api.get(f"/lists/{list_id}/subscribers", params={"page": 50, "per_page": 5000})
    read = time.perf_counter() - started

    body = page.json()
    assert len(body["data"]) == 5000 and body["last_page"] == -(-body["total"] // 5000)
    assert seeded < 5.0  # about 1 s here
    assert read < 0.5  # about 25 ms here; a scan of the list would take far longer


# --- the same controls over HTTP, for an emulator in another process --------------------------


async def test_the_controls_answer_over_http_without_a_key_and_are_not_logged_as_api_requests(
    emu: Emulator, list_id: int
) -> None:
    emu.find_list(list_id).webhook_url = f"http://127.0.0.1:{free_port()}/hook"
    base = f"/_emulator/lists/{list_id}"
    async with httpx.AsyncClient(
        transport=asgi_transport(emu.app), base_url="http://e.test"
    ) as http:
        added = await http.post(
            f"{base}/members", json={"email": "ann@x.cz", "custom_fields": {"ellity_points": 1}}
        )
        assert added.status_code == 200
        assert added.json()["custom_fields"] == {"ellity_points": 1}
        edited = await http.put(f"{base}/members/ann@x.cz/fields", json={"ellity_points": 50})
        assert edited.json()["custom_fields"] == {"ellity_points": 50}
        bounced = await http.put(f"{base}/members/ann@x.cz/status", json={"status": 4})
        assert bounced.json()["status"] == 4
        unsubscribed = await http.post(f"{base}/members/ann@x.cz/unsubscribe")
        assert unsubscribed.json()["unsubscribed_at"] is not None
        await http.post(f"{base}/members", json={"email": "doi@x.cz", "status": 6})
        confirmed = await http.post(f"{base}/members/doi@x.cz/confirm")
        assert confirmed.json()["status"] == 1
        assert (await http.delete(f"{base}/members/doi@x.cz")).json() == {"deleted": True}
        assert (await http.get(f"{base}/members/doi@x.cz")).status_code == 404
        rows = await http.post(f"{base}/seed", json={"rows": [["r@x.cz", 1, None]]})
        counted = await http.post(
            f"{base}/seed", json={"count": 3, "email": "s{n}@x.cz", "status": 2}
        )
        assert (rows.json(), counted.json()) == ({"added": 1}, {"added": 3})
        assert (await http.get(f"{base}/members/s2@x.cz")).json()["status"] == 2
        assert (
            await http.post("/_emulator/lists/999/members", json={"email": "x@x.cz"})
        ).status_code == 404
        bad = await http.put(f"{base}/members/ann@x.cz/status", json={"status": 9})
        assert bad.status_code == 422 and "status" in bad.json()["message"]
        assert (await http.get("/_emulator/no-such-control")).status_code == 404
        await http.get("/lists", headers={"key": KEY})
        await http.get("/lists", headers={"key": KEY})
        requests = await http.get(f"/_emulator/keys/{KEY}/requests")

    assert requests.json() == {"total": 2, "max_per_minute": 2}
    assert [r.path for r in emu.requests] == ["/lists", "/lists"]
    lst = emu.find_list(list_id)
    assert lst.members["ann@x.cz"].status == 2
    assert sorted(lst.members) == ["ann@x.cz", "r@x.cz", "s0@x.cz", "s1@x.cz", "s2@x.cz"]
    assert no_webhook_fired(emu)


async def test_max_requests_per_minute_is_the_busiest_minute_of_a_key(
    emu: Emulator, api: httpx.AsyncClient
) -> None:
    for _ in range(3):
        await api.get("/lists")
    await api.get("/lists", headers={"key": "wrong"})

    assert emu.max_requests_per_minute(KEY) == 3
    assert emu.max_requests_per_minute("wrong") == 1
    assert emu.max_requests_per_minute("nobody") == 0
    first = emu.requests[0].at
    for later in (30.0, 59.9, 60.0, 100.0):  # a minute from the first holds 3 + 2 of them
        emu.requests.append(RequestRecord(first + later, KEY, "GET", "/lists", 200))
    assert emu.max_requests_per_minute(KEY) == 5
