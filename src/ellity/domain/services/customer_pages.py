"""What the staff's customer pages need beyond the shared customer use cases: the search with
keyset paging, one customer with a page of their ledger, their consent history and their
Ecomail sync state, and creating a customer by hand."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ellity.domain.model.consent import ConsentChange, ConsentSource
from ellity.domain.model.contact import CustomerLoyalty
from ellity.domain.model.contact_state import ContactFacts, ContactState, contact_state
from ellity.domain.model.customer import Customer, clean_email, clean_shop_customer_id
from ellity.domain.model.customer_query import CustomerQuery, parse_customer_query
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.merchant import Merchant
from ellity.domain.services.common import (
    CustomerView,
    customer_id_of,
    load_customer,
    load_merchant,
    merchant_id_of,
    retried_on_conflict,
    today_of,
    view_of,
)
from ellity.domain.services.customers import CustomerInput, create_new_customer
from ellity.ports.clock import Clock, RandomSource
from ellity.ports.storage import (
    ContactSyncRow,
    SentEvent,
    StoredEntry,
    UnitOfWork,
    UnitOfWorkFactory,
)

PAGE_SIZE = 50
COUNT_UP_TO = 1_000  # a search finding more says "more than 1 000"
LEDGER_PAGE_SIZE = 25
CONSENT_HISTORY_SIZE = 100
EVENTS_SHOWN = 10  # the customer's latest Ecomail events on their page


@dataclass(frozen=True, slots=True)
class CustomerPage:
    merchant: Merchant
    query: CustomerQuery
    customers: list[CustomerLoyalty]
    next_after: CustomerId | None  # the cursor of the next page; None on the last page
    previous_before: CustomerId | None  # the cursor of the previous page; None on the first
    found: int  # how many customers the search finds, up to COUNT_UP_TO + 1

    @property
    def found_more_than(self) -> int | None:
        """``COUNT_UP_TO`` when the search finds more (it was not counted further)."""
        return COUNT_UP_TO if self.found > COUNT_UP_TO else None


async def search_customers(
    merchant_id: MerchantId,
    text: str,
    *,
    after_id: CustomerId | None = None,
    before_id: CustomerId | None = None,
    uow: UnitOfWork,
    clock: Clock,
    limit: int = PAGE_SIZE,
) -> CustomerPage:
    """One page of what ``text`` finds (see ``customer_query``): the first, the one after
    ``after_id`` (the last customer of the page before) or the one before ``before_id`` (the
    first customer of the page after; near the start, the first page). A word shaped like a
    referral code that is nobody's code is searched as a name or email instead."""
    query = parse_customer_query(text)
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        today = today_of(merchant, clock)

        async def page(query: CustomerQuery, **cursor: CustomerId | None) -> list[CustomerLoyalty]:
            return await uow.views.search_customers(
                merchant_id, query, limit=limit + 1, today=today, **cursor
            )

        if before_id is not None:
            rows = await page(query, after_id=None, before_id=before_id)
            if len(rows) > limit:  # a full page with more before it
                shown = rows[1:]
                found = await uow.views.count_customers(merchant_id, query, at_most=COUNT_UP_TO)
                return CustomerPage(
                    merchant, query, shown, shown[-1].customer_id, shown[0].customer_id, found
                )
            after_id = None  # the first page
        rows = await page(query, after_id=after_id)
        if not rows and query.referral_code is not None:
            query = query.without_code()
            rows = await page(query, after_id=after_id)
        found = await uow.views.count_customers(merchant_id, query, at_most=COUNT_UP_TO)
    shown = rows[:limit]
    more = len(rows) > limit
    return CustomerPage(
        merchant,
        query,
        shown,
        shown[-1].customer_id if more else None,
        shown[0].customer_id if shown and after_id is not None else None,
        found,
    )


@dataclass(frozen=True, slots=True)
class EcomailSync:
    """The customer's contact in the merchant's Ecomail list: in it or not and why, the sync
    row (none: never written), and the latest events for the customer, newest first."""

    state: ContactState
    row: ContactSyncRow | None
    events: list[SentEvent]


@dataclass(frozen=True, slots=True)
class CustomerDetail:
    merchant: Merchant
    view: CustomerView
    entries: list[StoredEntry]  # newest first
    next_before: int | None  # the cursor of the next (older) page of the ledger
    consent_changes: list[ConsentChange]  # newest first, at most CONSENT_HISTORY_SIZE
    ecomail: EcomailSync | None = None  # None while the integration is not active


async def customer_detail(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    *,
    before_id: int | None = None,
    uow: UnitOfWork,
    clock: Clock,
    limit: int = LEDGER_PAGE_SIZE,
) -> CustomerDetail:
    """The customer, a page of their ledger, newest first, keyset-paged by entry id, their
    latest consent changes and, while the Ecomail integration is active, their contact's
    sync state and latest events."""
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id)
        view = await view_of(uow, merchant, customer, clock=clock)
        entries = await uow.ledgers.entries(
            merchant_id, customer_id, limit=limit + 1, before_id=before_id
        )
        consent_changes = await uow.customers.consent_history(
            merchant_id, customer_id, limit=CONSENT_HISTORY_SIZE
        )
        ecomail = await _ecomail_sync(uow, merchant, customer)
    shown = entries[:limit]
    more = len(entries) > limit
    return CustomerDetail(
        merchant, view, shown, shown[-1].id if more else None, consent_changes, ecomail
    )


async def _ecomail_sync(
    uow: UnitOfWork, merchant: Merchant, customer: Customer
) -> EcomailSync | None:
    merchant_id, customer_id = merchant_id_of(merchant), customer_id_of(customer)
    if await uow.ecomail.active_list(merchant_id) is None:
        return None
    row = await uow.views.contact_sync_row(merchant_id, customer_id)
    events = await uow.views.customer_events(merchant_id, customer_id, limit=EVENTS_SHOWN)
    facts = ContactFacts(
        integration_active=True,
        has_email=customer.email is not None,
        setting=merchant.settings.ecomail_add,
        consent=customer.marketing_consent,
    )
    if row is not None:
        facts = dataclasses.replace(
            facts,
            in_list=row.in_list,
            pending=row.pending_since is not None,
            failed=row.failed_at is not None,
            unsubscribe_due=row.unsubscribe_due,
            list_status=row.list_status,
        )
    return EcomailSync(contact_state(facts), row, events)


@retried_on_conflict
async def create_customer(
    merchant_id: MerchantId,
    data: CustomerInput,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    rng: RandomSource,
) -> CustomerView:
    """A new customer; unlike the e-shop's upsert, an email or shop customer id already in
    use is refused (by the unique indexes, in the same transaction), never updated. A consent
    in ``data`` is recorded as set by staff."""
    email, shop_id = clean_email(data.email), clean_shop_customer_id(data.shop_customer_id)
    if email is None and shop_id is None:
        raise InvalidInput("A customer needs an email or a shop customer id.")
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await create_new_customer(
            merchant,
            data,
            email,
            shop_id,
            uow=uow,
            clock=clock,
            rng=rng,
            consent_source=ConsentSource.STAFF,
        )
        view = await view_of(uow, merchant, customer, clock=clock)
        await uow.commit()
    return view
