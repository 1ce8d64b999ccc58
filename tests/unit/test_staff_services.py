"""Logging in, its throttling, and the first-run setup, on the in-memory fakes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import StaffId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.staff import (
    MAX_FAILED_LOGINS,
    AlreadySetUp,
    InvalidCredentials,
    LoginThrottled,
    StaffIdentity,
    account_delay,
    email_throttle_key,
    login_email,
    slug_from_name,
)
from ellity.domain.model.text import has_control_characters
from ellity.domain.services import staff
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, FakePasswordHasher, InMemoryLoginAttempts

PASSWORD = "correct horse battery"


@pytest.fixture
def attempts() -> InMemoryLoginAttempts:
    return InMemoryLoginAttempts()


class Pauses:
    """Records how long each log-in was made to wait, instead of waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def log_in(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    *,
    email: str = "admin@anna.example.cz",
    password: str = PASSWORD,
    client: str = "10.0.0.1",
    pauses: Pauses | None = None,
) -> StaffIdentity:
    return await staff.log_in(
        email,
        password,
        client=client,
        uow_factory=uow_factory,
        attempts=attempts,
        clock=clock,
        hasher=FakePasswordHasher(),
        pause=pauses or Pauses(),
    )


async def test_the_right_password_logs_in_as_the_merchants_staff(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    me = await log_in(uow_factory, attempts, clock, email=" ADMIN@anna.example.cz ")
    assert (me.merchant_id, me.email, me.merchant_slug) == (
        merchant.id,
        "admin@anna.example.cz",
        "anna",
    )
    assert await staff.current_staff(me.staff_id, uow=uow_factory()) == me
    assert await staff.current_staff(StaffId(me.staff_id + 1), uow=uow_factory()) is None


@pytest.mark.parametrize(
    ("email", "password"),
    [("admin@anna.example.cz", "wrong password"), ("nobody@anna.example.cz", PASSWORD)],
)
async def test_a_wrong_password_and_an_unknown_email_are_refused_alike(
    *,
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
    email: str,
    password: str,
) -> None:
    with pytest.raises(InvalidCredentials) as refused:
        await log_in(uow_factory, attempts, clock, email=email, password=password)
    assert refused.value.message == "The email or the password is wrong."


async def test_the_eleventh_failed_attempt_within_the_window_is_throttled_even_if_right(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(InvalidCredentials):
            await log_in(uow_factory, attempts, clock, password="guess")
    with pytest.raises(LoginThrottled) as throttled:
        await log_in(uow_factory, attempts, clock)
    assert throttled.value.retry_after_seconds == 15 * 60
    assert "15 minutes" in throttled.value.message

    clock.advance(minutes=15)
    assert (await log_in(uow_factory, attempts, clock)).merchant_id == merchant.id


async def test_failures_from_one_client_are_throttled_across_emails(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    for n in range(MAX_FAILED_LOGINS):
        with pytest.raises(InvalidCredentials):
            await log_in(uow_factory, attempts, clock, email=f"user{n}@anna.example.cz")
    with pytest.raises(LoginThrottled):
        await log_in(uow_factory, attempts, clock)
    # another client may still log in as the admin
    assert await log_in(uow_factory, attempts, clock, client="10.0.0.2")


@pytest.mark.parametrize("attackers", [1, 3])
async def test_wrong_passwords_for_the_owners_email_from_other_addresses_never_lock_the_owner_out(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
    attackers: int,
) -> None:
    for n in range(attackers):
        attacker = f"203.0.113.{n + 1}"
        for _ in range(MAX_FAILED_LOGINS):
            with pytest.raises(InvalidCredentials):
                await log_in(uow_factory, attempts, clock, password="guess", client=attacker)
        with pytest.raises(LoginThrottled):  # that address, for this email and for any other
            await log_in(uow_factory, attempts, clock, client=attacker)
        with pytest.raises(LoginThrottled):
            await log_in(uow_factory, attempts, clock, email="x@anna.example.cz", client=attacker)
    me = await log_in(uow_factory, attempts, clock, client="198.51.100.20")
    assert me.merchant_id == merchant.id


async def test_the_owner_who_mistyped_a_few_times_still_logs_in_during_an_attack_elsewhere(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    for n in range(4 * MAX_FAILED_LOGINS):
        with pytest.raises((InvalidCredentials, LoginThrottled)):
            await log_in(
                uow_factory, attempts, clock, password="guess", client=f"203.0.113.{n % 4}"
            )
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(InvalidCredentials):
            await log_in(uow_factory, attempts, clock, password="typo", client="198.51.100.20")
    assert await log_in(uow_factory, attempts, clock, client="198.51.100.20")


async def test_many_failures_for_one_email_from_many_addresses_only_slow_it_down_a_little(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    pauses = Pauses()
    for n in range(30):
        with pytest.raises(InvalidCredentials):  # never throttled: each address tried once
            await log_in(
                uow_factory,
                attempts,
                clock,
                password="guess",
                client=f"203.0.113.{n}",
                pauses=pauses,
            )
    assert pauses.seconds == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75] + [2.0] * 13
    me = await log_in(uow_factory, attempts, clock, client="198.51.100.20", pauses=pauses)
    assert me.merchant_id == merchant.id
    assert pauses.seconds[-1] == 2.0

    clock.advance(minutes=15)  # a new window: no waiting any more
    await log_in(uow_factory, attempts, clock, client="198.51.100.20", pauses=pauses)
    assert len(pauses.seconds) == 21


@pytest.mark.parametrize(
    ("attempts_for_the_email", "seconds"),
    [(1, 0), (MAX_FAILED_LOGINS, 0), (11, 0.25), (12, 0.5), (18, 2), (19, 2), (10_000, 2)],
)
def test_an_email_tried_from_everywhere_waits_longer_per_attempt_up_to_two_seconds(
    attempts_for_the_email: int, seconds: float
) -> None:
    assert account_delay(attempts_for_the_email) == timedelta(seconds=seconds)


async def test_a_burst_of_concurrent_guesses_gets_no_more_than_the_limit_checked(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    results = await asyncio.gather(
        *(log_in(uow_factory, attempts, clock, password=f"guess {n}") for n in range(25)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, InvalidCredentials) for r in results) == MAX_FAILED_LOGINS
    assert sum(isinstance(r, LoginThrottled) for r in results) == 25 - MAX_FAILED_LOGINS


async def test_successful_log_ins_do_not_count_towards_the_limit(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    for _ in range(3 * MAX_FAILED_LOGINS):
        await log_in(uow_factory, attempts, clock)
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(InvalidCredentials):
            await log_in(uow_factory, attempts, clock, password="guess")


async def set_up(uow_factory: UnitOfWorkFactory, clock: FakeClock, **fields: str) -> Merchant:
    values = {
        "name": "Kavárna U Anny",
        "slug": "",
        "shop_url": "",
        "admin_email": "anna@example.cz",
        "admin_password": PASSWORD,
        "password_again": PASSWORD,
        **fields,
    }
    return await staff.set_up_first_merchant(
        **values, uow=uow_factory(), clock=clock, hasher=FakePasswordHasher()
    )


async def test_the_first_run_creates_the_merchant_and_its_admin_once(
    uow_factory: UnitOfWorkFactory, attempts: InMemoryLoginAttempts, clock: FakeClock
) -> None:
    assert await staff.needs_setup(uow=uow_factory())
    merchant = await set_up(uow_factory, clock)
    assert merchant.slug == "kavarna-u-anny"
    assert not await staff.needs_setup(uow=uow_factory())
    assert (await log_in(uow_factory, attempts, clock, email="anna@example.cz")).merchant_id == (
        merchant.id
    )
    with pytest.raises(AlreadySetUp):
        await set_up(uow_factory, clock, slug="second", admin_email="b@example.cz")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": " "}, "programme name"),
        ({"slug": "Bad Slug"}, "slug"),
        ({"admin_email": "nope"}, "not a valid email"),
        ({"admin_password": "short", "password_again": "short"}, "10 to 1024"),
        ({"password_again": "something else"}, "not the same"),
        ({"shop_url": "ftp://x"}, "shop URL"),
    ],
)
async def test_the_first_run_refuses_bad_input_and_stores_nothing(
    uow_factory: UnitOfWorkFactory, clock: FakeClock, fields: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await set_up(uow_factory, clock, **fields)
    assert await staff.needs_setup(uow=uow_factory())


@pytest.mark.parametrize("email", ["anna@example.cz\x00", "\x00", "an\x1bna@example.cz"])
async def test_a_log_in_with_a_control_character_in_the_email_is_refused_and_counted_storably(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    email: str,
) -> None:
    await set_up(uow_factory, clock)
    with pytest.raises(InvalidCredentials):
        await log_in(uow_factory, attempts, clock, email=email)
    keys = list(attempts.counts)
    assert keys and not any(has_control_characters(key) for key in keys)
    assert email_throttle_key(email) in keys


@pytest.mark.parametrize(
    ("email", "wanted"),
    [
        (" Admin@Anna.example.cz ", "Admin@Anna.example.cz"),
        ("", None),
        ("  ", None),
        ("admin@anna.example.cz\x00", None),
        ("a\x7fb@x.cz", None),
    ],
)
def test_a_log_in_names_a_trimmed_email_without_control_characters(
    email: str, wanted: str | None
) -> None:
    assert login_email(email) == wanted


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Kavárna U Anny", "kavarna-u-anny"), ("Bob's Books!", "bob-s-books"), ("¿?", "shop")],
)
def test_a_slug_is_made_from_the_programme_name(name: str, slug: str) -> None:
    assert slug_from_name(name) == slug


async def test_the_pages_follow_the_merchants_locale_until_the_user_chooses_a_language(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
    other_merchant: Merchant,
) -> None:
    anna = await log_in(uow_factory, attempts, clock)
    bob = await log_in(uow_factory, attempts, clock, email="admin@bob.example.com")
    assert (anna.locale, anna.ui_language) == ("cs", "cs")
    assert (bob.locale, bob.ui_language) == ("en", "en")

    assert await staff.choose_ui_language(anna.staff_id, "en", uow=uow_factory()) == "en"
    again = await staff.current_staff(anna.staff_id, uow=uow_factory())
    assert again is not None
    assert (again.locale, again.ui_language) == ("cs", "en")  # the merchant's locale stays
    relogged = await log_in(uow_factory, attempts, clock)
    assert relogged.ui_language == "en"
    other = await staff.current_staff(bob.staff_id, uow=uow_factory())
    assert other is not None and other.ui_language == "en"


async def test_only_a_language_of_the_pages_can_be_chosen(
    uow_factory: UnitOfWorkFactory,
    attempts: InMemoryLoginAttempts,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    anna = await log_in(uow_factory, attempts, clock)
    with pytest.raises(InvalidInput):
        await staff.choose_ui_language(anna.staff_id, "de", uow=uow_factory())
    again = await staff.current_staff(anna.staff_id, uow=uow_factory())
    assert again is not None and again.ui_language == "cs"
