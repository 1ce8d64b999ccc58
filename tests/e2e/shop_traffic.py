"""An e-shop calling Ellity's API: shoppers creating customers and changing their points
through several web processes at once, and what the shop was answered."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from ellity.domain.model.money import Points


def cents_text(cents: int) -> str:
    """Points as the API reads and writes them (``"12.50"``)."""
    return Points(cents).decimal_string()


@dataclass
class Shop:
    """What the e-shop knows: the customers it created and the balance each was left with."""

    expected: dict[int, int] = field(default_factory=dict)  # customer id -> cents
    emails: dict[int, str] = field(default_factory=dict)
    anonymous: set[int] = field(default_factory=set)
    codes: list[tuple[int, str]] = field(default_factory=list)  # (id, referral code)
    referrer_of: dict[int, int] = field(default_factory=dict)  # until the first purchase
    calls: Counter[str] = field(default_factory=Counter)  # per web process
    statuses: Counter[int] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)  # any answer but 200/201
    broken: list[str] = field(default_factory=list)  # no answer at all


class Traffic:
    """Shoppers calling the API through the web processes in turn, a pause after each call;
    each customer belongs to one shopper, so the shop knows every balance (a referrer's
    bonus included: the shop adds it when it sees the referred customer's first purchase).

    Customers are created with an email and marketing consent granted or unknown, 40 %
    anonymous (with a PIN), 30 % referred by an earlier customer."""

    def __init__(
        self,
        clients: list[httpx.AsyncClient],
        shop: Shop,
        *,
        pause: float,
        referral_bonus: int,
    ) -> None:
        self.clients = clients
        self.shop = shop
        self.pause = pause
        self.referral_bonus = referral_bonus
        self.stopping = asyncio.Event()
        self._turn = 0
        self._orders = 0

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        client = self.clients[self._turn % len(self.clients)]
        self._turn += 1
        self.shop.calls[str(client.base_url)] += 1
        try:
            answer = await client.request(method, f"/api/v1{path}", json=body)
        except httpx.TransportError as exc:
            self.shop.broken.append(f"{method} {path}: {type(exc).__name__} {exc}")
            return None
        self.shop.statuses[answer.status_code] += 1
        if answer.status_code not in (200, 201):
            self.shop.refused.append(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
            return None
        return answer.json()

    def order_ref(self) -> str:
        self._orders += 1
        return f"order-{self._orders}"

    async def create(self, rng: random.Random, own: list[int]) -> None:
        shop = self.shop
        email = f"c-{uuid.uuid4().hex[:10]}@example.cz"
        anonymous = rng.random() < 0.4
        body: dict[str, Any] = {
            "email": email,
            "first_name": rng.choice(["Anna", "Petr", "Jana", "Ondřej"]),
            "registered": not anonymous,
            "marketing_consent": rng.choice(["granted", "unknown"]),
        }
        referrer: int | None = None
        if shop.codes and rng.random() < 0.3:
            referrer, body["referred_by"] = rng.choice(shop.codes)
        created = await self.call("POST", "/customers", body)
        if created is None:
            return
        customer_id = created["id"]
        own.append(customer_id)
        shop.expected[customer_id] = 0
        shop.emails[customer_id] = email
        shop.codes.append((customer_id, created["referral_code"]))
        if anonymous:
            shop.anonymous.add(customer_id)
        if referrer is not None:
            shop.referrer_of[customer_id] = referrer

    async def change(self, rng: random.Random, customer_id: int) -> None:
        shop = self.shop
        draw = rng.random()
        balance = shop.expected[customer_id]
        if draw < 0.45 or balance < 100:
            cents = rng.randrange(100, 5000)
            body = {"points": cents_text(cents), "order_ref": self.order_ref()}
            if await self.call("POST", f"/customers/{customer_id}/earn", body) is not None:
                shop.expected[customer_id] += cents
                referrer = shop.referrer_of.pop(customer_id, None)
                if referrer is not None:
                    shop.expected[referrer] += self.referral_bonus
        elif draw < 0.7:
            cents = rng.randrange(1, balance + 1)
            body = {"points": cents_text(cents), "note": "redemption"}
            if await self.call("POST", f"/customers/{customer_id}/spend", body) is not None:
                shop.expected[customer_id] -= cents
        elif draw < 0.9:
            cents = rng.randrange(-balance, 1000) or 1
            body = {"points": cents_text(cents), "note": "goodwill"}
            if await self.call("POST", f"/customers/{customer_id}/adjust", body) is not None:
                shop.expected[customer_id] += cents
        elif customer_id in shop.anonymous:
            await self.call("POST", f"/customers/{customer_id}/pin")
        else:
            await self.read(rng, customer_id)

    async def read(self, rng: random.Random, customer_id: int) -> None:
        draw = rng.random()
        if draw < 0.4:
            await self.call("GET", f"/customers/{customer_id}")
        elif draw < 0.7:
            await self.call("GET", f"/customers/{customer_id}/ledger?limit=10")
        else:
            email = self.shop.emails[customer_id]
            await self.call("GET", f"/customers?email={email}")

    async def shopper(self, number: int) -> None:
        rng = random.Random(number)
        own: list[int] = []
        while not self.stopping.is_set():
            draw = rng.random()
            if not own or draw < 0.08:
                await self.create(rng, own)
            elif draw < 0.40:
                await self.change(rng, rng.choice(own))
            else:
                await self.read(rng, rng.choice(own))
            await asyncio.sleep(self.pause)

    @property
    def calls(self) -> int:
        return sum(self.shop.calls.values())
