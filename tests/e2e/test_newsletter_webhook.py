"""The newsletter reward end to end: the Ecomail emulator fires its real list webhook at the
app listening on a real port (uvicorn in a thread), on SQLite and on PostgreSQL.

The worker's run is driven by hand (``worker.deliver_once``: contacts, then notifications,
then the outbox) with one clock the test moves, shared by the app, the worker and the
emulator, so "later" and "31 days later" are exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ellity.adapters.ecomail.limiter import LocalRequestLimiter
from ellity.adapters.ecomail.platforms import EcomailPlatforms, EcomailSettings
from ellity.adapters.sql.database import Database
from ellity.bootstrap import build_deps
from ellity.deps import Deps
from ellity.domain.model.consent import EcomailAdd, MarketingConsent
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import integration, merchants, newsletter_intake
from ellity.domain.services.api_tokens import create_api_token
from ellity.domain.services.customers import CustomerInput, upsert_customer
from ellity.settings import load_settings
from ellity.web.app import create_app
from ellity.worker import deliver_once
from tests.e2e.conftest import deps_on
from tests.ecomail_emulator import Emulator, EmulatorServer, MailingList
from tests.fakes import FakeClock, FakePasswordHasher, FakeRandom
from tests.processes import ELLITY, clean_env, free_port

KEY = "anna-ecomail-key-7f3a9c"
REWARD = 50
ANN = "ann@anna-customers.cz"
ZOE = "zoe@anna-customers.cz"


class AppServer:
    """The app served by uvicorn on 127.0.0.1 in a thread of its own, lifespan included (the
    app builds its engines on that thread's loop)."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", log_config=None,
            log_level="warning", access_log=False, timeout_graceful_shutdown=1,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="ellity-app", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@dataclass
class World:
    deps: Deps  # the worker's (and the test's)
    database: Database
    clock: FakeClock
    emu: Emulator
    newsletter_list: MailingList
    app_url: str
    merchant_id: MerchantId
    webhook: str = ""

    @property
    def token(self) -> str:
        return self.webhook.rsplit("/", 1)[1]

    async def customer(self, email: str) -> int:
        result = await upsert_customer(
            self.merchant_id,
            CustomerInput(email=email, registered=True),
            uow=self.deps.uow(),
            clock=self.clock,
            rng=self.deps.rng,
        )
        assert result.view.customer.id is not None
        return result.view.customer.id

    async def created_through_the_api(self, email: str) -> None:
        """The e-shop creates the customer through the app's API."""
        answer = await self.api_upsert({"email": email, "registered": True})
        assert answer.status_code == 201, answer.text

    async def api_upsert(self, body: dict[str, Any]) -> httpx.Response:
        """The e-shop's create-or-update call to the app's API."""
        _, token = await create_api_token(
            self.merchant_id, "e-shop", uow=self.deps.uow(), clock=self.clock, rng=self.deps.rng
        )
        async with httpx.AsyncClient() as client:
            return await client.post(
                f"{self.app_url}/api/v1/customers",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )

    async def webhooks_answered(self) -> None:
        await asyncio.to_thread(self.emu.wait_for_webhooks, 20.0)

    async def work(self) -> None:
        """Worker runs until nothing is left: each may fire webhooks (Ellity's own adds)."""
        await self.webhooks_answered()
        idle = 0
        while idle < 2:
            done = await deliver_once(self.deps, "test-worker", limit=1000)
            await self.webhooks_answered()
            idle = 0 if done else idle + 1
            self.clock.advance(seconds=5)  # past short waits (a contact on its way)

    async def balance(self, email: str) -> Points:
        async with self.database.engine.connect() as conn:
            cents = (
                await conn.execute(
                    sa.text("SELECT balance_cents FROM customers WHERE email_key = :e"),
                    {"e": email.casefold()},
                )
            ).scalar_one()
        return Points(int(cents))

    async def ledger(self) -> list[tuple[str, int]]:
        async with self.database.engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT kind, points_cents FROM ledger_entries ORDER BY id")
            )
            return [(r.kind, int(r.points_cents)) for r in rows]

    async def reasons(self) -> list[str | None]:
        async with self.database.engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT reason FROM newsletter_notifications ORDER BY id")
            )
            return [r.reason for r in rows]

    async def consent(self, email: str) -> str:
        async with self.database.engine.connect() as conn:
            consent: str = (
                await conn.execute(
                    sa.text("SELECT marketing_consent FROM customers WHERE email_key = :e"),
                    {"e": email.casefold()},
                )
            ).scalar_one()
        return consent

    async def outcomes(self) -> list[tuple[str, str, str | None]]:
        async with self.database.engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT email, status, outcome FROM newsletter_notifications ORDER BY id")
            )
            return [(r.email, r.status, r.outcome) for r in rows]

    def later(self) -> None:
        self.clock.advance(hours=1)  # well past the echo window of Ellity's own adds


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[tuple[Emulator, EmulatorServer]]:
    with Emulator(clock=clock.now) as emu, EmulatorServer(emu, port=0) as server:
        yield emu, server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def serving(database: Database, var_dir: Path, clock: FakeClock) -> AsyncIterator[str]:
    """``create_app`` + ``build_deps`` as ``ellity serve`` runs them, on a real port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app_settings = load_settings(
        {
            "ELLITY_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
            "ELLITY_SECRET_KEY": "e2e-secret-key",
            "ELLITY_VAR_DIR": str(var_dir),
            "ELLITY_BASE_URL": url,
        },
        dotenv=var_dir / "no.env",
    )

    @asynccontextmanager
    async def provide() -> AsyncIterator[Deps]:
        async with build_deps(app_settings) as built:
            yield dataclasses.replace(
                built, clock=clock, rng=FakeRandom(seed=7), hasher=FakePasswordHasher()
            )

    with AppServer(create_app(provide, debug=True), port):
        yield url


@pytest.fixture
async def world(
    sql_database: Database,
    tmp_path: Path,
    clock: FakeClock,
    emulator: tuple[Emulator, EmulatorServer],
) -> AsyncIterator[World]:
    """Anna's shop: Ecomail active with the list "Newsletter", 50 points for subscribing,
    taken back on unsubscribe, and the list's webhook pointed at the app."""
    emu, server = emulator
    account = emu.add_account(KEY)
    list_id = account.add_list("Newsletter")
    async with (
        serving(sql_database, tmp_path, clock) as app_url,
        deps_on(sql_database, tmp_path, clock) as test_deps,
    ):
        platforms = EcomailPlatforms(
            LocalRequestLimiter(limit=950, window=60.0, max_wait=5.0),
            EcomailSettings(base_url=server.url, connect_timeout=2.0, read_timeout=5.0),
        )
        deps = dataclasses.replace(test_deps, marketing=platforms)
        try:
            merchant = await merchants.create_merchant(
                slug="anna",
                settings=MerchantSettings(
                    name="Anna",
                    shop_url="https://anna.example.cz",
                    newsletter_reward=Points.parse(str(REWARD)),
                    newsletter_take_back=True,
                    # every customer is added to the list, whatever their consent (these
                    # tests are about the reward, not about who is added)
                    ecomail_add=EcomailAdd.CUSTOMERS,
                ),
                admin_email="admin@anna.example.cz",
                admin_password="a long password",
                uow=deps.uow(),
                clock=clock,
                hasher=deps.hasher,
            )
            assert merchant.id is not None
            common: dict[str, Any] = {
                "uow_factory": deps.uow,
                "platforms": platforms,
                "secret_box": deps.secret_box,
                "clock": clock,
            }
            await integration.connect_ecomail(merchant.id, KEY, **common)
            await integration.activate_ecomail(merchant.id, str(list_id), **common)
            w = World(deps, sql_database, clock, emu, account.lists[list_id], app_url, merchant.id)
            w.webhook = await newsletter_intake.webhook_address(
                merchant.id,
                uow_factory=deps.uow,
                secret_box=deps.secret_box,
                rng=deps.rng,
                clock=clock,
                base_url=app_url,
            )
            w.newsletter_list.webhook_url = w.webhook  # pasted into the list's settings
            yield w
        finally:
            await platforms.aclose()


async def customer_in_the_list(w: World, email: str = ANN) -> None:
    """A customer Ellity added to the list, who then unsubscribed there (so subscribing is
    the customer's own act, long after Ellity's add)."""
    await w.customer(email)
    await w.work()
    w.later()
    w.newsletter_list.unsubscribe_by_link(email)
    await w.work()
    w.later()


def p(points: int) -> Points:
    return Points(points * 100)


# -- the reward through the real webhook ---------------------------------------------------


async def test_a_customer_subscribing_through_ecomail_gets_the_reward_once_and_loses_it(
    world: World,
) -> None:
    await customer_in_the_list(world)
    assert await world.balance(ANN) == p(0)

    world.newsletter_list.subscribe_by_form(ANN)
    await world.work()
    assert await world.balance(ANN) == p(REWARD)
    member = world.newsletter_list.members[ANN]
    assert member.custom_fields["ellity_credit_num"] == REWARD  # re-synced
    credit = [e for e in world.emu.accounts[KEY].events if e["label"] == "credit"]
    assert json.loads(credit[-1]["value"])["reason"] == "newsletter_reward"

    world.later()
    world.newsletter_list.unsubscribe_by_link(ANN, campaign_id=31)
    await world.work()
    assert await world.balance(ANN) == p(0)
    assert [k for k, _ in await world.ledger()] == ["newsletter_reward", "newsletter_deduction"]
    assert [call.status for call in world.emu.webhook_calls] == [200] * len(world.emu.webhook_calls)
    assert (await world.outcomes())[-2:] == [
        (ANN, "SUBSCRIBED", "paid"),
        (ANN, "UNSUBSCRIBED", "deducted"),
    ]


async def test_a_refusal_through_the_api_unsubscribes_the_contact_and_takes_the_reward_back(
    world: World,
) -> None:
    await customer_in_the_list(world)
    world.newsletter_list.subscribe_by_form(ANN)
    await world.work()
    assert await world.balance(ANN) == p(REWARD)
    calls = len(world.emu.webhook_calls)

    answer = await world.api_upsert({"email": ANN, "marketing_consent": "refused"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["marketing_consent"] == "refused"
    assert answer.json()["marketing_consent_source"] == "api"
    await world.work()

    member = world.newsletter_list.members[ANN]
    assert member.status == 2  # unsubscribed by Ellity, carrying out the refusal
    unsubscribes = [r for r in world.emu.requests if r.method == "DELETE"]
    assert [r.path for r in unsubscribes] == [f"/lists/{world.newsletter_list.id}/unsubscribe"]
    assert len(world.emu.webhook_calls) == calls  # Ecomail posts nothing for it
    assert await world.balance(ANN) == p(0)
    assert [k for k, _ in await world.ledger()] == ["newsletter_reward", "newsletter_deduction"]
    assert await world.consent(ANN) == "refused"
    assert member.custom_fields["ellity_credit_num"] == 0  # the fields are still kept

    def adds() -> int:
        return sum(1 for r in world.emu.requests if r.path.endswith("/subscribe-bulk"))

    before = adds()
    await world.api_upsert({"email": ANN, "first_name": "Annie"})  # any later change
    await world.work()
    assert member.status == 2 and adds() == before  # never added nor subscribed again
    assert member.name == "Annie"


async def test_a_double_optin_sign_up_is_paid_once_the_person_confirms_it(
    world: World,
) -> None:
    await customer_in_the_list(world)
    world.newsletter_list.double_optin = True
    world.newsletter_list.subscribe_by_form(ANN)  # status "unconfirmed"; the only webhook
    await world.work()
    assert await world.balance(ANN) == p(0)
    assert (await world.outcomes())[-1] == (ANN, "SUBSCRIBED", None)  # waiting
    world.newsletter_list.confirm_double_optin(ANN)  # Ecomail posts nothing now
    world.clock.advance(minutes=10)
    await world.work()
    assert await world.balance(ANN) == p(REWARD)
    assert (await world.outcomes())[-1] == (ANN, "SUBSCRIBED", "paid")


async def test_the_same_notification_ten_times_or_in_parallel_changes_the_balance_once(
    world: World,
) -> None:
    await customer_in_the_list(world)
    world.newsletter_list.subscribe_by_form(ANN)
    await world.webhooks_answered()
    fired = world.emu.webhook_calls[-1]
    assert fired.status == 200 and fired.body["payload"]["status"] == "SUBSCRIBED"
    async with httpx.AsyncClient() as client:
        for _ in range(10):
            assert (await client.post(world.webhook, json=fired.body)).status_code == 200
        answers = await asyncio.gather(
            *(client.post(world.webhook, json=fired.body) for _ in range(10))
        )
    assert [a.status_code for a in answers] == [200] * 10
    # two workers at once, as production runs them
    await asyncio.gather(
        deliver_once(world.deps, "worker-a", limit=1000),
        deliver_once(world.deps, "worker-b", limit=1000),
    )
    await world.work()
    assert await world.balance(ANN) == p(REWARD)
    outcomes = [o for e, s, o in await world.outcomes() if s == "SUBSCRIBED" and e == ANN]
    assert outcomes.count("paid") == 1 and len(outcomes) >= 21


async def test_five_subscribe_unsubscribe_cycles_leave_at_most_one_reward(world: World) -> None:
    await customer_in_the_list(world)
    for _ in range(5):
        world.newsletter_list.subscribe_by_form(ANN)
        await world.work()
        assert await world.balance(ANN) == p(REWARD)
        world.later()
        world.newsletter_list.unsubscribe_by_link(ANN)
        await world.work()
        assert await world.balance(ANN) <= p(REWARD)
        world.later()
    assert await world.balance(ANN) == p(0)
    kinds = [k for k, _ in await world.ledger()]
    assert kinds.count("newsletter_reward") == kinds.count("newsletter_deduction") == 5


async def test_a_customer_ellity_itself_added_to_the_list_gets_nothing(world: World) -> None:
    await world.customer(ANN)
    await world.customer("ben@anna-customers.cz")
    await world.work()
    assert set(world.newsletter_list.members) == {ANN, "ben@anna-customers.cz"}
    fired = [c.body["payload"] for c in world.emu.webhook_calls]
    assert {(f["email"], f["status"]) for f in fired} == {
        (ANN, "SUBSCRIBED"),
        ("ben@anna-customers.cz", "SUBSCRIBED"),
    }
    assert await world.ledger() == []
    assert {o for _, _, o in await world.outcomes()} == {"ignored"}


# -- sign-ups before the customer exists ---------------------------------------------------


async def test_a_form_sign_up_is_paid_once_when_the_e_shop_creates_the_customer_later(
    world: World,
) -> None:
    world.newsletter_list.subscribe_by_form(ZOE)  # not a customer yet
    await world.work()
    assert await world.outcomes() == [(ZOE, "SUBSCRIBED", "ignored")]
    assert "the sign-up is kept" in ((await world.reasons())[0] or "")

    world.clock.advance(days=29)
    await world.created_through_the_api(ZOE)
    await world.work()
    assert await world.balance(ZOE) == p(REWARD)
    assert await world.consent(ZOE) == "granted"
    assert await world.outcomes() == [(ZOE, "SUBSCRIBED", "ignored"), (ZOE, "SUBSCRIBED", "paid")]
    assert world.newsletter_list.members[ZOE].custom_fields["ellity_credit_num"] == REWARD

    fired = world.emu.webhook_calls[0].body  # Ecomail delivers the sign-up again
    async with httpx.AsyncClient() as client:
        assert (await client.post(world.webhook, json=fired)).status_code == 200
    await world.work()
    assert await world.ledger() == [("newsletter_reward", REWARD * 100)]  # paid once


async def test_a_form_sign_up_is_not_paid_when_the_customer_comes_after_30_days(
    world: World,
) -> None:
    world.newsletter_list.subscribe_by_form(ZOE)
    await world.work()
    world.clock.advance(days=31)
    await world.created_through_the_api(ZOE)
    await world.work()
    assert await world.balance(ZOE) == p(0)
    assert await world.outcomes() == [(ZOE, "SUBSCRIBED", "ignored")]  # nothing new
    assert await world.ledger() == []


# -- forged notifications ------------------------------------------------------------------


async def test_forged_notifications_change_nothing(world: World) -> None:
    await customer_in_the_list(world)  # Ann is unsubscribed in Ecomail
    before = await world.ledger()
    forged = {"payload": {"email": ANN, "status": "SUBSCRIBED", "listId": 1, "campaignId": None}}
    forged["payload"]["listId"] = world.newsletter_list.id
    other_list = json.loads(json.dumps(forged))
    other_list["payload"]["listId"] = world.newsletter_list.id + 1000
    async with httpx.AsyncClient() as client:
        wrong = world.webhook[:-5] + ("AAAAA" if not world.webhook.endswith("AAAAA") else "BBBBB")
        refused = await client.post(wrong, json=forged)
        assert refused.status_code == 404
        assert refused.json()["error"] == "not_found"
        stored_before = len(await world.outcomes())
        assert (await client.post(world.webhook, json=forged)).status_code == 200
        assert (await client.post(world.webhook, json=other_list)).status_code == 200
    await world.work()
    assert await world.ledger() == before
    assert await world.balance(ANN) == p(0)
    assert [o for _, _, o in (await world.outcomes())[stored_before:]] == [
        "unconfirmed",
        "ignored",
    ]


async def test_a_rotated_webhook_url_stops_working_at_once(world: World) -> None:
    old = world.webhook
    new = await newsletter_intake.rotate_webhook(
        world.merchant_id,
        uow_factory=world.deps.uow,
        secret_box=world.deps.secret_box,
        rng=world.deps.rng,
        clock=world.clock,
        base_url=world.app_url,
    )
    body = {"payload": {"email": ANN, "status": "SUBSCRIBED", "listId": 1, "campaignId": None}}
    async with httpx.AsyncClient() as client:
        assert (await client.post(old, json=body)).status_code == 404
        assert (await client.post(new, json=body)).status_code == 200
    assert len(await world.outcomes()) == 1


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"payload": {"status": "SUBSCRIBED", "listId": 1}}', 422, "payload.email"),
        (b'{"payload": {"email": "a@b.cz", "status": "MAYBE", "listId": 1}}', 422, "status"),
        (b'{"payload": {"email": "a@b.cz", "status": "SUBSCRIBED", "listId": 1.5}}', 422, "listId"),
        (b'{"payload": {"email": "a@b.cz", "status": "SUBSCRIBED", "listId": "1", "x": "'
         + b"y" * 9000 + b'"}}', 413, "at most 8 KiB"),
    ],
)  # fmt: skip
async def test_a_malformed_body_gets_a_reason_and_stores_nothing(
    world: World, raw: bytes, status: int, says: str
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(world.webhook, content=raw)
        assert answer.status_code == status
        assert says in answer.json()["message"]
        wrong = world.webhook[:-1] + ("A" if world.webhook[-1] != "A" else "B")
        assert (await client.post(wrong, content=raw)).status_code in (404, 413)
        assert (await client.get(world.webhook)).status_code == 405
    assert await world.outcomes() == []


async def test_random_bodies_never_cause_a_server_error_or_a_change(world: World) -> None:
    await world.customer(ANN)
    await world.work()
    before = await world.ledger()

    ids = st.one_of(st.integers(), st.text(max_size=8), st.none(), st.floats(), st.booleans())
    payloads = st.fixed_dictionaries(
        {},
        optional={
            "email": st.one_of(st.emails(), st.text(max_size=40), st.integers(), st.none()),
            "status": st.one_of(st.sampled_from(["SUBSCRIBED", "UNSUBSCRIBED"]), st.text()),
            "listId": ids,
            "campaignId": ids,
        },
    )
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
    plausible = st.fixed_dictionaries(
        {
            "email": st.emails() | st.just(ANN.upper()),
            "status": st.sampled_from(["SUBSCRIBED", "UNSUBSCRIBED"]),
            "listId": st.integers(1, 5) | st.just(str(world.newsletter_list.id)),
            "campaignId": st.none() | st.integers(1, 100),
        }
    )
    bodies = st.one_of(
        st.builds(lambda p: json.dumps({"payload": p}).encode(), plausible),
        st.builds(lambda p: json.dumps({"payload": p}).encode(), payloads),
        st.builds(lambda v: json.dumps(v).encode(), json_values),
        st.binary(max_size=300),
    )
    tokens = st.one_of(
        st.just(world.token), st.text(alphabet="abcXYZ019-_", min_size=1, max_size=50)
    )
    statuses: list[int] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(token=tokens, raw=bodies)
    def fuzz(token: str, raw: bytes) -> None:
        answer = httpx.post(f"{world.app_url}/webhooks/ecomail/{token}", content=raw, timeout=10)
        statuses.append(answer.status_code)
        assert answer.status_code < 500, answer.text
        if token != world.token:
            assert answer.status_code == 404

    await asyncio.to_thread(fuzz)
    assert {200, 404} <= set(statuses)
    await world.work()
    assert await world.ledger() == before
    assert {o for _, _, o in await world.outcomes()} <= {"ignored", "unconfirmed"}


# -- the command ---------------------------------------------------------------------------


def test_the_command_prints_the_webhook_url(tmp_path: Path) -> None:
    with Emulator() as emu, EmulatorServer(emu, port=0) as server:
        list_id = emu.add_account(KEY).add_list("Newsletter")
        env = {
            **clean_env(),
            "ELLITY_ECOMAIL_API_URL": server.url,
            "ELLITY_BASE_URL": "https://loyalty.anna.example.cz",
        }

        def ellity(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*ELLITY, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip

        made = ellity(
            "create-merchant",
            *("--slug", "anna", "--name", "Anna", "--admin-email", "admin@anna.example.cz"),
            *("--admin-password", "a long password"),
        )
        assert made.returncode == 0, made.stderr
        inactive = ellity("ecomail", "webhook-url", "--merchant", "anna")
        assert inactive.returncode == 2
        assert "Activate the Ecomail integration first" in inactive.stderr
        activated = ellity(
            "ecomail", "activate", "--merchant", "anna", "--api-key", KEY, "--list-id", str(list_id)
        )
        assert activated.returncode == 0, activated.stderr
        printed = ellity("ecomail", "webhook-url", "--merchant", "anna")
        assert printed.returncode == 0, printed.stderr
        url = printed.stdout.strip()
        assert url.startswith("https://loyalty.anna.example.cz/webhooks/ecomail/")
        assert len(url.rsplit("/", 1)[1]) == 43
        assert url in activated.stdout  # made at activation, shown again since
        assert ellity("ecomail", "webhook-url", "--merchant", "anna").stdout.strip() == url
        unknown = ellity("ecomail", "webhook-url", "--merchant", "nobody")
        assert unknown.returncode == 2 and "nobody" in unknown.stderr


# -- Ellity's own add is never paid, however Ecomail answers it ---------------------------------

BEN = "ben@anna-customers.cz"
CID = "cid@anna-customers.cz"
DAN = "dan@blocked.example"
READ_TIMEOUT = 5.0  # the world's Ecomail client gives up on an answer after this long


async def consenting(w: World, *emails: str) -> None:
    """Customers created by the e-shop with marketing consent granted."""
    for email in emails:
        await upsert_customer(
            w.merchant_id,
            CustomerInput(email=email, registered=True, marketing_consent=MarketingConsent.GRANTED),
            uow=w.deps.uow(),
            clock=w.clock,
            rng=w.deps.rng,
        )


async def subscriptions(w: World, email: str) -> list[tuple[str | None, str]]:
    """The outcome and reason of every ``SUBSCRIBED`` notification about ``email``."""
    async with w.database.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT outcome, reason FROM newsletter_notifications"
                " WHERE email = :e AND status = 'SUBSCRIBED' ORDER BY id"
            ),
            {"e": email},
        )
        return [(r.outcome, r.reason or "") for r in rows]


async def rewards(w: World) -> int:
    return sum(1 for kind, _ in await w.ledger() if kind == "newsletter_reward")


async def test_ellitys_add_is_not_paid_and_a_sign_up_ten_seconds_after_leaving_is_paid_once(
    world: World,
) -> None:
    await consenting(world, ANN)
    await world.work()
    assert world.newsletter_list.members[ANN].status == 1  # added by Ellity, subscribed
    [(outcome, reason)] = await subscriptions(world, ANN)
    assert outcome == "ignored" and "Ellity" in reason
    assert await world.balance(ANN) == p(0)

    world.newsletter_list.unsubscribe_by_link(ANN)
    world.clock.advance(seconds=10)
    world.newsletter_list.subscribe_by_form(ANN)
    await world.work()
    assert await world.balance(ANN) == p(REWARD)
    assert [o for o, _ in await subscriptions(world, ANN)] == ["ignored", "paid"]
    assert await rewards(world) == 1


@pytest.mark.parametrize("lost", ["500 after processing", "answer after the timeout"])
async def test_the_echo_of_an_add_whose_answer_was_lost_is_not_paid(
    world: World, lost: str
) -> None:
    faults = world.emu.faults
    if lost.startswith("500"):
        faults.lose_answer_next(1, status=500)
    else:
        faults.answer_late_next(1, seconds=READ_TIMEOUT + 1)
    await consenting(world, ANN)
    await world.work()  # the add is processed, its answer lost; it is tried again
    assert world.newsletter_list.members[ANN].status == 1
    adds = [r.status for r in world.emu.requests if r.path.endswith("/subscribe-bulk")]
    assert 200 in adds, "the add whose answer was lost is tried again"
    if lost.startswith("500"):
        assert adds[0] == 500
    assert [o for o, _ in await subscriptions(world, ANN)] == ["ignored"]
    assert await world.balance(ANN) == p(0)
    assert await rewards(world) == 0

    # the person's own sign-up after leaving is still paid: the echo did not use it up
    world.newsletter_list.unsubscribe_by_link(ANN)
    world.newsletter_list.subscribe_by_form(ANN)
    await world.work()
    assert await world.balance(ANN) == p(REWARD)


async def test_the_echoes_of_adds_split_by_a_refusal_and_cut_by_a_429_are_not_paid(
    world: World,
) -> None:
    """One bulk add of four contacts is refused for one of them; the sync splits it in
    halves; the first half is added, and Ecomail's rate limit answers the second 429. The
    contacts wait and are added later: none of the echoes is paid."""
    world.newsletter_list.refused[DAN] = "This address is on the blocklist."
    world.emu.faults.rate_limit_after(2, retry_after=1)
    await consenting(world, ANN, BEN, CID, DAN)
    await world.work()
    statuses = [r.status for r in world.emu.requests if r.path.endswith("/subscribe-bulk")]
    assert statuses[:3] == [422, 200, 429]
    await asyncio.sleep(1.2)  # the client holds its calls back for the Retry-After
    world.clock.advance(minutes=2)  # and the contacts wait their retry
    await world.work()
    members = world.newsletter_list.members
    assert {e for e in (ANN, BEN, CID, DAN) if e in members} == {ANN, BEN, CID}
    for email in (ANN, BEN, CID):
        assert [o for o, _ in await subscriptions(world, email)] == ["ignored"], email
        assert await world.balance(email) == p(0)
    assert await rewards(world) == 0
