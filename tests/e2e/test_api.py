"""The e-shop API over HTTP: the whole app on SQLite and on PostgreSQL (see conftest.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from sqlalchemy import event

from ellity.domain.services.api_tokens import (
    create_api_token,
    list_api_tokens,
    revoke_api_token,
)
from ellity.web.api import MAX_BODY_BYTES, EshopApiPlugin
from tests.asgi import asgi_transport
from tests.e2e.conftest import BASE_URL, ApiClient, Shop

V1 = "/api/v1"
PIN = re.compile(r"^[0-9]{6}$")
CODE = re.compile(r"^[2-9A-HJ-NP-Z]{8}$")


async def create(api: ApiClient, shop: Shop, **fields: Any) -> dict[str, Any]:
    response = await api.client.post(f"{V1}/customers", json=fields, headers=shop.auth)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def earn(
    api: ApiClient, shop: Shop, customer_id: int, points: str, order_ref: str, **extra: Any
) -> httpx.Response:
    return await api.client.post(
        f"{V1}/customers/{customer_id}/earn",
        json={"points": points, "order_ref": order_ref, **extra},
        headers=shop.auth,
    )


async def ledger(api: ApiClient, shop: Shop, customer_id: int, query: str = "") -> Any:
    response = await api.client.get(
        f"{V1}/customers/{customer_id}/ledger{query}", headers=shop.auth
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert body["message"]
    for fragment in fragments:
        assert fragment in body["message"]


# -- customers ----------------------------------------------------------------------------


async def test_a_new_customer_answers_201_with_exactly_the_customer_fields(
    api: ApiClient,
) -> None:
    response = await api.client.post(
        f"{V1}/customers",
        json={
            "email": " Ann@Example.cz ",
            "first_name": "Ann",
            "last_name": "Nováková",
            "shop_customer_id": "c-1",
        },
        headers=api.anna.auth,
    )

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert PIN.match(body["pin"])
    assert CODE.match(body["referral_code"])
    assert body == {
        "id": body["id"],
        "email": "Ann@Example.cz",
        "first_name": "Ann",
        "last_name": "Nováková",
        "shop_customer_id": "c-1",
        "registered": False,
        "pin": body["pin"],
        "referral_code": body["referral_code"],
        "referral_link": f"https://anna.example.cz/?ref={body['referral_code']}",
        "balance": "0.00",
        "next_expiration": None,
        "last_change": None,
        "marketing_consent": "unknown",
        "marketing_consent_source": None,
        "marketing_consent_changed_at": None,
    }


async def test_the_same_email_or_shop_customer_id_updates_the_customer_with_200(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz", first_name="Ann")

    by_email = await api.client.post(
        f"{V1}/customers",
        json={"email": "ANN@example.cz", "last_name": "Nová", "shop_customer_id": "c-9"},
        headers=api.anna.auth,
    )
    by_shop_id = await api.client.post(
        f"{V1}/customers",
        json={"shop_customer_id": "c-9", "registered": True},
        headers=api.anna.auth,
    )

    assert by_email.status_code == 200
    assert by_shop_id.status_code == 200
    body = by_shop_id.json()
    assert body == {
        **ann,
        "email": "ANN@example.cz",
        "last_name": "Nová",
        "shop_customer_id": "c-9",
        "registered": True,
        "pin": None,
    }
    assert (await api.stored())["customers"] == 1


async def test_a_customer_is_read_by_id_and_found_by_email_case_insensitively(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")

    read = await api.client.get(f"{V1}/customers/{ann['id']}", headers=api.anna.auth)
    found = await api.client.get(
        f"{V1}/customers", params={"email": "ANN@Example.CZ"}, headers=api.anna.auth
    )
    nobody = await api.client.get(
        f"{V1}/customers", params={"email": "bob@example.cz"}, headers=api.anna.auth
    )

    assert read.status_code == 200
    assert read.json() == ann
    assert found.json() == {"items": [ann]}
    assert nobody.status_code == 200
    assert nobody.json() == {"items": []}


def consent_of(body: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (
        body["marketing_consent"],
        body["marketing_consent_source"],
        body["marketing_consent_changed_at"],
    )


async def test_a_customer_created_with_a_marketing_consent_answers_who_set_it_and_when(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz", marketing_consent="granted")

    assert consent_of(ann) == ("granted", "api", "2024-03-10T09:00:00Z")
    read = await api.client.get(f"{V1}/customers/{ann['id']}", headers=api.anna.auth)
    assert read.json() == ann
    assert await api.rows("consent_changes") == 1


async def test_the_eshop_changes_consent_on_update_and_the_same_value_again_changes_nothing(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz", shop_customer_id="c-1")
    api.clock.advance(days=1)

    refused = await api.client.post(
        f"{V1}/customers",
        json={"shop_customer_id": "c-1", "marketing_consent": "refused"},
        headers=api.anna.auth,
    )
    api.clock.advance(days=1)
    again = await api.client.post(
        f"{V1}/customers",
        json={"email": "ANN@example.cz", "marketing_consent": "refused"},
        headers=api.anna.auth,
    )
    left = await api.client.post(
        f"{V1}/customers",
        json={"email": "ann@example.cz", "first_name": "Ann"},
        headers=api.anna.auth,
    )

    assert refused.status_code == again.status_code == left.status_code == 200
    assert consent_of(refused.json()) == ("refused", "api", "2024-03-11T09:00:00Z")
    assert consent_of(again.json()) == consent_of(refused.json())
    assert consent_of(left.json()) == consent_of(refused.json())
    assert refused.json()["id"] == ann["id"]
    assert await api.rows("consent_changes") == 1

    back = await api.client.post(
        f"{V1}/customers",
        json={"email": "ann@example.cz", "marketing_consent": "unknown"},
        headers=api.anna.auth,
    )
    assert consent_of(back.json()) == ("unknown", "api", "2024-03-12T09:00:00Z")
    assert await api.rows("consent_changes") == 2


@pytest.mark.parametrize("value", ["yes", "GRANTED", "", 1, True, ["granted"]])
async def test_a_consent_that_is_not_granted_refused_or_unknown_is_refused_and_nothing_changes(
    api: ApiClient, value: Any
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz", marketing_consent="granted")
    before = (await api.stored(), await api.rows("consent_changes"))

    updated = await api.client.post(
        f"{V1}/customers",
        json={"email": "ann@example.cz", "first_name": "Ann", "marketing_consent": value},
        headers=api.anna.auth,
    )
    created = await api.client.post(
        f"{V1}/customers",
        json={"email": "new@example.cz", "marketing_consent": value},
        headers=api.anna.auth,
    )

    for response in (updated, created):
        assert_error(response, 400, "bad_request", "'marketing_consent'")
        if isinstance(value, str):
            assert "granted, refused, unknown" in response.json()["message"]
    assert (await api.stored(), await api.rows("consent_changes")) == before
    read = await api.client.get(f"{V1}/customers/{ann['id']}", headers=api.anna.auth)
    assert read.json() == ann


async def test_another_merchants_customer_with_the_same_email_keeps_their_own_consent(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz", marketing_consent="granted")

    bobs = await create(api, api.bob, email="ann@example.cz", marketing_consent="refused")

    assert bobs["id"] != ann["id"]
    assert consent_of(bobs)[:2] == ("refused", "api")
    read = await api.client.get(f"{V1}/customers/{ann['id']}", headers=api.anna.auth)
    assert consent_of(read.json())[:2] == ("granted", "api")


async def test_a_customer_created_with_a_referral_code_pays_the_referrer_on_the_first_purchase(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    ben = await create(
        api, api.anna, email="ben@example.cz", referred_by=ann["referral_code"].lower()
    )

    assert (await earn(api, api.anna, ben["id"], "10", "o-1")).status_code == 200

    items = (await ledger(api, api.anna, ann["id"]))["items"]
    assert [(e["kind"], e["points"]) for e in items] == [("referral_bonus", "50.00")]


async def test_an_unknown_referral_code_is_refused_and_no_customer_is_created(
    api: ApiClient,
) -> None:
    response = await api.client.post(
        f"{V1}/customers",
        json={"email": "ben@example.cz", "referred_by": "NOSUCH23"},
        headers=api.anna.auth,
    )
    assert_error(response, 422, "invalid_input", "NOSUCH23")
    assert (await api.stored())["customers"] == 0


async def test_an_email_taken_by_another_customer_is_a_409(api: ApiClient) -> None:
    await create(api, api.anna, email="ann@example.cz")
    await create(api, api.anna, shop_customer_id="c-2")

    response = await api.client.post(
        f"{V1}/customers",
        json={"shop_customer_id": "c-2", "email": "ann@example.cz"},
        headers=api.anna.auth,
    )
    assert_error(response, 409, "duplicate_customer", "email")


# -- points -------------------------------------------------------------------------------


async def test_earning_answers_the_customer_with_balance_expiry_and_last_change_as_strings(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")

    response = await earn(api, api.anna, ann["id"], "12.50", "o-1", note="first order")

    assert response.status_code == 200
    assert response.json() == {
        **ann,
        "balance": "12.50",
        "next_expiration": {"date": "2025-03-10", "points": "12.50"},
        "last_change": {"date": "2024-03-10", "points": "12.50"},
    }


async def test_the_same_order_ref_twice_earns_once(api: ApiClient) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    first = await earn(api, api.anna, ann["id"], "12.50", "o-1")
    api.clock.advance(days=1)

    again = await earn(api, api.anna, ann["id"], "99", "o-1")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.json()["balance"] == "12.50"
    assert len((await ledger(api, api.anna, ann["id"]))["items"]) == 1


async def test_an_order_ref_used_for_another_customer_is_a_409(api: ApiClient) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    ben = await create(api, api.anna, email="ben@example.cz")
    await earn(api, api.anna, ann["id"], "5", "o-1")

    assert_error(await earn(api, api.anna, ben["id"], "5", "o-1"), 409, "order_already_used")
    assert (await ledger(api, api.anna, ben["id"]))["items"] == []


async def test_spending_takes_points_and_a_repeated_order_ref_spends_once(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    await earn(api, api.anna, ann["id"], "30", "o-1")

    spend = {"points": "10.25", "order_ref": "r-1", "note": "voucher"}
    first = await api.client.post(
        f"{V1}/customers/{ann['id']}/spend", json=spend, headers=api.anna.auth
    )
    again = await api.client.post(
        f"{V1}/customers/{ann['id']}/spend", json=spend, headers=api.anna.auth
    )
    without_ref = await api.client.post(
        f"{V1}/customers/{ann['id']}/spend", json={"points": "0.75"}, headers=api.anna.auth
    )

    assert first.status_code == again.status_code == without_ref.status_code == 200
    assert first.json()["balance"] == again.json()["balance"] == "19.75"
    assert without_ref.json()["balance"] == "19.00"
    assert without_ref.json()["last_change"] == {"date": "2024-03-10", "points": "-0.75"}


async def test_spending_past_the_balance_is_a_409_and_writes_nothing(api: ApiClient) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    await earn(api, api.anna, ann["id"], "10", "o-1")
    before = await api.stored()

    response = await api.client.post(
        f"{V1}/customers/{ann['id']}/spend",
        json={"points": "10.01", "order_ref": "r-1"},
        headers=api.anna.auth,
    )

    assert_error(response, 409, "insufficient_points", "10", "10.01")
    assert await api.stored() == before
    assert len((await ledger(api, api.anna, ann["id"]))["items"]) == 1
    read = await api.client.get(f"{V1}/customers/{ann['id']}", headers=api.anna.auth)
    assert read.json()["balance"] == "10.00"


async def test_adjusting_adds_or_takes_points_with_a_note_but_never_below_zero(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")

    added = await api.client.post(
        f"{V1}/customers/{ann['id']}/adjust",
        json={"points": "20", "note": "goodwill"},
        headers=api.anna.auth,
    )
    taken = await api.client.post(
        f"{V1}/customers/{ann['id']}/adjust",
        json={"points": "-5.50", "note": "correction"},
        headers=api.anna.auth,
    )
    too_much = await api.client.post(
        f"{V1}/customers/{ann['id']}/adjust",
        json={"points": "-100", "note": "oops"},
        headers=api.anna.auth,
    )

    assert added.json()["balance"] == "20.00"
    assert taken.status_code == 200
    assert taken.json()["balance"] == "14.50"
    assert taken.json()["last_change"] == {"date": "2024-03-10", "points": "-5.50"}
    assert_error(too_much, 409, "insufficient_points")
    items = (await ledger(api, api.anna, ann["id"]))["items"]
    assert [(e["kind"], e["points"], e["note"]) for e in items] == [
        ("adjust", "-5.50", "correction"),
        ("adjust", "20.00", "goodwill"),
    ]


async def test_a_new_pin_for_an_anonymous_customer_and_a_409_for_a_registered_one(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    reg = await create(api, api.anna, email="reg@example.cz", registered=True)

    renewed = await api.client.post(f"{V1}/customers/{ann['id']}/pin", headers=api.anna.auth)
    refused = await api.client.post(f"{V1}/customers/{reg['id']}/pin", headers=api.anna.auth)

    assert renewed.status_code == 200
    assert PIN.match(renewed.json()["pin"])
    assert renewed.json() == {**ann, "pin": renewed.json()["pin"]}
    assert renewed.json()["pin"] != ann["pin"]
    assert reg["pin"] is None
    assert_error(refused, 409, "registered_customer_has_no_pin")


async def test_the_ledger_is_newest_first_and_pages_with_limit_and_before(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    await earn(api, api.anna, ann["id"], "10", "o-1", note="first")
    api.clock.advance(hours=1)
    await earn(api, api.anna, ann["id"], "5", "o-2")
    api.clock.advance(hours=1)
    await api.client.post(
        f"{V1}/customers/{ann['id']}/spend", json={"points": "3"}, headers=api.anna.auth
    )

    everything = await ledger(api, api.anna, ann["id"])
    first_page = await ledger(api, api.anna, ann["id"], "?limit=2")
    last_page = await ledger(
        api, api.anna, ann["id"], f"?limit=2&before={first_page['next_before']}"
    )

    assert everything == {
        "items": [
            {
                "at": "2024-03-10T11:00:00Z",
                "kind": "spend",
                "points": "-3.00",
                "balance_after": "12.00",
                "note": None,
                "order_ref": None,
            },
            {
                "at": "2024-03-10T10:00:00Z",
                "kind": "earn",
                "points": "5.00",
                "balance_after": "15.00",
                "note": None,
                "order_ref": "o-2",
            },
            {
                "at": "2024-03-10T09:00:00Z",
                "kind": "earn",
                "points": "10.00",
                "balance_after": "10.00",
                "note": "first",
                "order_ref": "o-1",
            },
        ],
        "next_before": None,
    }
    assert first_page["items"] == everything["items"][:2]
    assert isinstance(first_page["next_before"], int)
    assert last_page == {"items": everything["items"][2:], "next_before": None}


# -- who may call -------------------------------------------------------------------------


def every_call(customer_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    c = f"{V1}/customers/{customer_id}"
    return [
        ("POST", f"{V1}/customers", {"email": "x@example.cz"}),
        ("GET", f"{V1}/customers?email=ann@example.cz", None),
        ("GET", c, None),
        ("POST", f"{c}/earn", {"points": "1", "order_ref": "o-x"}),
        ("POST", f"{c}/spend", {"points": "1"}),
        ("POST", f"{c}/adjust", {"points": "1", "note": "x"}),
        ("POST", f"{c}/pin", None),
        ("GET", f"{c}/ledger", None),
    ]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWRtaW46c2VjcmV0",
        "Bearer ell_wrongwrongwrongwrongwrongwrongwrongwrong",
        "Token {token}",
        "Bearer {token}x",
        "Bearer " + "x" * 5000,
    ],
)
async def test_every_call_without_a_valid_token_is_a_401_that_asks_for_a_bearer_token(
    api: ApiClient, authorization: str | None
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    await earn(api, api.anna, ann["id"], "10", "o-1")
    before = await api.stored()
    headers = {} if authorization is None else {"Authorization": authorization}
    headers = {k: v.format(token=api.anna.token) for k, v in headers.items()}

    for method, url, body in every_call(ann["id"]):
        response = await api.client.request(method, url, json=body, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        assert api.anna.token not in response.text

    assert await api.stored() == before


async def test_a_revoked_token_is_refused_while_the_merchants_other_token_works(
    api: ApiClient,
) -> None:
    deps = api.deps
    second, second_token = await create_api_token(
        api.anna.id, "second shop", uow=deps.uow(), clock=deps.clock, rng=deps.rng
    )
    await revoke_api_token(api.anna.id, second.id, uow=deps.uow(), clock=deps.clock)

    refused = await api.client.get(
        f"{V1}/customers?email=a@example.cz",
        headers={"Authorization": f"Bearer {second_token}"},
    )
    accepted = await api.client.get(
        f"{V1}/customers?email=a@example.cz", headers={"authorization": f"bearer {api.anna.token}"}
    )

    assert_error(refused, 401, "unauthorized", "revoked")
    assert accepted.status_code == 200


async def test_an_e_shops_calls_write_its_tokens_last_use_at_most_once_a_minute(
    api: ApiClient,
) -> None:
    """Every call reads the token; only a call a minute after the recorded use writes."""
    updates: list[str] = []

    def count_token_updates(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("UPDATE API_TOKENS"):
            updates.append(statement)

    async def last_use_after_a_call() -> object:
        response = await api.client.get(f"{V1}/customers?email=a@example.cz", headers=api.anna.auth)
        assert response.status_code == 200, response.text
        tokens = await list_api_tokens(api.anna.id, uow=api.deps.uow(read_only=True))
        return tokens[0].last_used_at

    engine = api.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count_token_updates)
    try:
        first = api.clock.advance(hours=1)
        assert await last_use_after_a_call() == first
        api.clock.advance(seconds=59)
        assert await last_use_after_a_call() == first
        assert len(updates) == 1

        a_minute_on = api.clock.advance(seconds=1)
        assert await last_use_after_a_call() == a_minute_on
        assert len(updates) == 2
    finally:
        event.remove(engine, "before_cursor_execute", count_token_updates)


async def test_another_merchants_customer_is_a_404_for_every_call_and_stays_untouched(
    api: ApiClient,
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz", shop_customer_id="c-1")
    await earn(api, api.anna, ann["id"], "10", "o-1")
    ann = (await api.client.get(f"{V1}/customers/{ann['id']}", headers=api.anna.auth)).json()
    before = await api.stored()

    for method, url, body in every_call(ann["id"])[2:]:
        response = await api.client.request(method, url, json=body, headers=api.bob.auth)
        assert_error(response, 404, "not_found", str(ann["id"]))

    found = await api.client.get(
        f"{V1}/customers", params={"email": "ann@example.cz"}, headers=api.bob.auth
    )
    assert found.json() == {"items": []}
    assert await api.stored() == before
    after = await api.client.get(f"{V1}/customers/{ann['id']}", headers=api.anna.auth)
    assert after.json() == ann

    own = await api.client.post(
        f"{V1}/customers",
        json={"email": "ann@example.cz", "shop_customer_id": "c-1"},
        headers=api.bob.auth,
    )
    assert own.status_code == 201
    assert own.json()["id"] != ann["id"]
    assert own.json()["referral_link"].startswith("https://bob.example.cz/")


# -- bad input ----------------------------------------------------------------------------

_BIG = b'{"email": "' + b"a" * MAX_BODY_BYTES + b'@example.cz"}'
_FOLDS_TOO_LONG = "ß" * 127 + "@x.cz"  # 132 characters; case-folded ("ss") 259


@dataclass(frozen=True)
class Bad:
    """A bad request: ``path`` follows /api/v1/customers, ``{c}`` is a customer's id."""

    method: str
    path: str
    body: bytes | dict[str, Any] | None
    status: int
    says: str
    code: str = ""

    @property
    def error(self) -> str:
        return (
            self.code or {400: "bad_request", 404: "not_found", 422: "invalid_input"}[self.status]
        )


EARN, SPEND, ADJUST, LEDGER = "/{c}/earn", "/{c}/spend", "/{c}/adjust", "/{c}/ledger"
BAD_REQUESTS = {
    # 400: the request does not fit the schema
    "float-points": Bad("POST", EARN, {"points": 12.5, "order_ref": "o"}, 400, '"12.50"'),
    "int-points": Bad("POST", SPEND, {"points": 3}, 400, "never sent as JSON numbers"),
    "int-adjust": Bad("POST", ADJUST, {"points": -3, "note": "x"}, 400, "points"),
    "malformed-json": Bad("POST", EARN, b'{"points": "1", ', 400, "not valid JSON"),
    "not-an-object": Bad("POST", "", b'["ann@example.cz"]', 400, "JSON object"),
    "deep-nesting": Bad("POST", "", b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "deep"),
    "null-body": Bad("POST", EARN, b"null", 400, "JSON object"),
    "empty-body": Bad("POST", SPEND, b"", 400, "JSON object"),
    "wrong-type": Bad("POST", "", {"email": 5}, 400, "'email' must be a string"),
    "wrong-bool": Bad("POST", "", {"email": "a@b.cz", "registered": "yes"}, 400, "registered"),
    "bad-consent": Bad(
        "POST", "", {"email": "a@b.cz", "marketing_consent": "yes"}, 400, "granted,"
    ),
    "missing-field": Bad("POST", EARN, {"points": "1"}, 400, "'order_ref' is required"),
    "missing-note": Bad("POST", ADJUST, {"points": "1"}, 400, "'note' is required"),
    "unknown-field": Bad("POST", EARN, {"points": "1", "order_ref": "o", "pts": 1}, 400, "'pts'"),
    "limit-zero": Bad("GET", LEDGER + "?limit=0", None, 400, "'limit' must be"),
    "limit-too-big": Bad("GET", LEDGER + "?limit=501", None, 400, "<= 500"),
    "limit-text": Bad("GET", LEDGER + "?limit=ten", None, 400, "limit"),
    "before-zero": Bad("GET", LEDGER + "?before=0", None, 400, "before"),
    "no-email-query": Bad("GET", "", None, 400, "email"),
    "huge-id": Bad("GET", "/99999999999999999999", None, 400, "customer_id"),
    "id-above-2^63": Bad("POST", f"/{2**63}/earn", {"points": "1", "order_ref": "o"}, 400, "<="),
    "before-above-2^63": Bad("GET", LEDGER + f"?before={2**63}", None, 400, "'before'"),
    # 413, 404, 405: limits and routing
    "oversized-body": Bad("POST", "", _BIG, 413, "64 KiB", code="body_too_large"),
    "text-id": Bad("GET", "/ann", None, 404, "/api/v1/customers/ann"),
    "unknown-call": Bad("POST", "/{c}/redeem", {"points": "1"}, 404, "redeem"),
    "wrong-method": Bad("DELETE", "/{c}", None, 405, "GET", code="method_not_allowed"),
    # 422: the values break a rule
    "three-decimals": Bad("POST", EARN, {"points": "1.005", "order_ref": "o"}, 422, "two dec"),
    "not-a-number": Bad("POST", EARN, {"points": "ten", "order_ref": "o"}, 422, "'ten'"),
    "exponent": Bad("POST", SPEND, {"points": "1e3"}, 422, "1e3"),
    "zero-points": Bad("POST", EARN, {"points": "0", "order_ref": "o"}, 422, "zero"),
    "negative-earn": Bad("POST", EARN, {"points": "-5", "order_ref": "o"}, 422, "zero"),
    "zero-adjust": Bad("POST", ADJUST, {"points": "0", "note": "x"}, 422, "zero"),
    "huge-points": Bad("POST", EARN, {"points": "9" * 400, "order_ref": "o"}, 422, "more points"),
    "blank-order-ref": Bad("POST", EARN, {"points": "1", "order_ref": " "}, 422, "empty"),
    "long-order-ref": Bad("POST", EARN, {"points": "1", "order_ref": "o" * 101}, 422, "100"),
    "nul-order-ref": Bad("POST", EARN, {"points": "1", "order_ref": "o\x00"}, 422, "control"),
    "nul-note": Bad("POST", SPEND, {"points": "1", "note": "a\x00b"}, 422, "control"),
    "long-note": Bad("POST", ADJUST, {"points": "1", "note": "n" * 501}, 422, "500"),
    "no-identity": Bad("POST", "", {"first_name": "Ann"}, 422, "email or a shop customer id"),
    "bad-email": Bad("POST", "", {"email": "ann.example.cz"}, 422, "not a valid email"),
    "nul-email": Bad("POST", "", {"email": "a\x00@example.cz"}, 422, "control"),
    "nul-shop-id": Bad("POST", "", {"shop_customer_id": "c\x00"}, 422, "control"),
    "nul-referral": Bad(
        "POST", "", {"email": "n@example.cz", "referred_by": "AB\x00"}, 422, "referral code"
    ),
    "long-name": Bad("POST", "", {"email": "a@b.cz", "first_name": "A" * 101}, 422, "100"),
    "bad-email-query": Bad("GET", "?email=nobody", None, 422, "not a valid email"),
    "email-folds-too-long": Bad("POST", "", {"email": _FOLDS_TOO_LONG}, 422, "at most 254"),
    "email-query-folds-too-long": Bad(
        "GET", "?email=" + "%C3%9F" * 127 + "@x.cz", None, 422, "at most 254"
    ),
    "nul-email-query": Bad("GET", "?email=ann%00@example.cz", None, 422, "control"),
}


@pytest.mark.parametrize("bad", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_bad_input_is_a_4xx_that_says_what_is_wrong_and_stores_nothing(
    api: ApiClient, bad: Bad
) -> None:
    ann = await create(api, api.anna, email="ann@example.cz")
    await earn(api, api.anna, ann["id"], "10", "o-1")
    before = await api.stored()
    url = f"{V1}/customers{bad.path.format(c=ann['id'])}"
    headers = {**api.anna.auth, "Content-Type": "application/json"}

    if isinstance(bad.body, bytes):
        response = await api.client.request(bad.method, url, content=bad.body, headers=headers)
    else:
        response = await api.client.request(bad.method, url, json=bad.body, headers=headers)

    assert_error(response, bad.status, bad.error, bad.says)
    if bad.status == 405:
        assert "GET" in response.headers["allow"]
    assert await api.stored() == before


# -- the app around the API ---------------------------------------------------------------


async def test_the_api_needs_no_csrf_token_even_when_the_pages_are_csrf_protected(
    api: ApiClient,
) -> None:
    deps = api.deps

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.deps = deps
        yield

    protected = Litestar(
        plugins=[EshopApiPlugin()],
        csrf_config=CSRFConfig(secret="a-secret-of-at-least-32-characters!"),
        lifespan=[lifespan],
    )
    async with (
        protected.lifespan(),
        httpx.AsyncClient(transport=asgi_transport(protected), base_url=BASE_URL) as client,
    ):
        response = await client.post(
            f"{V1}/customers", json={"email": "ann@example.cz"}, headers=api.anna.auth
        )
    assert response.status_code == 201, response.text


async def test_the_openapi_schema_describes_the_bearer_token_bodies_and_errors(
    api: ApiClient,
) -> None:
    schema = (await api.client.get("/schema/openapi.json")).json()

    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        if path.startswith(V1)
        for method, operation in item.items()
    ]
    assert len(operations) == 8
    for path, method, operation in operations:
        assert operation["security"] == [{"apiToken": []}], (path, method)
        error = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
        if method == "post" and not path.endswith("/pin"):
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["$ref"].startswith("#/components/schemas/")
    earn_body = schema["components"]["schemas"]["EarnPoints"]
    assert earn_body["properties"]["points"]["type"] == "string"
    assert sorted(earn_body["required"]) == ["order_ref", "points"]
    schemas = schema["components"]["schemas"]
    assert sorted(schemas["MarketingConsent"]["enum"]) == ["granted", "refused", "unknown"]
    assert sorted(schemas["ConsentSource"]["enum"]) == ["api", "ecomail", "staff"]
    upsert_consent = schemas["CustomerUpsert"]["properties"]["marketing_consent"]
    assert {"$ref": "#/components/schemas/MarketingConsent"} in upsert_consent["oneOf"]
    answered = schemas["Customer"]["properties"]
    assert answered["marketing_consent_changed_at"]["oneOf"][0]["format"] == "date-time"
    assert {"marketing_consent", "marketing_consent_source"} <= set(schemas["Customer"]["required"])


async def test_pages_outside_the_api_keep_their_own_not_found_answer(api: ApiClient) -> None:
    response = await api.client.get("/no-such-page")
    assert response.status_code == 404
    assert "in the API" not in response.text


async def test_health_still_answers_next_to_the_api(api: ApiClient) -> None:
    response = await api.client.get("/health")
    assert response.json() == {"status": "ok", "database": "ok"}
