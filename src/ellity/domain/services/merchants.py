"""Use cases about merchants: creating one with its first admin, reading and changing settings."""

from __future__ import annotations

import dataclasses

from ellity.domain.model.customer import clean_email
from ellity.domain.model.errors import DuplicateMerchant, InvalidInput, MerchantNotFound
from ellity.domain.model.merchant import Merchant, MerchantSettings, clean_slug
from ellity.domain.services import notifications
from ellity.ports.clock import Clock, PasswordHasher
from ellity.ports.storage import UniqueViolation, UnitOfWork

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            "The password must have %(min)s to %(max)s characters.",
            min=MIN_PASSWORD_LENGTH,
            max=MAX_PASSWORD_LENGTH,
        )
    return password


async def create_merchant(
    *,
    slug: str,
    settings: MerchantSettings,
    admin_email: str,
    admin_password: str,
    uow: UnitOfWork,
    clock: Clock,
    hasher: PasswordHasher,
) -> Merchant:
    """A merchant with its first admin, both or neither."""
    slug = clean_slug(slug)
    email = clean_email(admin_email)
    if email is None:
        raise InvalidInput("The admin needs an email address.")
    password_hash = hasher.hash(check_password(admin_password))
    now = clock.now()
    async with uow:
        try:
            merchant = await uow.merchants.add(Merchant(slug=slug, settings=settings), at=now)
        except UniqueViolation:
            raise DuplicateMerchant(
                "A merchant with the slug '%(slug)s' exists already.", slug=slug
            ) from None
        if merchant.id is None:
            raise ValueError("the merchant was not given an id")
        try:
            await uow.staff.add(merchant.id, email=email, password_hash=password_hash, at=now)
        except UniqueViolation:
            raise DuplicateMerchant(
                "A staff user with the email %(email)s exists already.", email=email
            ) from None
        await uow.commit()
    return merchant


async def merchant_by_slug(slug: str, *, uow: UnitOfWork) -> Merchant:
    async with uow:
        merchant = await uow.merchants.get_by_slug(slug.strip())
    if merchant is None:
        raise MerchantNotFound(slug)
    return merchant


async def change_settings(
    slug: str, changes: dict[str, str], *, uow: UnitOfWork, clock: Clock
) -> Merchant:
    """Apply ``KEY=VALUE`` changes; all are validated before any is stored."""
    async with uow:
        merchant = await uow.merchants.get_by_slug(slug.strip())
        if merchant is None or merchant.id is None:
            raise MerchantNotFound(slug)
        before = dataclasses.replace(merchant)
        merchant.settings = merchant.settings.with_changes(changes)
        await uow.merchants.update_settings(merchant.id, merchant.settings)
        await notifications.settings_changed(uow, merchant, before, at=clock.now())
        await uow.commit()
    return merchant
