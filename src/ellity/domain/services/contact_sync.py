"""Writing customers' contact fields to their merchant's Ecomail list (live sync and backfill).

Use cases mark a customer's contact pending in the transaction of the change
(``notifications``); a backfill marks every customer with an email (``contact_backfill``).
The worker then, per merchant:

1. claims up to ``BULK_LIMIT`` pending contacts (exclusive across workers, with a lease);
2. reads the customers as they are now, in one query, so many changes cost one write;
3. updates the contacts Ellity wrote before with one bulk update, and adds the others with
   one bulk add (which updates those that turn out to exist and never re-subscribes anyone
   who unsubscribed); when the update touched fewer contacts than it sent (someone deleted
   them in Ecomail), the same contacts are sent through the add as well;
4. clears the addresses these customers moved away from (their email changed) and no
   customer holds now, with a bulk update of empty ``ellity_*`` fields: an update never adds
   a contact nor changes its status, and while this claim holds the customer no other
   worker can still be writing their fields to the old address;
5. settles them: a contact that changed while it was being written stays pending.

Failures: Ecomail unavailable or rate-limited → the claim's contacts wait and are retried with
backoff (never given up: they are not lost); a rejected bulk call is split in halves until the
contacts Ecomail refuses are isolated, and those are recorded as failed with Ecomail's
reason; a wrong key or a deleted list fails the claim's contacts with what to do. Failed
contacts are retried by the merchant (or by their next change).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.contact import FIELD_TYPES, ContactSnapshot, cleared_fields
from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.outbox import RetryPolicy, clip_error
from ellity.domain.services.common import retried_on_conflict, snapshots_of, today_of
from ellity.domain.services.contact_backfill import mark_backfills
from ellity.domain.services.ecomail_connection import (
    KEY_REJECTED,
    KEY_UNREADABLE,
    Connection,
    connection,
)
from ellity.domain.services.work_loop import Handled, Pace, work_through
from ellity.ports.clock import Clock
from ellity.ports.marketing import (
    BULK_LIMIT,
    ContactData,
    InvalidApiKey,
    ListNotFound,
    MarketingPlatforms,
    MarketingRejected,
    MarketingUnavailable,
    TypedValue,
)
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import ClaimedContact, OldAddress, UnitOfWork, UnitOfWorkFactory

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
#: Contacts waiting for Ecomail to come back: 5 s, 10 s, ... at most 5 minutes apart.
CONTACT_RETRY = RetryPolicy(base=timedelta(seconds=5), cap=timedelta(minutes=5))

LIST_GONE = (
    "The Ecomail list no longer exists: choose another list on the Ecomail integration page,"
    " then retry the failed contacts."
)


def contact_data(snapshot: ContactSnapshot) -> ContactData:
    """The contact as Ecomail gets it: every ``ellity_*`` field with its type."""
    if snapshot.email is None:
        raise ValueError("a customer without an email has no contact")
    return ContactData(
        email=snapshot.email,
        first_name=snapshot.first_name,
        last_name=snapshot.last_name,
        custom_fields={
            name: TypedValue(value=value, type=FIELD_TYPES[name])
            for name, value in snapshot.fields.items()
        },
    )


def cleared_contact(email: str) -> ContactData:
    """An address no customer holds any more: every ``ellity_*`` field empty, names left."""
    return ContactData(
        email=email,
        custom_fields={
            name: TypedValue(value=value, type=FIELD_TYPES[name])
            for name, value in cleared_fields().items()
        },
    )


async def sync_contacts(
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    clock: Clock,
    worker_token: str,
    max_batches: int = 1000,
    lease: timedelta = LEASE,
) -> int:
    """Write the pending contacts of every merchant with an active integration; returns how
    many were written. Stops a merchant's run at its first failure (what is left waits)."""
    await mark_backfills(uow_factory=uow_factory, clock=clock)
    async with uow_factory(read_only=True) as uow:
        merchant_ids = await uow.contacts.due_merchants(now=clock.now())
    written = 0
    for merchant_id in merchant_ids:
        written += await sync_merchant(
            merchant_id,
            uow_factory=uow_factory,
            platforms=platforms,
            secret_box=secret_box,
            clock=clock,
            worker_token=worker_token,
            max_batches=max_batches,
            lease=lease,
        )
    return written


async def sync_merchant(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    clock: Clock,
    worker_token: str,
    max_batches: int = 1000,
    lease: timedelta = LEASE,
) -> int:
    """``lease``: how long a claim holds its contacts; a worker that dies holding some leaves
    them to be taken over when it runs out. It must outlast one bulk call."""
    try:
        link = await connection(
            merchant_id, uow_factory=uow_factory, platforms=platforms, secret_box=secret_box
        )
    except SecretUnreadable:
        link, unreadable = None, True
    else:
        unreadable = False
    if link is None and not unreadable:
        return 0  # not active (any more): the contacts wait for an activation
    pace = Pace(BULK_LIMIT, lease, claims=max_batches)
    contacts = _Contacts(merchant_id, link, uow_factory, clock)
    return await work_through(
        contacts, uow_factory=uow_factory, clock=clock, worker_token=worker_token, pace=pace
    )


@dataclass(frozen=True, slots=True)
class _Contacts:
    """A merchant's pending contacts as the work loop goes through them: a claim at a time,
    written together; a failure stops the run (what is left waits)."""

    merchant_id: MerchantId
    link: Connection | None  # None: the stored key cannot be decrypted
    uow_factory: UnitOfWorkFactory
    clock: Clock
    tag: str = "c"

    async def claim(
        self, uow: UnitOfWork, token: str, *, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[ClaimedContact]:
        return await uow.contacts.claim(
            self.merchant_id, token=token, now=now, lease=lease, limit=limit
        )

    async def handle(self, token: str, claimed: Sequence[ClaimedContact]) -> Handled:
        if self.link is None:
            await _fail(
                self.uow_factory, self.merchant_id, token, None, KEY_UNREADABLE, clock=self.clock
            )
            return Handled(0, stop=True)
        batch = _Batch(self.merchant_id, token, self.link, self.uow_factory, self.clock)
        written = await batch.write(claimed)
        return Handled(written, stop=batch.stopped)


class _Batch:
    """One claim's contacts on their way to Ecomail."""

    def __init__(
        self,
        merchant_id: MerchantId,
        token: str,
        link: Connection,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
    ) -> None:
        self.merchant_id = merchant_id
        self.token = token
        self.link = link
        self.uow_factory = uow_factory
        self.clock = clock
        self.stopped = False

    async def write(self, claimed: Sequence[ClaimedContact]) -> int:
        customer_ids = [c.customer_id for c in claimed]
        async with self.uow_factory(read_only=True) as uow:
            merchant = await uow.merchants.get(self.merchant_id)
            if merchant is None:
                return 0
            rows = await uow.ledgers.loyalty(
                self.merchant_id, customer_ids, today=today_of(merchant, self.clock)
            )
            old = await uow.contacts.old_addresses(self.merchant_id, customer_ids)
        snapshots = {s.customer_id: s for s in snapshots_of(merchant, rows) if s.email}
        in_list = {c.customer_id for c in claimed if c.in_list}
        gone = [c.customer_id for c in claimed if c.customer_id not in snapshots]
        known = [snapshots[i] for i in sorted(in_list & snapshots.keys())]
        new = [s for i, s in sorted(snapshots.items()) if i not in in_list]
        try:
            if known and not await self._update(known):
                # some were deleted in Ecomail (or one was refused): the add path puts them
                # back and isolates any contact Ecomail refuses
                new, known = sorted(new + known, key=lambda s: s.customer_id), []
            added = await self._add(new)
            await self._clear(_distinct(old))
        except MarketingUnavailable as exc:
            await self._release(str(exc), exc.retry_after)
            self.stopped = True
            return 0
        except InvalidApiKey:
            await _fail(
                self.uow_factory, self.merchant_id, self.token, None, KEY_REJECTED, clock=self.clock
            )
            self.stopped = True
            return 0
        except ListNotFound:
            await _fail(
                self.uow_factory, self.merchant_id, self.token, None, LIST_GONE, clock=self.clock
            )
            self.stopped = True
            return 0
        written = [s.customer_id for s in known] + [i for ids, _ in added for i in ids]
        inserted_ids = [i for ids, inserted in added if inserted for i in ids]
        await self._settle(written + gone, inserted_ids, [address.id for address in old])
        return len(written)

    @retried_on_conflict
    async def _settle(
        self, settled: list[CustomerId], added: list[CustomerId], old_ids: list[int]
    ) -> None:
        """One statement for the whole claim: its rows are taken in one order; the old
        addresses cleared with it are forgotten in the same transaction."""
        async with self.uow_factory() as uow:
            now = self.clock.now()
            await uow.contacts.settle(
                self.merchant_id, settled, token=self.token, added=added, at=now
            )
            await uow.contacts.forget_old_addresses(self.merchant_id, old_ids, at=now)
            await uow.ecomail.record_success(self.merchant_id, at=now)
            await uow.commit()

    async def _clear(self, emails: list[str]) -> None:
        """Empty the fields of addresses no customer holds; a rejected call is split until the
        refused addresses are alone, and those are given up (logged)."""
        for start in range(0, len(emails), BULK_LIMIT):
            await self._clear_some(emails[start : start + BULK_LIMIT])

    async def _clear_some(self, emails: list[str]) -> None:
        if not emails:
            return
        try:
            await self.link.platform.update_contacts(
                self.link.list_id, [cleared_contact(email) for email in emails]
            )
        except ListNotFound:
            raise
        except MarketingRejected as exc:
            if len(emails) == 1:
                logger.warning(
                    "Ecomail refused to clear an old address of merchant %s: %s",
                    self.merchant_id,
                    exc,
                )
                return
            half = len(emails) // 2
            await self._clear_some(emails[:half])
            await self._clear_some(emails[half:])

    async def _update(self, contacts: list[ContactSnapshot]) -> bool:
        """Update contacts in the list; False when not all of them were updated."""
        try:
            updated = await self.link.platform.update_contacts(
                self.link.list_id, [contact_data(s) for s in contacts]
            )
        except ListNotFound:
            raise
        except MarketingRejected:
            return False
        return updated >= len(contacts)

    async def _add(self, contacts: list[ContactSnapshot]) -> list[tuple[list[CustomerId], bool]]:
        """Add (or update) contacts; a rejected call is split until the refused contacts are
        alone, and those are failed with Ecomail's reason. Returns the written groups with
        whether their call added anyone."""
        if not contacts:
            return []
        try:
            inserts = await self.link.platform.add_contacts(
                self.link.list_id, [contact_data(s) for s in contacts]
            )
        except ListNotFound:
            raise
        except MarketingRejected as exc:
            if len(contacts) == 1:
                await _fail(
                    self.uow_factory,
                    self.merchant_id,
                    self.token,
                    [contacts[0].customer_id],
                    f"Ecomail refused the contact: {exc}",
                    clock=self.clock,
                )
                return []
            half = len(contacts) // 2
            return await self._add(contacts[:half]) + await self._add(contacts[half:])
        return [([s.customer_id for s in contacts], inserts > 0)]

    async def _release(self, error: str, retry_after: float | None) -> None:
        async with self.uow_factory() as uow:
            now = self.clock.now()
            attempts = await uow.contacts.attempts(self.merchant_id, token=self.token) + 1
            wait = CONTACT_RETRY.delay(attempts, item_id=self.merchant_id)
            if retry_after is not None:
                wait = max(wait, timedelta(seconds=retry_after))
            await uow.contacts.release(
                self.merchant_id,
                token=self.token,
                error=clip_error(error),
                retry_at=now + wait,
                at=now,
            )
            await uow.commit()
        logger.warning(
            "Ecomail contacts of merchant %s wait %.0f s: %s",
            self.merchant_id,
            wait.total_seconds(),
            error,
        )


def _distinct(addresses: Sequence[OldAddress]) -> list[str]:
    """Each address once (two customers may have left the same one), in a stable order."""
    seen: dict[str | None, str] = {}
    for address in sorted(addresses, key=lambda a: a.id):
        seen.setdefault(email_key(address.email), address.email)
    return list(seen.values())


async def _fail(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    token: str,
    customer_ids: list[CustomerId] | None,
    error: str,
    *,
    clock: Clock,
) -> None:
    async with uow_factory() as uow:
        await uow.contacts.fail(
            merchant_id, customer_ids, token=token, error=clip_error(error), at=clock.now()
        )
        await uow.commit()
    logger.error("Ecomail contacts of merchant %s failed: %s", merchant_id, error)
