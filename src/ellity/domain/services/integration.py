"""Connecting a merchant to Ecomail: the key, the list, activation, and the sync's health.

Activation (PRODUCT §2): the key is checked against Ecomail before it is stored (encrypted);
the merchant picks a list from the account's lists; activating writes one real contact with
all eleven ``ellity_*`` fields and their types (Ecomail creates a field when a contact is
first written with it), reads the list back to confirm the fields, and only then stores the
integration as active and starts the backfill of every customer. The contact written is the
first customer Ellity may add under the merchant's ``ecomail_add`` (the attempt recorded
before the add, as the sync does); when there is none, the first customer with an email is
only updated (a member gets the fields; nobody is subscribed), and when that person is not a
member the integration is activated without the fields confirmed: they are created with the
first customer the sync writes. A field of the same name with another type blocks it. A
failure leaves the integration as it was (only an add attempt may stay recorded) and raises
an error the pages can explain: ``InvalidApiKey``,
``MarketingUnavailable`` / ``MarketingRateLimited``, ``ListNotFound``, ``FieldsNotConfirmed``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ellity.domain.model.consent import (
    ConsentCounts,
    EcomailAdd,
    MarketingConsent,
    MembershipPlan,
    may_add,
    membership_plan,
    parse_ecomail_add,
)
from ellity.domain.model.contact import ContactSnapshot
from ellity.domain.model.errors import Conflict, InvalidInput
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.integration import (
    EcomailIntegration,
    IntegrationNotReady,
    clean_api_key,
    field_problems,
    key_hint,
)
from ellity.domain.model.outbox import DeliveryHealth, FailedDelivery
from ellity.domain.services import notifications
from ellity.domain.services.common import load_merchant, snapshots_of, today_of
from ellity.domain.services.contact_sync import contact_data, record_add_attempts
from ellity.ports.clock import Clock
from ellity.ports.marketing import (
    ContactList,
    InvalidApiKey,
    ListNotFound,
    MarketingError,
    MarketingPlatform,
    MarketingPlatforms,
    MarketingRateLimited,
    MarketingUnavailable,
)
from ellity.ports.secrets import SecretBox, SecretUnreadable
from ellity.ports.storage import (
    ContactSyncFailure,
    ContactSyncHealth,
    SentEvent,
    UnitOfWorkFactory,
)

FAILURES_SHOWN = 20
EVENTS_SHOWN = 100  # the events sent last, on the integration page


class FieldsNotConfirmed(Conflict):
    code = "fields_not_confirmed"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "Ecomail did not confirm the Ellity fields on this list (%(problems)s). A field of"
            " the same name with another type blocks it: delete or rename that field in Ecomail"
            " (list → custom fields), then activate again.",
            problems="; ".join(problems),
        )
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Activation:
    list_id: str
    list_name: str
    # False: no customer was written (none Ellity may add, and the first one with an email is
    # not a member): the fields are created with the first customer the sync writes
    fields_confirmed: bool


@dataclass(frozen=True, slots=True)
class IntegrationPage:
    integration: EcomailIntegration | None
    contacts: ContactSyncHealth
    failures: list[ContactSyncFailure]
    deliveries: DeliveryHealth
    failed_deliveries: list[FailedDelivery]
    send_system_emails: bool  # warn about double emails while the integration is active
    counts: ConsentCounts  # the merchant's customers by marketing consent
    plan: MembershipPlan  # what the sync does with them under the current ``ecomail_add``
    other_plans: tuple[MembershipPlan, ...]  # ... and under each of the other two choices
    sent_events: list[SentEvent]  # the events sent last, newest delivery first

    @property
    def unknown_left_out(self) -> int:
        """Customers with an email whom the current choice does not add because their
        consent is unknown (every customer from before consent was recorded)."""
        return self.counts.unknown if self.plan.setting is EcomailAdd.CONSENTED else 0

    @property
    def backfill_done(self) -> int:
        """Contacts of the backfill written so far (never below zero while marking)."""
        backfill = self.integration.backfill if self.integration else None
        if backfill is None:
            return 0
        return max(0, backfill.marked - self.contacts.pending - self.contacts.failed)


WHERE_THE_KEY_IS = "Ecomail → account management → For developers"
REFUSED = "Ecomail refused the request"


def retry_wait(error: MarketingRateLimited) -> int:
    """Whole seconds to wait before asking Ecomail again."""
    return max(1, math.ceil(error.retry_after or 60))


def failure_message(error: MarketingError) -> str:
    """What a merchant reads when a call to Ecomail fails while they wait for it (the pages,
    ``ellity ecomail``), and what to do about it."""
    if isinstance(error, InvalidApiKey):
        return f"Ecomail did not accept this API key: copy it again from {WHERE_THE_KEY_IS}."
    if isinstance(error, MarketingRateLimited):
        wait = retry_wait(error)
        return f"Ecomail is rate-limiting requests; try again in {wait} second{'s' * (wait != 1)}."
    if isinstance(error, MarketingUnavailable):
        # the adapter's reason without its advice for background jobs ("…; Ellity will try
        # again."): here the merchant is the one who tries again
        reason = str(error).split(";", 1)[0].strip().rstrip(".") or "no answer"
        return f"Ecomail cannot be reached right now ({reason}); try again in a few minutes."
    if isinstance(error, ListNotFound):
        return "The list no longer exists in Ecomail: refresh the lists and choose another."
    said = str(error).strip().rstrip(".") or type(error).__name__
    if said.startswith(REFUSED):  # the adapter says it already, with the HTTP status
        return f"{said}."
    return f"{REFUSED}: {said}."


def _platform(
    platforms: MarketingPlatforms, merchant_id: MerchantId, key: str
) -> MarketingPlatform:
    return platforms.for_key(key, account=f"merchant-{merchant_id}")


async def connect_ecomail(
    merchant_id: MerchantId,
    api_key: str,
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    clock: Clock,
) -> list[ContactList]:
    """Check the key with Ecomail and store it (encrypted); returns the account's lists.
    A key that does not work is not stored."""
    key = clean_api_key(api_key)
    async with uow_factory(read_only=True) as uow:
        await load_merchant(uow, merchant_id)
    platform = _platform(platforms, merchant_id, key)
    await platform.check_key()
    lists = await platform.lists()
    async with uow_factory() as uow:
        await uow.ecomail.save_key(
            merchant_id, encrypted=secret_box.encrypt(key), hint=key_hint(key), at=clock.now()
        )
        await uow.commit()
    return lists


async def _stored_platform(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
) -> MarketingPlatform:
    async with uow_factory(read_only=True) as uow:
        await load_merchant(uow, merchant_id)
        encrypted = await uow.ecomail.api_key(merchant_id)
    if encrypted is None:
        raise IntegrationNotReady("Enter the Ecomail API key first.")
    try:
        key = secret_box.decrypt(encrypted)
    except SecretUnreadable:
        raise IntegrationNotReady(
            "The stored API key cannot be decrypted (was ELLITY_SECRET_KEY changed?);"
            " enter the key again."
        ) from None
    return _platform(platforms, merchant_id, key)


async def ecomail_lists(
    merchant_id: MerchantId,
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
) -> list[ContactList]:
    """The lists of the account the stored key opens, fetched now."""
    platform = await _stored_platform(
        merchant_id, uow_factory=uow_factory, platforms=platforms, secret_box=secret_box
    )
    return await platform.lists()


async def _first_contact(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, clock: Clock
) -> tuple[ContactSnapshot | None, bool]:
    """The customer activation writes: the first one Ellity may add to the list (``True``),
    else the first one with an email (``False``: only updated, never added); ``None`` when
    no customer has an email."""
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        setting = merchant.settings.ecomail_add
        addable = [consent for consent in MarketingConsent if may_add(setting, consent)]
        customer_id = await uow.contacts.first_customer(merchant_id, consents=addable)
        adds = customer_id is not None
        if customer_id is None:
            customer_id = await uow.contacts.first_customer(merchant_id)
        if customer_id is None:
            return None, False
        rows = await uow.ledgers.loyalty(
            merchant_id, [customer_id], today=today_of(merchant, clock)
        )
    snapshots = [s for s in snapshots_of(merchant, rows) if s.email]
    return (snapshots[0], adds) if snapshots else (None, False)


async def activate_ecomail(
    merchant_id: MerchantId,
    list_id: str,
    *,
    uow_factory: UnitOfWorkFactory,
    platforms: MarketingPlatforms,
    secret_box: SecretBox,
    clock: Clock,
) -> Activation:
    """Make sure the list has the Ellity fields, then activate and start the backfill."""
    list_id = list_id.strip()
    if not list_id or len(list_id) > 32:
        raise IntegrationNotReady("Choose the Ecomail list to keep the loyalty fields in.")
    platform = await _stored_platform(
        merchant_id, uow_factory=uow_factory, platforms=platforms, secret_box=secret_box
    )
    detail = await platform.list_detail(list_id)
    first, adds = await _first_contact(uow_factory, merchant_id, clock)
    inserted = updated = 0
    if first is not None:
        if adds:

            async def attempted() -> None:
                await record_add_attempts(
                    uow_factory, merchant_id, [first.customer_id], clock=clock
                )

            inserted = await platform.add_contacts(
                list_id, [contact_data(first)], before_send=attempted
            )
        else:  # a member gets the fields (which creates them); nobody is subscribed
            updated = await platform.update_contacts(list_id, [contact_data(first)])
        detail = await platform.list_detail(list_id)
    written = adds or updated > 0
    problems = field_problems(detail.custom_fields, missing=written)
    if problems:
        raise FieldsNotConfirmed(problems)
    confirmed = written or not field_problems(detail.custom_fields)
    now = clock.now()
    async with uow_factory() as uow:
        await uow.ecomail.activate(merchant_id, list_id=list_id, list_name=detail.name, at=now)
        if first is not None and written:
            await uow.contacts.record_written(
                merchant_id, first.customer_id, added_at=now if inserted else None, at=now
            )
            await uow.ecomail.record_success(merchant_id, at=now)
        await uow.commit()
    return Activation(list_id=list_id, list_name=detail.name, fields_confirmed=confirmed)


async def deactivate_ecomail(
    merchant_id: MerchantId, *, uow_factory: UnitOfWorkFactory, clock: Clock
) -> None:
    """Stop all traffic to Ecomail; the key stays stored for a later activation."""
    async with uow_factory() as uow:
        await load_merchant(uow, merchant_id)
        await uow.ecomail.deactivate(merchant_id, at=clock.now())
        await uow.commit()


async def repush_all(
    merchant_id: MerchantId, *, uow_factory: UnitOfWorkFactory, clock: Clock
) -> None:
    """Write every customer's contact again (a new backfill)."""
    async with uow_factory() as uow:
        integration = await uow.ecomail.get(merchant_id)
        if integration is None or not integration.active:
            raise IntegrationNotReady("Activate the Ecomail integration first.")
        await uow.ecomail.request_backfill(merchant_id, at=clock.now())
        await uow.commit()


async def retry_failed_sync(
    merchant_id: MerchantId, *, uow_factory: UnitOfWorkFactory, clock: Clock
) -> int:
    """Make failed contacts and failed deliveries pending again; returns how many."""
    async with uow_factory() as uow:
        await load_merchant(uow, merchant_id)
        now = clock.now()
        count = await uow.contacts.retry_failed(merchant_id, at=now)
        count += await uow.outbox.retry_failed(merchant_id, None, at=now)
        await uow.commit()
    return count


@dataclass(frozen=True, slots=True)
class AddingChosen:
    setting: EcomailAdd
    backfill: bool  # every contact is written again, adding the newly allowed customers


async def choose_ecomail_add(
    merchant_id: MerchantId, value: str, *, uow_factory: UnitOfWorkFactory, clock: Clock
) -> AddingChosen:
    """Save whom Ellity adds to the Ecomail list (``ecomail_add``). A choice that lets Ellity
    add customers it did not add before requests a backfill while the integration is active,
    so they are added now rather than at their next change; a narrower one needs none (the
    sync adds nobody it no longer may, and never removes anyone it added)."""
    try:
        setting = parse_ecomail_add(value)
    except InvalidInput:
        raise InvalidInput(
            "Choose who Ellity adds to your Ecomail list: only customers who gave marketing"
            " consent, every customer except refusals, or nobody. Nothing was changed."
        ) from None
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, merchant_id)
        before = dataclasses.replace(merchant)
        merchant.settings = dataclasses.replace(merchant.settings, ecomail_add=setting)
        await uow.merchants.update_settings(merchant_id, merchant.settings)
        backfill = await notifications.settings_changed(uow, merchant, before, at=clock.now())
        await uow.commit()
    return AddingChosen(setting=setting, backfill=backfill)


async def integration_page(
    merchant_id: MerchantId, *, uow_factory: UnitOfWorkFactory
) -> IntegrationPage:
    async with uow_factory(read_only=True) as uow:
        merchant = await load_merchant(uow, merchant_id)
        counts = await uow.views.consent_counts(merchant_id)
        current = merchant.settings.ecomail_add
        return IntegrationPage(
            integration=await uow.ecomail.get(merchant_id),
            contacts=await uow.views.contact_sync_health(merchant_id),
            failures=await uow.views.contact_sync_failures(merchant_id, limit=FAILURES_SHOWN),
            deliveries=await uow.views.delivery_health(merchant_id),
            failed_deliveries=await uow.views.failed_deliveries(merchant_id, limit=FAILURES_SHOWN),
            send_system_emails=merchant.settings.send_system_emails,
            counts=counts,
            plan=membership_plan(current, counts),
            other_plans=tuple(
                membership_plan(other, counts) for other in EcomailAdd if other is not current
            ),
            sent_events=await uow.views.sent_events(merchant_id, limit=EVENTS_SHOWN),
        )
