"""Use cases of staff users: logging in (throttled), who is logged in, the first-run setup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ellity.domain.model.customer import clean_email
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import StaffId
from ellity.domain.model.merchant import Merchant, MerchantSettings, clean_slug
from ellity.domain.model.money import LOCALES, Locale
from ellity.domain.model.staff import (
    LOGIN_WINDOW,
    MAX_FAILED_LOGINS,
    AlreadySetUp,
    InvalidCredentials,
    LoginThrottled,
    StaffIdentity,
    StaffUser,
    account_delay,
    client_throttle_key,
    default_language,
    email_client_throttle_key,
    email_throttle_key,
    login_email,
    slug_from_name,
)
from ellity.domain.services.common import merchant_id_of
from ellity.domain.services.merchants import MAX_PASSWORD_LENGTH, check_password
from ellity.ports.clock import Clock, PasswordHasher
from ellity.ports.storage import UnitOfWork, UnitOfWorkFactory
from ellity.ports.web_state import LoginAttempts

_DECOY_HASHES: dict[type, str] = {}


def _decoy_hash(hasher: PasswordHasher) -> str:
    """Verified against when the email is unknown, so both cases take the same time."""
    kind = type(hasher)
    if kind not in _DECOY_HASHES:
        _DECOY_HASHES[kind] = hasher.hash("no staff user has this password, it only takes time")
    return _DECOY_HASHES[kind]


async def log_in(
    email: str,
    password: str,
    *,
    client: str,
    uow_factory: UnitOfWorkFactory,
    attempts: LoginAttempts,
    clock: Clock,
    hasher: PasswordHasher,
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> StaffIdentity:
    """The staff user with this email and password.

    Every attempt is counted first, per client address and per (email, client address), in
    windows of ``LOGIN_WINDOW``; past ``MAX_FAILED_LOGINS`` in a window the attempt is refused
    without looking at the password. Counting before checking keeps a burst of concurrent
    guesses within the limit too. Attempts for the email from all clients are counted as well,
    but only slow it down (``account_delay``, through ``pause``): failures elsewhere never
    refuse the right password from a client that has not failed. A successful log-in takes
    its own attempts back and clears its (email, client) count.
    """
    now = clock.now()
    client_key = client_throttle_key(client)
    pair_key = email_client_throttle_key(email, client)
    account_key = email_throttle_key(email)
    counts = [
        await attempts.add(key, at=now, window=LOGIN_WINDOW) for key in (client_key, pair_key)
    ]
    over = [count for count in counts if count.attempts > MAX_FAILED_LOGINS]
    if over:
        raise LoginThrottled(retry_at=max(c.window_ends_at for c in over), now=now)
    account = await attempts.add(account_key, at=now, window=LOGIN_WINDOW)
    delay = account_delay(account.attempts)
    if delay:
        await pause(delay.total_seconds())
    staff: StaffUser | None = None
    merchant: Merchant | None = None
    wanted = login_email(email)
    if wanted is not None and len(password) <= MAX_PASSWORD_LENGTH:
        async with uow_factory(read_only=True) as uow:
            staff = await uow.staff.find_by_email(wanted)
            merchant = None if staff is None else await uow.merchants.get(staff.merchant_id)
    password_hash = _decoy_hash(hasher) if staff is None else staff.password_hash
    valid = await asyncio.to_thread(hasher.verify, password_hash, password)
    if staff is None or merchant is None or not valid:
        raise InvalidCredentials()
    await attempts.forgive(pair_key, reset=True)
    await attempts.forgive(client_key)
    await attempts.forgive(account_key)
    await attempts.prune(now=now)
    return _identity(staff, merchant)


async def current_staff(staff_id: StaffId, *, uow: UnitOfWork) -> StaffIdentity | None:
    """Who a session belongs to, or None when the staff user no longer exists."""
    async with uow:
        staff = await uow.staff.get(staff_id)
        if staff is None:
            return None
        merchant = await uow.merchants.get(staff.merchant_id)
    return None if merchant is None else _identity(staff, merchant)


async def choose_ui_language(staff_id: StaffId, language: str, *, uow: UnitOfWork) -> Locale:
    """The staff user's pages are in ``language`` from now on (it is remembered)."""
    if language not in LOCALES:
        raise InvalidInput(f"The language must be one of {', '.join(LOCALES)}.")
    chosen: Locale = "cs" if language == "cs" else "en"
    async with uow:
        await uow.staff.set_ui_language(staff_id, chosen)
        await uow.commit()
    return chosen


async def needs_setup(*, uow: UnitOfWork) -> bool:
    """True while there is no merchant at all: the first-run page is open."""
    async with uow:
        return await uow.merchants.count() == 0


async def set_up_first_merchant(
    *,
    name: str,
    slug: str,
    shop_url: str,
    admin_email: str,
    admin_password: str,
    password_again: str,
    uow: UnitOfWork,
    clock: Clock,
    hasher: PasswordHasher,
) -> Merchant:
    """The first merchant and its admin, only while the database has no merchant.

    Refused with ``AlreadySetUp`` once any merchant exists, also when two setups race.
    An empty slug is made from the programme name.
    """
    settings = MerchantSettings(name=name, shop_url=shop_url)
    slug = clean_slug(slug if slug.strip() else slug_from_name(settings.name))
    email = clean_email(admin_email)
    if email is None:
        raise InvalidInput("The admin needs an email address.")
    check_password(admin_password)
    if admin_password != password_again:
        raise InvalidInput("The two passwords are not the same.")
    password_hash = await asyncio.to_thread(hasher.hash, admin_password)
    now = clock.now()
    async with uow:
        merchant = await uow.merchants.add_first(Merchant(slug=slug, settings=settings), at=now)
        if merchant is None:
            raise AlreadySetUp()
        await uow.staff.add(
            merchant_id_of(merchant), email=email, password_hash=password_hash, at=now
        )
        await uow.commit()
    return merchant


def _identity(staff: StaffUser, merchant: Merchant) -> StaffIdentity:
    return StaffIdentity(
        staff_id=staff.id,
        merchant_id=merchant_id_of(merchant),
        email=staff.email,
        merchant_slug=merchant.slug,
        programme_name=merchant.settings.name,
        locale=merchant.settings.locale,
        time_zone=merchant.settings.timezone,
        ui_language=staff.ui_language or default_language(merchant.settings.locale),
    )
