"""A customer's marketing consent changing (rules: ``domain.model.consent``).

``record_consent`` runs in the caller's transaction, with the customer locked: the customer's
consent and its history line are stored together, and what Ecomail must hear of it is
recorded with them:

- the contact is marked for writing: whether Ellity may add it to the list depends on the
  consent, so a customer who granted it is added by the next sync;
- a refusal reported by the e-shop or staff makes the contact's unsubscription due (the sync
  carries it out), and the newsletter reward is taken back as for any unsubscription when
  "take back on unsubscribe" is on. A refusal Ecomail reported *is* an unsubscription: the
  notification's processing takes the reward back itself, and nothing is sent to Ecomail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from ellity.domain.model.consent import ConsentChange, ConsentSource, MarketingConsent
from ellity.domain.model.customer import Customer
from ellity.domain.model.ledger import Ledger
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.newsletter import RewardHold, Verdict, take_back_reward
from ellity.domain.services import notifications
from ellity.domain.services.common import customer_id_of, merchant_id_of
from ellity.ports.storage import UnitOfWork


async def record_consent(
    uow: UnitOfWork,
    merchant: Merchant,
    customer: Customer,
    consent: MarketingConsent,
    source: ConsentSource,
    *,
    at: datetime,
) -> ConsentChange | None:
    """Set the (stored, locked) customer's consent; the history line, or ``None`` when the
    consent was that already."""
    change = customer.set_consent(consent, source, at=at)
    if change is None:
        return None
    await uow.customers.update(customer)
    await consent_changed(uow, merchant, customer, change)
    return change


async def consent_changed(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, change: ConsentChange
) -> None:
    """What follows a consent change (``Customer.set_consent``) of a customer the caller has
    written back already: its history line, and what Ecomail must hear of it."""
    merchant_id, customer_id = merchant_id_of(merchant), customer_id_of(customer)
    at = change.at
    await uow.customers.record_consent_change(change)
    refused_here = (
        change.consent is MarketingConsent.REFUSED and change.source is not ConsentSource.ECOMAIL
    )
    if (
        refused_here
        and customer.email is not None
        and await uow.ecomail.active_list(merchant_id) is not None
    ):
        await uow.contacts.request_unsubscribe(merchant_id, customer_id, at=at)
    else:
        await notifications.contact_changed(uow, merchant, customer, at=at)
    if refused_here:
        await apply_take_back(uow, merchant, customer, at=at)


async def apply_take_back(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, *, at: datetime
) -> Verdict:
    """The newsletter reward's take-back rule, as for an unsubscription Ecomail confirmed."""
    take_back = merchant.settings.newsletter_take_back

    def rule(hold: RewardHold, ledger: Ledger) -> Verdict:
        return take_back_reward(hold, ledger, take_back=take_back, at=at)

    return await apply_reward_rule(uow, merchant, customer, rule, at=at)


async def apply_reward_rule(
    uow: UnitOfWork,
    merchant: Merchant,
    customer: Customer,
    rule: Callable[[RewardHold, Ledger], Verdict],
    *,
    at: datetime,
) -> Verdict:
    """A newsletter reward rule applied to the (locked) customer's hold and ledger, read here:
    the ledger entry it makes is stored with its contact re-sync and ``credit`` event, and the
    hold is saved when it changed."""
    merchant_id, customer_id = merchant_id_of(merchant), customer_id_of(customer)
    hold = await uow.newsletter.reward_hold(merchant_id, customer_id)
    before = dataclasses.replace(hold)
    ledger = await uow.ledgers.get(merchant_id, customer_id, merchant.settings.expiry_policy)
    verdict = rule(hold, ledger)
    if verdict.entry is not None:
        entries = list(ledger.new_entries)  # an expiry the change recorded first, then it
        await uow.ledgers.save(merchant_id, ledger, at=at)
        await notifications.points_changed(uow, merchant, customer, ledger, entries)
    if hold != before:
        await uow.newsletter.save_reward_hold(merchant_id, customer_id, hold, at=at)
    return verdict
