"""Use cases about customers: create or update, register, PINs, contact snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ellity.domain.model.consent import ConsentSource, MarketingConsent
from ellity.domain.model.contact import ContactSnapshot, LoyaltyRow, snapshots_of_rows
from ellity.domain.model.customer import (
    Customer,
    clean_email,
    clean_name,
    clean_shop_customer_id,
    email_key,
)
from ellity.domain.model.errors import (
    CustomerNotFound,
    DuplicateCustomer,
    InvalidInput,
    Term,
)
from ellity.domain.model.ids import BEFORE_FIRST_CUSTOMER, CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.pin import generate_pin
from ellity.domain.model.referral import generate_referral_code, normalize_referral_code
from ellity.domain.model.system_email import PinReason
from ellity.domain.model.text import has_control_characters
from ellity.domain.services import notifications
from ellity.domain.services.common import (
    CustomerView,
    customer_id_of,
    load_customer,
    load_merchant,
    look_of,
    merchant_id_of,
    retried_on_conflict,
    snapshots_of,
    today_of,
    view_of,
)
from ellity.domain.services.consent import consent_changed, record_consent
from ellity.domain.services.newsletter_signups import signup_for_new_customer
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.storage import UniqueViolation, UnitOfWork, UnitOfWorkFactory

REFERRAL_CODE_ATTEMPTS = 10
#: Customers per page of ``all_contact_snapshots``: at a million customers on SQLite pages of
#: 20 000 took a sixth less time than pages of 5 000 (fewer round trips to the driver's
#: thread); a page's snapshots are some 20 MB.
SNAPSHOT_BATCH = 20_000


@dataclass(frozen=True, slots=True)
class CustomerInput:
    """What the shop or the staff may set; ``None`` means "leave as it is"."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    shop_customer_id: str | None = None
    registered: bool | None = None
    referred_by: str | None = None
    marketing_consent: MarketingConsent | None = None


@dataclass(frozen=True, slots=True)
class UpsertResult:
    view: CustomerView
    created: bool


_DUPLICATE_MESSAGES = {
    "email": "Another customer already has this email address.",
    "shop_customer_id": "Another customer already has this shop customer id.",
}


@retried_on_conflict
async def upsert_customer(
    merchant_id: MerchantId,
    data: CustomerInput,
    *,
    uow: UnitOfWork,
    clock: Clock,
    rng: RandomSource,
    consent_source: ConsentSource = ConsentSource.API,
) -> UpsertResult:
    """Create the customer, or update the one with the same shop customer id or email (the
    e-shop's call: a consent it sends is recorded as the e-shop's)."""
    email = clean_email(data.email)
    shop_id = clean_shop_customer_id(data.shop_customer_id)
    if email is None and shop_id is None:
        raise InvalidInput("A customer needs an email or a shop customer id.")
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        existing = None
        if shop_id is not None:
            existing = await uow.customers.find_by_shop_customer_id(merchant_id, shop_id)
        if existing is None and email is not None:
            existing = await uow.customers.find_by_email(merchant_id, email)
        if existing is None:
            customer = await create_new_customer(
                merchant,
                data,
                email,
                shop_id,
                uow=uow,
                clock=clock,
                rng=rng,
                consent_source=consent_source,
            )
        else:
            customer = await load_customer(
                uow, merchant_id, customer_id_of(existing), for_update=True
            )
            reason = await _apply(
                merchant,
                customer,
                data,
                email,
                shop_id,
                uow=uow,
                clock=clock,
                rng=rng,
                consent_source=consent_source,
            )
            if reason is not None:
                await notifications.pin_issued(
                    uow, merchant, customer, reason, at=customer.updated_at
                )
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return UpsertResult(view=view, created=existing is None)


@retried_on_conflict
async def update_customer(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    data: CustomerInput,
    *,
    uow: UnitOfWork,
    clock: Clock,
    rng: RandomSource,
    consent_source: ConsentSource = ConsentSource.STAFF,
) -> CustomerView:
    """Change what ``data`` sets (the staff's edit form: a consent is recorded as theirs
    unless ``consent_source`` says otherwise)."""
    email = clean_email(data.email)
    shop_id = clean_shop_customer_id(data.shop_customer_id)
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id, for_update=True)
        reason = await _apply(
            merchant,
            customer,
            data,
            email,
            shop_id,
            uow=uow,
            clock=clock,
            rng=rng,
            consent_source=consent_source,
        )
        if reason is not None:
            await notifications.pin_issued(uow, merchant, customer, reason, at=customer.updated_at)
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return view


async def get_customer(
    merchant_id: MerchantId, customer_id: CustomerId, *, uow: UnitOfWork, clock: Clock
) -> CustomerView:
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id)
        return await view_of(uow, merchant, customer, clock=clock)


async def find_customer_by_email(
    merchant_id: MerchantId, email: str, *, uow: UnitOfWork, clock: Clock
) -> CustomerView | None:
    cleaned = clean_email(email)
    if cleaned is None:
        raise InvalidInput("Give the email address to look for.")
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await uow.customers.find_by_email(merchant_id, cleaned)
        return None if customer is None else await view_of(uow, merchant, customer, clock=clock)


@retried_on_conflict
async def register_customer(
    merchant_id: MerchantId, customer_id: CustomerId, *, uow: UnitOfWork, clock: Clock
) -> CustomerView:
    """A registered member has no PIN."""
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id, for_update=True)
        if customer.register(at=clock.now()):
            await uow.customers.update(customer)
            await notifications.contact_changed(uow, merchant, customer, at=customer.updated_at)
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return view


@retried_on_conflict
async def regenerate_pin(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    *,
    uow: UnitOfWork,
    clock: Clock,
    rng: RandomSource,
) -> CustomerView:
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id, for_update=True)
        customer.regenerate_pin(rng.randbelow, at=clock.now())
        await uow.customers.update(customer)
        await notifications.pin_issued(
            uow, merchant, customer, PinReason.REGENERATED, at=customer.updated_at
        )
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return view


async def contact_snapshots(
    merchant_id: MerchantId, customer_ids: Sequence[CustomerId], *, uow: UnitOfWork, clock: Clock
) -> list[ContactSnapshot]:
    """Snapshots of the given customers (one query); unknown or foreign ids are left out."""
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        rows = await uow.ledgers.loyalty(merchant_id, customer_ids, today=today_of(merchant, clock))
    return snapshots_of(merchant, rows)


async def contact_snapshot(
    merchant_id: MerchantId, customer_id: CustomerId, *, uow: UnitOfWork, clock: Clock
) -> ContactSnapshot:
    snapshots = await contact_snapshots(merchant_id, [customer_id], uow=uow, clock=clock)
    if not snapshots:
        raise CustomerNotFound(customer_id)
    return snapshots[0]


async def all_contact_snapshots(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    batch_size: int = SNAPSHOT_BATCH,
) -> AsyncIterator[list[ContactSnapshot]]:
    """Every customer's snapshot in id order, a batch per short read-only transaction.

    The next page is read while the caller works on the current one.
    """
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
    today = today_of(merchant, clock)

    look = look_of(merchant)

    async def page(after_id: CustomerId) -> list[LoyaltyRow]:
        async with uow_factory(read_only=True) as uow:
            return await uow.views.loyalty_rows_page(
                merchant_id, after_id=after_id, limit=batch_size, today=today
            )

    rows = await page(BEFORE_FIRST_CUSTOMER)
    while rows:
        following = asyncio.ensure_future(page(rows[-1][0]))
        try:
            yield snapshots_of_rows(rows, look)
            rows = await following
        finally:
            following.cancel()


# -- internals ----------------------------------------------------------------------------


async def create_new_customer(
    merchant: Merchant,
    data: CustomerInput,
    email: str | None,
    shop_id: str | None,
    *,
    uow: UnitOfWork,
    clock: Clock,
    rng: RandomSource,
    consent_source: ConsentSource,
) -> Customer:
    """Store a new customer in the caller's transaction (with the PIN email, when that is on).

    A consent in ``data`` other than ``unknown`` is recorded as set by ``consent_source``,
    with its history line. An email, shop customer id or referral code already in use raises
    ``DuplicateCustomer``.
    """
    merchant_id = merchant_id_of(merchant)
    now = clock.now()
    referred_by_id = None
    if data.referred_by:
        code = normalize_referral_code(data.referred_by)
        # No code holds a control character (and PostgreSQL cannot even compare NUL).
        referrer = (
            None
            if has_control_characters(code)
            else await uow.customers.find_by_referral_code(merchant_id, code)
        )
        if referrer is None:
            raise InvalidInput(
                f"No customer has the referral code '{data.referred_by.strip()[:20]}'."
            )
        referred_by_id = referrer.id
    registered = bool(data.registered)
    for _ in range(REFERRAL_CODE_ATTEMPTS):
        code = generate_referral_code(rng.randbelow)
        if await uow.customers.find_by_referral_code(merchant_id, code) is None:
            break
    else:
        raise RuntimeError("could not draw an unused referral code")
    customer = Customer(
        merchant_id=merchant_id,
        referral_code=code,
        created_at=now,
        updated_at=now,
        email=email,
        first_name=clean_name(data.first_name, Term("first name")),
        last_name=clean_name(data.last_name, Term("last name")),
        shop_customer_id=shop_id,
        registered=registered,
        pin=None if registered else generate_pin(rng.randbelow),
        referred_by_id=referred_by_id,
    )
    try:
        await uow.customers.add(customer)
    except UniqueViolation as exc:
        raise DuplicateCustomer(
            _DUPLICATE_MESSAGES.get(exc.field, "This customer exists already.")
        ) from None
    if data.marketing_consent is not None:  # set once stored: its history line needs the id
        await record_consent(
            uow, merchant, customer, data.marketing_consent, consent_source, at=now
        )
    await notifications.contact_changed(uow, merchant, customer, at=now)
    await notifications.pin_issued(uow, merchant, customer, PinReason.CREATED, at=now)
    await signup_for_new_customer(uow, merchant, customer, at=now)
    return customer


async def _apply(
    merchant: Merchant,
    customer: Customer,
    data: CustomerInput,
    email: str | None,
    shop_id: str | None,
    *,
    uow: UnitOfWork,
    clock: Clock,
    rng: RandomSource,
    consent_source: ConsentSource,
) -> PinReason | None:
    """Change only what ``data`` sets; the referrer is fixed at creation. A consent is
    recorded as set by ``consent_source`` when it changes (see ``record_consent``).

    Returns why the customer got a new PIN, if they did: they became anonymous, or an
    anonymous customer's email changed (the old PIN may be in a stranger's mailbox).
    """
    now = clock.now()
    before = (customer.email, customer.first_name, customer.last_name, customer.registered)
    reason = None
    if email is not None and customer.change_email(email, rng.randbelow, at=now):
        reason = PinReason.REGENERATED
    if shop_id is not None:
        customer.shop_customer_id = shop_id
    if data.first_name is not None:
        customer.first_name = clean_name(data.first_name, Term("first name"))
    if data.last_name is not None:
        customer.last_name = clean_name(data.last_name, Term("last name"))
    if data.registered is True:
        customer.register(at=now)
    elif data.registered is False and customer.make_anonymous(rng.randbelow, at=now):
        reason = PinReason.ANONYMOUS
    change = None
    if data.marketing_consent is not None:
        change = customer.set_consent(data.marketing_consent, consent_source, at=now)
    customer.updated_at = now
    try:
        await uow.customers.update(customer)
    except UniqueViolation as exc:
        raise DuplicateCustomer(
            _DUPLICATE_MESSAGES.get(exc.field, "This customer exists already.")
        ) from None
    after = (customer.email, customer.first_name, customer.last_name, customer.registered)
    if after != before:
        moved = email_key(customer.email) != email_key(before[0])
        await notifications.contact_changed(
            uow, merchant, customer, at=now, moved_from=before[0] if moved else None
        )
    if change is not None:
        await consent_changed(uow, merchant, customer, change)
    return None if customer.pin is None else reason
