"""How a worker keeps and gives back its claims (``work_loop``), on the in-memory fakes
through the outbox's delivery: a live worker renews its short lease however long it works;
a stopping or cancelled run finishes (or leaves) the item in hand and gives the rest back at
once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ellity.domain.model.merchant import Merchant, SmtpSettings
from ellity.domain.model.outbox import OutboxItem
from ellity.domain.model.system_email import OutgoingEmail
from ellity.domain.services import delivery
from ellity.domain.services.merchants import change_settings
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakeMailer, FakeSecretBox, InMemoryStore
from tests.unit.conftest import NewCustomer

SMTP = SmtpSettings(host="smtp.anna.example.cz", port=587, username="anna", sender="body@anna.cz")
LEASE = timedelta(seconds=0.3)  # renewed every 0.1 s (real time)


class GatedMailer(FakeMailer):
    """Holds each send until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()

    async def send(
        self, email: OutgoingEmail, *, server: SmtpSettings, password: str | None
    ) -> None:
        self.entered.set()
        await self.go_on.wait()
        await super().send(email, server=server, password=password)


@pytest.fixture
async def anna(store: InMemoryStore, merchant: Merchant, new_customer: NewCustomer) -> Merchant:
    """Anna's shop with system emails on, and three customers each owed a PIN email."""
    merchant = await change_settings(
        merchant.slug, {"send_system_emails": "true"}, clock=FakeClock(), uow=store.unit_of_work()
    )
    async with store.unit_of_work() as uow:
        await uow.merchants.update_smtp(merchant.id, SMTP)
        await uow.commit()
    for n in range(3):
        await new_customer(merchant, email=f"c{n}@example.cz")
    return merchant


def run(
    store: InMemoryStore, mailer: FakeMailer, clock: FakeClock, **options: object
) -> asyncio.Task[int]:
    return asyncio.create_task(
        delivery.deliver_pending(
            uow_factory=store.unit_of_work,
            mailer=mailer,
            secret_box=FakeSecretBox(),
            clock=clock,
            worker_token="worker-1",
            limit=100,
            lease=LEASE,
            **options,  # type: ignore[arg-type]
        )
    )


async def claim(uow_factory: UnitOfWorkFactory, clock: FakeClock) -> list[OutboxItem]:
    """What another worker could take over now."""
    async with uow_factory() as uow:
        taken = await uow.outbox.claim(token="other", now=clock.now(), lease=LEASE, limit=10)
        await uow.commit()
    return taken


async def test_a_working_worker_renews_its_claim_so_nobody_takes_it_over(
    anna: Merchant, store: InMemoryStore, clock: FakeClock
) -> None:
    mailer = GatedMailer()
    task = run(store, mailer, clock)
    await mailer.entered.wait()
    clock.advance(seconds=60)  # the first lease ran out long ago ...
    await asyncio.sleep(0.25)  # ... but the worker renewed it meanwhile

    assert await claim(store.unit_of_work, clock) == []

    mailer.go_on.set()
    assert await task == 3
    assert len(mailer.sent) == 3


async def test_a_stopping_worker_finishes_the_item_in_hand_and_gives_the_rest_back_at_once(
    anna: Merchant, store: InMemoryStore, clock: FakeClock
) -> None:
    mailer = GatedMailer()
    stopping = asyncio.Event()
    task = run(store, mailer, clock, stopping=stopping)
    await mailer.entered.wait()
    stopping.set()
    mailer.go_on.set()

    assert await task == 1
    assert len(mailer.sent) == 1
    # the two left are due now for another worker, their claim not counted as an attempt
    taken = await claim(store.unit_of_work, clock)
    assert [(item.attempts, item.interrupted) for item in taken] == [(1, False), (1, False)]


async def test_a_cancelled_run_gives_everything_back_and_the_call_in_flight_is_known(
    anna: Merchant, store: InMemoryStore, clock: FakeClock
) -> None:
    mailer = GatedMailer()
    task = run(store, mailer, clock)
    await mailer.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    taken = await claim(store.unit_of_work, clock)
    assert [(item.attempts, item.interrupted) for item in taken] == [
        (2, True),  # its call had begun: it may have been sent
        (1, False),
        (1, False),
    ]


async def test_a_stopping_worker_claims_nothing(
    anna: Merchant, store: InMemoryStore, clock: FakeClock
) -> None:
    stopping = asyncio.Event()
    stopping.set()
    mailer = FakeMailer()
    assert await run(store, mailer, clock, stopping=stopping) == 0
    assert mailer.attempts == 0
    assert len(await claim(store.unit_of_work, clock)) == 3
