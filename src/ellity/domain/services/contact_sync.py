"""Writing customers' contact fields to their merchant's Ecomail list (live sync and backfill).

Use cases mark a customer's contact pending in the transaction of the change
(``notifications``); a backfill marks every customer with an email (``contact_backfill``);
a refusal of marketing consent by the e-shop or staff marks it with its unsubscription due
(``consent``). The worker then, per merchant:

1. claims up to ``BULK_LIMIT`` pending contacts (exclusive across workers, with a lease);
2. reads the customers as they are now, with their marketing consent, in one query, so many
   changes cost one write;
3. sorts them by the merchant's ``ecomail_add`` setting (``domain.model.consent.may_add``):
   - a customer Ellity may add: the contacts Ellity wrote before are updated with one bulk
     update, the others added with one bulk add (which updates those that turn out to exist
     and never re-subscribes anyone who unsubscribed); when the update touched fewer
     contacts than it sent (someone deleted them in Ecomail), the same contacts are sent
     through the add as well. Right before every add call is sent (each half of a split
     one too), once the request budget lets it go, the attempt is recorded and committed
     (``record_add_attempts``, as the call's ``before_send``), so that Ellity knows its
     own add even when Ecomail processed it and the answer was lost: the ``SUBSCRIBED``
     notification it causes is Ellity's echo, not the person's sign-up;
   - a customer Ellity may not add (no consent under ``consented``, a refusal, or ``none``):
     one bulk update only, which writes the fields of a contact that is a member already
     (keeping its status) and adds nobody; such a contact is never recorded as in the list
     by this;
   - a customer who refused, with the contact's unsubscription due: the contact is
     unsubscribed from the list, one call per contact (the only status change Ellity makes;
     a contact not in the list has nothing to undo), and its fields are still updated. When
     the consent is no longer refused by the time the claim is written, the due
     unsubscription is dropped: the latest wish counts;
4. clears the addresses these customers moved away from (their email changed) and no
   customer holds now, with a bulk update of empty ``ellity_*`` fields: an update never adds
   a contact nor changes its status, and while this claim holds the customer no other
   worker can still be writing their fields to the old address;
5. settles them in one statement: the contacts written by the add or a full update are in
   the list from now on, the unsubscriptions done are no longer due, and a contact that
   changed while it was being written (its consent, say) stays pending with what was due.

Waiting for Ellity's request budget for the account (``BudgetExhausted``: nothing was sent)
is not a failure: the claim's contacts are pending again when a slot frees up, without an
attempt or an error recorded, however long the backlog. Failures: Ecomail unavailable or
rate-limited → the claim's contacts wait and are retried with backoff (never given up: they
are not lost; the attempts recorded stay); a rejected bulk call
is split in halves until the contacts Ecomail refuses are isolated, and those are recorded as
failed with Ecomail's reason, as is a contact Ecomail refuses to unsubscribe; a wrong key or a
deleted list fails the claim's contacts with what to do. Failed contacts are retried by the
merchant (or by their next change).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.consent import EcomailAdd, MarketingConsent, may_add
from ellity.domain.model.contact import (
    FIELD_TYPES,
    ContactSnapshot,
    CustomerLoyalty,
    cleared_fields,
)
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
from ellity.domain.services.work_loop import (
    CLAIM_LEASE,
    RUNNING,
    Handled,
    Pace,
    Stopping,
    work_through,
)
from ellity.ports.clock import Clock
from ellity.ports.marketing import (
    BULK_LIMIT,
    BudgetExhausted,
    ContactData,
    InvalidApiKey,
    ListNotFound,
    MarketingPlatforms,
    MarketingRejected,
    MarketingUnavailable,
    TypedValue,
)
from ellity.ports.operations import DELIVERED, DELIVERIES, FAILED, RETRIED, WorkCounters
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import ClaimedContact, OldAddress, UnitOfWork, UnitOfWorkFactory
from ellity.ports.storage.claims import ClaimKeeping

logger = logging.getLogger(__name__)

CONTACTS = "ecomail_contacts"  # the kind counted in ``DELIVERIES``
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


@retried_on_conflict
async def record_add_attempts(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_ids: list[CustomerId],
    *,
    clock: Clock,
) -> None:
    """Record, committed, that Ellity is about to add these contacts: call it before every
    add call, so that the attempt is known even when the answer is lost (Ecomail may have
    processed the add, and its ``SUBSCRIBED`` notification is then Ellity's echo)."""
    async with uow_factory() as uow:
        await uow.contacts.record_add_attempts(merchant_id, customer_ids, at=clock.now())
        await uow.commit()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one claim's contacts get, by the merchant's ``ecomail_add`` and each customer's
    consent (every list in customer id order)."""

    known: list[ContactSnapshot]  # may be added, written before: updated (added if missing)
    new: list[ContactSnapshot]  # may be added, not known to be in the list: added
    update_only: list[ContactSnapshot]  # may not be added: fields only, if a member
    unsubscribe: list[ContactSnapshot]  # refused, unsubscription due
    unsubscribe_dropped: list[CustomerId]  # due, but consent no longer refused (or no email)
    gone: list[CustomerId]  # no email any more (or deleted): nothing to write


def _plan(
    setting: EcomailAdd,
    claimed: Sequence[ClaimedContact],
    rows: Sequence[CustomerLoyalty],
    snapshots: Sequence[ContactSnapshot],
) -> _Plan:
    consent = {row.customer_id: row.marketing_consent for row in rows}
    written = {s.customer_id: s for s in snapshots if s.email}
    in_list = {c.customer_id for c in claimed if c.in_list}
    eligible = {i for i in written if may_add(setting, consent[i])}
    due = {c.customer_id for c in claimed if c.unsubscribe}
    refused = {i for i in written if consent[i] is MarketingConsent.REFUSED}
    ordered = sorted(written.items())
    return _Plan(
        known=[s for i, s in ordered if i in eligible and i in in_list],
        new=[s for i, s in ordered if i in eligible and i not in in_list],
        update_only=[s for i, s in ordered if i not in eligible],
        unsubscribe=[s for i, s in ordered if i in due & refused],
        unsubscribe_dropped=sorted(due - refused),
        gone=sorted(c.customer_id for c in claimed if c.customer_id not in written),
    )


async def sync_contacts(
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    clock: Clock,
    worker_token: str,
    max_batches: int = 1000,
    lease: timedelta = CLAIM_LEASE,
    counters: WorkCounters | None = None,
    stopping: Stopping = RUNNING,
) -> int:
    """Write the pending contacts of every merchant with an active integration; returns how
    many were written. Stops a merchant's run at its first failure (what is left waits).
    ``counters`` count the contacts written, and those left to retry or failed
    (``DELIVERIES``, kind ``CONTACTS``)."""
    await mark_backfills(uow_factory=uow_factory, clock=clock)
    async with uow_factory(read_only=True) as uow:
        merchant_ids = await uow.contacts.due_merchants(now=clock.now())
    written = 0
    for merchant_id in merchant_ids:
        if stopping.is_set():
            break
        written += await sync_merchant(
            merchant_id,
            uow_factory=uow_factory,
            platforms=platforms,
            secret_box=secret_box,
            clock=clock,
            worker_token=worker_token,
            max_batches=max_batches,
            lease=lease,
            counters=counters,
            stopping=stopping,
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
    lease: timedelta = CLAIM_LEASE,
    counters: WorkCounters | None = None,
    stopping: Stopping = RUNNING,
) -> int:
    """``lease``: how long a claim holds its contacts without being renewed; a worker that
    dies holding some leaves them to be taken over when it runs out."""
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
    contacts = _Contacts(merchant_id, link, uow_factory, clock, counters=counters)
    return await work_through(
        contacts,
        uow_factory=uow_factory,
        clock=clock,
        worker_token=worker_token,
        pace=pace,
        stopping=stopping,
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
    counters: WorkCounters | None = None

    async def claim(
        self, uow: UnitOfWork, token: str, *, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[ClaimedContact]:
        return await uow.contacts.claim(
            self.merchant_id, token=token, now=now, lease=lease, limit=limit
        )

    def claims(self, uow: UnitOfWork) -> ClaimKeeping:
        return uow.contacts

    async def handle(
        self, token: str, claimed: Sequence[ClaimedContact], stopping: Stopping
    ) -> Handled:
        if self.link is None:
            await _fail(
                self.uow_factory, self.merchant_id, token, None, KEY_UNREADABLE, clock=self.clock
            )
            self._count(FAILED, len(claimed))
            return Handled(0, stop=True)
        batch = _Batch(self.merchant_id, token, self.link, self.uow_factory, self.clock)
        written = await batch.write(claimed)
        self._count(DELIVERED, written)
        self._count(FAILED, len(batch.failed))
        if batch.stopped:
            left = len(claimed) - written - len(batch.failed)
            self._count(FAILED if batch.gave_up else RETRIED, left)
        return Handled(written, stop=batch.stopped)

    def _count(self, outcome: str, contacts: int) -> None:
        if contacts > 0 and self.counters is not None:
            self.counters.add(DELIVERIES, contacts, kind=CONTACTS, outcome=outcome)


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
        self.gave_up = False  # stopped for good: the key or the list is wrong
        self.failed: set[CustomerId] = set()

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
        plan = _plan(merchant.settings.ecomail_add, claimed, rows, snapshots_of(merchant, rows))
        try:
            unsubscribed = await self._unsubscribe(plan.unsubscribe)
            known, new = plan.known, plan.new
            if known and not await self._update(known):
                # some were deleted in Ecomail (or one was refused): the add path puts them
                # back and isolates any contact Ecomail refuses
                new, known = sorted(new + known, key=lambda s: s.customer_id), []
            added = await self._add(new)
            kept = await self._update_only(
                [s for s in plan.update_only if s.customer_id not in self.failed]
            )
            await self._clear(_distinct(old))
        except BudgetExhausted as exc:
            await self._wait_for_budget(exc)
            self.stopped = True
            return 0
        except MarketingUnavailable as exc:
            await self._release(str(exc), exc.retry_after)
            self.stopped = True
            return 0
        except InvalidApiKey:
            await _fail(
                self.uow_factory, self.merchant_id, self.token, None, KEY_REJECTED, clock=self.clock
            )
            self.stopped = self.gave_up = True
            return 0
        except ListNotFound:
            await _fail(
                self.uow_factory, self.merchant_id, self.token, None, LIST_GONE, clock=self.clock
            )
            self.stopped = self.gave_up = True
            return 0
        members = [s.customer_id for s in known] + [i for ids, _ in added for i in ids]
        inserted_ids = [i for ids, inserted in added if inserted for i in ids]
        await self._settle(
            members + kept + plan.gone,
            members,
            inserted_ids,
            unsubscribed + plan.unsubscribe_dropped,
            [address.id for address in old],
        )
        return len(members) + len(kept)

    @retried_on_conflict
    async def _settle(
        self,
        settled: list[CustomerId],
        members: list[CustomerId],
        added: list[CustomerId],
        unsubscribed: list[CustomerId],
        old_ids: list[int],
    ) -> None:
        """One statement for the whole claim: its rows are taken in one order; the old
        addresses cleared with it are forgotten in the same transaction."""
        async with self.uow_factory() as uow:
            now = self.clock.now()
            await uow.contacts.settle(
                self.merchant_id,
                settled,
                token=self.token,
                members=members,
                added=added,
                unsubscribed=unsubscribed,
                at=now,
            )
            await uow.contacts.forget_old_addresses(self.merchant_id, old_ids, at=now)
            await uow.ecomail.record_success(self.merchant_id, at=now)
            await uow.commit()

    async def _unsubscribe(self, contacts: list[ContactSnapshot]) -> list[CustomerId]:
        """Unsubscribe the contacts of customers who refused marketing, one call each (they
        are few); a contact not in the list has nothing to undo. A contact Ecomail refuses to
        unsubscribe is failed with Ecomail's reason. Returns those done."""
        done = []
        for snapshot in contacts:
            if snapshot.email is None:  # never: planned from snapshots with an email
                continue
            try:
                await self.link.platform.unsubscribe_contact(self.link.list_id, snapshot.email)
            except ListNotFound:
                raise
            except MarketingRejected as exc:
                await self._fail_one(
                    snapshot.customer_id, f"Ecomail refused to unsubscribe the contact: {exc}"
                )
                continue
            done.append(snapshot.customer_id)
        return done

    async def _fail_one(self, customer_id: CustomerId, error: str) -> None:
        await _fail(
            self.uow_factory, self.merchant_id, self.token, [customer_id], error, clock=self.clock
        )
        self.failed.add(customer_id)

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

    async def _update_only(self, contacts: list[ContactSnapshot]) -> list[CustomerId]:
        """Write the fields of contacts Ellity may not add: members get them, the others are
        not added (an update never adds anyone nor changes a status). A rejected call is
        split until the refused contacts are alone, and those are failed with Ecomail's
        reason. Returns those written (or found not to be members)."""
        if not contacts:
            return []
        try:
            await self.link.platform.update_contacts(
                self.link.list_id, [contact_data(s) for s in contacts]
            )
        except ListNotFound:
            raise
        except MarketingRejected as exc:
            if len(contacts) == 1:
                await self._fail_one(contacts[0].customer_id, f"Ecomail refused the contact: {exc}")
                return []
            half = len(contacts) // 2
            return await self._update_only(contacts[:half]) + await self._update_only(
                contacts[half:]
            )
        return [s.customer_id for s in contacts]

    async def _add(self, contacts: list[ContactSnapshot]) -> list[tuple[list[CustomerId], bool]]:
        """Add (or update) contacts, each call recorded as an attempt first; a rejected call
        is split until the refused contacts are alone, and those are failed with Ecomail's
        reason. Returns the written groups with whether their call added anyone."""
        if not contacts:
            return []
        ids = [s.customer_id for s in contacts]

        async def attempted() -> None:
            await record_add_attempts(self.uow_factory, self.merchant_id, ids, clock=self.clock)

        try:
            inserts = await self.link.platform.add_contacts(
                self.link.list_id, [contact_data(s) for s in contacts], before_send=attempted
            )
        except ListNotFound:
            raise
        except MarketingRejected as exc:
            if len(contacts) == 1:
                await self._fail_one(contacts[0].customer_id, f"Ecomail refused the contact: {exc}")
                return []
            half = len(contacts) // 2
            return await self._add(contacts[:half]) + await self._add(contacts[half:])
        return [(ids, inserts > 0)]

    async def _wait_for_budget(self, exhausted: BudgetExhausted) -> None:
        async with self.uow_factory() as uow:
            until = self.clock.now() + timedelta(seconds=exhausted.retry_after)
            await uow.contacts.defer(self.merchant_id, token=self.token, until=until)
            await uow.commit()
        logger.debug("Ecomail contacts of merchant %s wait: %s", self.merchant_id, exhausted)

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
