"""Delivering the outbox on the in-memory fakes: what is sent, retries, giving up, claims, and
what the merchant sees of it."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from ellity.domain.model.ids import CustomerId
from ellity.domain.model.merchant import Merchant, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import RetryPolicy
from ellity.domain.model.system_email import EmailTemplate
from ellity.domain.services import delivery, delivery_status
from ellity.domain.services.customers import register_customer
from ellity.domain.services.merchants import change_settings
from ellity.domain.services.points import earn_points
from ellity.ports.mailer import MailerRejected, MailerUnavailable
from ellity.ports.operations import INTERRUPTED
from ellity.ports.request_context import current_request_id, request_id_bound
from ellity.ports.storage import UnitOfWorkFactory
from ellity.worker import deliver_outbox
from tests.fakes import (
    FakeClock,
    FakeJobQueue,
    FakeMailer,
    FakeMarketingPlatforms,
    FakeSecretBox,
    FakeWorkCounters,
    InMemoryStore,
    OutboxRecord,
)
from tests.unit.conftest import NewCustomer

P = Points.parse
SMTP = SmtpSettings(host="smtp.anna.example.cz", port=587, username="anna", sender="body@anna.cz")

Deliver = Callable[..., Awaitable[int]]


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def deliver(store: InMemoryStore, mailer: FakeMailer, clock: FakeClock) -> Deliver:
    """``await deliver(**options)``: one run of ``deliver_pending`` on the fakes."""

    async def run(**options: object) -> int:
        arguments: dict[str, object] = {"worker_token": "worker-1", "limit": 100, **options}
        return await delivery.deliver_pending(
            uow_factory=store.unit_of_work,
            mailer=mailer,
            secret_box=FakeSecretBox(),
            clock=clock,
            **arguments,  # type: ignore[arg-type]
        )

    return run


async def set_up_mail(store: InMemoryStore, merchant: Merchant) -> Merchant:
    merchant = await change_settings(
        merchant.slug, {"send_system_emails": "true"}, clock=FakeClock(), uow=store.unit_of_work()
    )
    async with store.unit_of_work() as uow:
        await uow.merchants.update_smtp(merchant.id, SMTP)
        await uow.merchants.set_smtp_password(merchant.id, FakeSecretBox().encrypt("s3cret"))
        await uow.commit()
    return merchant


@dataclass
class MailWorld:
    store: InMemoryStore
    clock: FakeClock
    mailer: FakeMailer
    new_customer: NewCustomer
    deliver: Deliver


@pytest.fixture
def w(
    store: InMemoryStore,
    clock: FakeClock,
    mailer: FakeMailer,
    new_customer: NewCustomer,
    deliver: Deliver,
) -> MailWorld:
    """The fakes a delivery test works with."""
    return MailWorld(store, clock, mailer, new_customer, deliver)


@pytest.fixture
async def anna(store: InMemoryStore, merchant: Merchant) -> Merchant:
    """Anna's shop (cs) with system emails on and SMTP set up."""
    return await set_up_mail(store, merchant)


async def earn(
    store: InMemoryStore, clock: FakeClock, merchant: Merchant, customer_id: CustomerId
) -> None:
    await earn_points(
        merchant.id,
        customer_id,
        P("1250.50"),
        order_ref=f"o-{clock.now().timestamp()}-{customer_id}",
        uow=store.unit_of_work(),
        clock=clock,
    )


def the_record(store: InMemoryStore) -> OutboxRecord:
    [record] = store.state.outbox.values()
    return record


# -- what is sent ----------------------------------------------------------------------------


async def test_a_points_change_is_mailed_in_the_merchants_locale_through_its_smtp_server(
    anna: Merchant, w: MailWorld
) -> None:
    ann = await w.new_customer(anna, email="ann@example.cz", first_name="Anna", registered=True)
    await earn(w.store, w.clock, anna, ann.id)
    assert await w.deliver() == 1
    [sent] = w.mailer.sent
    assert (sent.email.to, sent.email.template, sent.email.locale) == (
        "ann@example.cz",
        EmailTemplate.POINTS_CHANGED,
        "cs",
    )
    assert (sent.server, sent.password, sent.email.sender_name) == (
        SMTP,
        "s3cret",
        "Kavárna U Anny",
    )
    assert sent.email.values == {
        "programme": "Kavárna U Anny",
        "shop_url": "https://anna.example.cz",
        "first_name": "Anna",
        "kind": "earn",
        "direction": "up",
        "change": "+1 250,50",
        "change_abs": "1 250,50",
        "balance": "1 250,50",
        "next_expiry_date": "10. 3. 2025",
        "next_expiry_points": "1 250,50",
    }
    record = the_record(w.store)
    assert (record.status, record.delivered_at, record.attempts) == ("delivered", w.clock.now(), 1)
    assert sent.email.message_id == f"ellity.{record.id}.{int(record.created_at.timestamp())}"


async def test_an_english_programme_gets_english_numbers_and_dates(
    other_merchant: Merchant, w: MailWorld
) -> None:
    bob = await set_up_mail(w.store, other_merchant)
    reader = await w.new_customer(bob, email="reader@example.com", registered=True)
    await earn(w.store, w.clock, bob, reader.id)
    await w.deliver()
    [email] = w.mailer.to("reader@example.com")
    assert (email.locale, email.values["balance"], email.values["next_expiry_date"]) == (
        "en",
        "1,250.50",
        "10 March 2025",
    )


async def test_the_pin_email_carries_the_pin_the_customer_holds_when_it_is_sent(
    anna: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    mailer: FakeMailer,
    deliver: Deliver,
) -> None:
    ann = await new_customer(anna, email="ann@example.cz")
    assert await deliver() == 1
    [email] = mailer.to("ann@example.cz")
    assert email.template == EmailTemplate.PIN_ISSUED
    assert (email.values["pin"], email.values["reason"]) == (ann.pin, "created")
    assert ann.pin is not None and ann.pin not in repr(email)


async def test_a_pin_email_for_a_customer_who_registered_meanwhile_is_skipped(
    anna: Merchant, w: MailWorld
) -> None:
    ann = await w.new_customer(anna, email="ann@example.cz")
    await register_customer(anna.id, ann.id, uow=w.store.unit_of_work(), clock=w.clock)
    assert await w.deliver() == 0
    assert w.mailer.attempts == 0
    record = the_record(w.store)
    assert (record.status, record.last_error) == (
        "skipped",
        "The customer is registered now and has no PIN.",
    )


async def test_switching_emails_off_before_delivery_sends_nothing(
    anna: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    mailer: FakeMailer,
    deliver: Deliver,
) -> None:
    await new_customer(anna, email="ann@example.cz")
    await change_settings(
        anna.slug, {"send_system_emails": "false"}, clock=FakeClock(), uow=store.unit_of_work()
    )
    assert await deliver() == 0
    assert mailer.attempts == 0
    assert the_record(store).status == "skipped"


async def test_no_transaction_is_open_while_an_email_is_sent(
    anna: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    mailer: FakeMailer,
    deliver: Deliver,
) -> None:
    locked_while_sending: list[bool] = []
    mailer.while_sending = lambda: locked_while_sending.append(store.write_lock.locked())
    for n in range(3):
        await new_customer(anna, email=f"c{n}@example.cz")
    assert await deliver(batch_size=2) == 3
    assert locked_while_sending == [False, False, False]


# -- failures --------------------------------------------------------------------------------


async def test_an_unavailable_server_is_retried_with_backoff_and_the_error_is_kept(
    anna: Merchant, w: MailWorld
) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    w.mailer.fail_next(MailerUnavailable("The SMTP server smtp.anna.example.cz:587 is down."))
    assert await w.deliver() == 0
    record = the_record(w.store)
    wait = delivery.RETRY_POLICY.delay(1, item_id=record.id)
    assert (record.status, record.attempts, record.available_at, record.last_error) == (
        "pending",
        1,
        w.clock.now() + wait,
        "The SMTP server smtp.anna.example.cz:587 is down.",
    )
    assert record.claim_token is None
    assert await w.deliver() == 0  # not due yet
    w.clock.advance(wait)
    assert await w.deliver() == 1
    assert (the_record(w.store).status, the_record(w.store).attempts) == ("delivered", 2)
    assert len(w.mailer.sent) == 1


async def test_a_rejected_email_fails_at_once_and_the_merchant_sees_why(
    anna: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    mailer: FakeMailer,
    deliver: Deliver,
) -> None:
    ann = await new_customer(anna, email="ann@example.cz")
    mailer.fail_next(MailerRejected("The SMTP server refused the recipient: 550 no such user"))
    assert await deliver() == 0
    [failed] = await delivery_status.failed_deliveries(anna.id, uow=store.unit_of_work())
    assert (failed.topic, failed.customer_id, failed.attempts, failed.last_error) == (
        "email.pin_issued",
        ann.id,
        1,
        "The SMTP server refused the recipient: 550 no such user",
    )
    health = await delivery_status.delivery_health(anna.id, uow=store.unit_of_work())
    assert (health.pending, health.failed, health.last_delivered_at) == (0, 1, None)


async def test_after_the_last_attempt_the_item_is_given_up_with_its_last_error(
    anna: Merchant, w: MailWorld
) -> None:
    policy = RetryPolicy(max_attempts=3)
    await w.new_customer(anna, email="ann@example.cz")
    for attempt in (1, 2, 3):
        w.mailer.fail_next(MailerUnavailable(f"down, attempt {attempt}"))
        await w.deliver(policy=policy)
        w.clock.advance(hours=5)
    record = the_record(w.store)
    assert (record.status, record.attempts, record.last_error) == ("failed", 3, "down, attempt 3")
    assert await w.deliver(policy=policy) == 0
    assert w.mailer.attempts == 3


async def test_retrying_failed_deliveries_sends_them_again_with_fresh_attempts(
    anna: Merchant, w: MailWorld
) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    w.mailer.fail_next(MailerRejected("535 authentication failed"))
    await w.deliver()
    w.clock.advance(minutes=5)
    assert (
        await delivery_status.retry_failed(anna.id, uow=w.store.unit_of_work(), clock=w.clock) == 1
    )
    assert w.store.outbox_commits == 2  # the creation, then the retry: the worker is nudged
    assert (the_record(w.store).status, the_record(w.store).attempts) == ("pending", 0)
    assert await w.deliver() == 1
    health = await delivery_status.delivery_health(anna.id, uow=w.store.unit_of_work())
    assert (health.pending, health.failed, health.last_delivered_at) == (0, 0, w.clock.now())


async def test_retrying_never_touches_another_merchants_items(
    anna: Merchant, other_merchant: Merchant, w: MailWorld
) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    w.mailer.fail_next(MailerRejected("550"))
    await delivery.deliver_pending(
        uow_factory=w.store.unit_of_work,
        mailer=w.mailer,
        secret_box=FakeSecretBox(),
        clock=w.clock,
        worker_token="w",
        limit=10,
    )
    [record] = w.store.state.outbox.values()
    uow = w.store.unit_of_work
    assert (
        await delivery_status.retry_failed(other_merchant.id, record.id, uow=uow(), clock=w.clock)
        == 0
    )
    assert await delivery_status.failed_deliveries(other_merchant.id, uow=uow()) == []
    assert record.status == "failed"


async def test_a_server_that_does_not_answer_times_out_and_is_retried(
    anna: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    mailer: FakeMailer,
    deliver: Deliver,
) -> None:
    await new_customer(anna, email="ann@example.cz")
    mailer.stall = True
    assert await deliver(delivery_timeout=0.05) == 0
    record = the_record(store)
    assert (record.status, record.last_error) == (
        "pending",
        "Delivery took longer than 0.05 seconds.",
    )


async def test_missing_smtp_settings_and_an_unreadable_password_are_retried_with_advice(
    merchant: Merchant, w: MailWorld
) -> None:
    shop = await change_settings(
        merchant.slug, {"send_system_emails": "true"}, clock=FakeClock(), uow=w.store.unit_of_work()
    )
    await w.new_customer(shop, email="ann@example.cz")
    await w.deliver()
    assert the_record(w.store).last_error == (
        "SMTP is not set up: enter the SMTP server and the sender address."
    )
    async with w.store.unit_of_work() as uow:
        await uow.merchants.update_smtp(shop.id, SMTP)
        await uow.merchants.set_smtp_password(shop.id, "sealed-by-another-key")
        await uow.commit()
    w.clock.advance(hours=1)
    await w.deliver()
    assert "cannot be decrypted" in (the_record(w.store).last_error or "")
    assert (the_record(w.store).status, w.mailer.attempts) == ("pending", 0)


async def test_a_topic_this_worker_does_not_know_waits_and_a_malformed_one_is_given_up(
    anna: Merchant, store: InMemoryStore, clock: FakeClock, deliver: Deliver
) -> None:
    async with store.unit_of_work() as uow:
        await uow.outbox.add(anna.id, "ecomail.contact_changed", {"customer": 1}, at=clock.now())
        await uow.outbox.add(anna.id, "email.points_changed", {"kind": "earn"}, at=clock.now())
        await uow.commit()
    await deliver()
    future, malformed = sorted(store.state.outbox.values(), key=lambda r: r.id)
    assert (future.status, future.last_error) == (
        "pending",
        "This worker cannot deliver 'ecomail.contact_changed' items.",
    )
    assert malformed.status == "failed"
    assert (malformed.last_error or "").startswith("not a points change")


# -- claims ----------------------------------------------------------------------------------


async def test_an_item_claimed_by_another_worker_waits_until_that_claim_runs_out(
    anna: Merchant, w: MailWorld
) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    async with w.store.unit_of_work() as uow:  # a worker that then dies before sending
        [item] = await uow.outbox.claim(
            token="dead-worker", now=w.clock.now(), lease=timedelta(seconds=30), limit=10
        )
        await uow.commit()
    assert await w.deliver() == 0
    w.clock.advance(seconds=31)
    assert await w.deliver() == 1
    async with w.store.unit_of_work() as uow:
        assert not await uow.outbox.mark_delivered(item.id, token="dead-worker", at=w.clock.now())
    # the dead claim never began the call: taking it over is the same, first, attempt
    assert the_record(w.store).attempts == 1
    assert the_record(w.store).sending_since is None


async def claim_and_begin_the_call(w: MailWorld, token: str) -> None:
    """A worker claims the item and records that its call begins, then dies."""
    async with w.store.unit_of_work() as uow:
        [item] = await uow.outbox.claim(token=token, now=w.clock.now(), lease=timedelta(0), limit=1)
        assert await uow.outbox.mark_sending(item.id, token=token, at=w.clock.now())
        await uow.commit()


async def test_an_item_whose_worker_died_during_the_call_is_sent_again_and_counted(
    anna: Merchant, w: MailWorld, caplog: pytest.LogCaptureFixture
) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    await claim_and_begin_the_call(w, "dying")
    counters = FakeWorkCounters()

    assert await w.deliver(counters=counters) == 1

    assert len(w.mailer.sent) == 1
    assert (the_record(w.store).attempts, the_record(w.store).sending_since) == (2, None)
    assert counters.count(INTERRUPTED, kind="email.pin_issued") == 1
    assert "may have been delivered already" in caplog.text


async def test_an_item_whose_deliveries_keep_dying_during_the_call_is_given_up(
    anna: Merchant, w: MailWorld
) -> None:
    policy = RetryPolicy(max_attempts=2)
    await w.new_customer(anna, email="ann@example.cz")
    for n in range(policy.max_attempts):
        await claim_and_begin_the_call(w, f"dying-{n}")
    assert await w.deliver(policy=policy) == 0
    assert w.mailer.attempts == 0
    assert (the_record(w.store).status, the_record(w.store).last_error) == (
        "failed",
        "Delivery was interrupted 2 times.",
    )


async def test_the_call_is_recorded_as_begun_before_it_goes_out_and_cleared_with_its_outcome(
    anna: Merchant, w: MailWorld
) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    seen: list[object] = []
    w.mailer.while_sending = lambda: seen.append(the_record(w.store).sending_since)

    assert await w.deliver() == 1

    assert seen == [w.clock.now()]  # committed before the SMTP server was reached
    assert the_record(w.store).sending_since is None


async def test_a_failed_call_clears_the_mark_too_and_counts_one_attempt(
    anna: Merchant, w: MailWorld
) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    w.mailer.fail_next(MailerUnavailable("The SMTP server did not answer."))
    assert await w.deliver() == 0
    assert (the_record(w.store).attempts, the_record(w.store).sending_since) == (1, None)


async def test_a_run_delivers_at_most_its_limit_a_batch_at_a_time(
    anna: Merchant,
    new_customer: NewCustomer,
    store: InMemoryStore,
    mailer: FakeMailer,
    deliver: Deliver,
) -> None:
    for n in range(12):
        await new_customer(anna, email=f"c{n}@example.cz")
    assert await deliver(limit=7, batch_size=3) == 7
    assert await deliver(limit=7, batch_size=3) == 5
    assert sorted(sent.email.to for sent in mailer.sent) == sorted(
        f"c{n}@example.cz" for n in range(12)
    )


# -- scheduling and the job ------------------------------------------------------------------


async def test_the_next_run_is_asked_for_when_the_earliest_retry_is_due(
    anna: Merchant, w: MailWorld
) -> None:
    queue = FakeJobQueue()

    async def schedule() -> object:
        return await delivery.schedule_next_delivery(
            uow_factory=w.store.unit_of_work, queue=queue, clock=w.clock
        )

    assert await schedule() is None
    await w.new_customer(anna, email="ann@example.cz")
    assert await schedule() == w.clock.now() + timedelta(seconds=1)  # due now: in a second
    w.mailer.fail_next(MailerUnavailable("down"))
    await w.deliver()
    retry_at = the_record(w.store).available_at
    assert await schedule() == retry_at
    assert queue.nudges == [w.clock.now() + timedelta(seconds=1), retry_at]


async def test_the_deliver_outbox_job_delivers_and_asks_for_the_next_run(
    anna: Merchant, w: MailWorld
) -> None:
    queue = FakeJobQueue()
    deps = JobDeps(
        settings=JobSettings(delivery_timeout=5),
        uow=w.store.unit_of_work,
        clock=w.clock,
        secret_box=FakeSecretBox(),
        mailer=w.mailer,
        queue=queue,
        marketing=FakeMarketingPlatforms(),
    )
    await w.new_customer(anna, email="ann@example.cz")
    await w.new_customer(anna, email="bob@example.cz")
    w.mailer.fail_next(MailerUnavailable("down"))
    assert await deliver_outbox({"deps": deps, "worker_token": "job-test"}) == 1
    retried = next(r for r in w.store.state.outbox.values() if r.status == "pending")
    assert queue.nudges == [retried.available_at]
    assert json.loads(retried.payload) == {"reason": "created"}


async def test_forgetting_settled_items_keeps_the_failed_ones(anna: Merchant, w: MailWorld) -> None:
    await w.new_customer(anna, email="ann@example.cz")
    await w.new_customer(anna, email="bob@example.cz")
    w.mailer.fail_next(MailerRejected("550"))
    await w.deliver()
    w.clock.advance(days=31)
    keep = timedelta(days=30)
    assert (
        await delivery.forget_settled(uow_factory=w.store.unit_of_work, clock=w.clock, keep=keep)
        == 1
    )
    assert [r.status for r in w.store.state.outbox.values()] == ["failed"]


@dataclass(frozen=True)
class JobSettings:
    delivery_timeout: float


@dataclass(frozen=True)
class JobDeps:
    """The part of ``Deps`` the job reads: a fake ``ctx["deps"]``."""

    settings: JobSettings
    uow: UnitOfWorkFactory
    clock: FakeClock
    secret_box: FakeSecretBox
    mailer: FakeMailer
    queue: FakeJobQueue
    marketing: FakeMarketingPlatforms
    counters: FakeWorkCounters = field(default_factory=FakeWorkCounters)


# -- the request an item came from -----------------------------------------------------------


class LinesWithRequestIds(logging.Handler):
    """Each line of the delivery with the request id bound when it was written."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), current_request_id()))


@pytest.fixture
def delivery_lines() -> Iterator[LinesWithRequestIds]:
    handler = LinesWithRequestIds()
    logger = logging.getLogger("ellity.domain.services.delivery")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_an_item_is_delivered_under_the_id_of_the_request_that_recorded_it(
    anna: Merchant, w: MailWorld, delivery_lines: LinesWithRequestIds
) -> None:
    ann = await w.new_customer(anna, email="ann@example.cz", registered=True)
    bob = await w.new_customer(anna, email="bob@example.cz", registered=True)
    with request_id_bound("req-ann"):
        await earn(w.store, w.clock, anna, ann.id)
    await earn(w.store, w.clock, anna, bob.id)  # no request: a command, the nightly
    while_sending: list[str | None] = []
    w.mailer.while_sending = lambda: while_sending.append(current_request_id())
    w.mailer.fail_next(MailerUnavailable("The SMTP server is down."))
    assert await w.deliver() == 1
    w.clock.advance(hours=1)
    assert await w.deliver() == 1
    assert while_sending == ["req-ann", None, "req-ann"]
    ann_item, bob_item = (r.id for r in w.store.state.outbox.values())
    assert [(line.split(" (")[0], request_id) for line, request_id in delivery_lines.lines] == [
        (f"outbox item {ann_item}", "req-ann"),  # attempt 1 failed, retry at ...
        (f"outbox item {bob_item}", None),
        (f"outbox item {ann_item}", "req-ann"),  # delivered
    ]
    assert "failed" in delivery_lines.lines[0][0]
    assert current_request_id() is None
