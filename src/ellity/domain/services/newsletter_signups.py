"""A newsletter sign-up before the customer exists (rules: ``domain.model.newsletter``).

Ecomail confirmed a subscription for an email no customer had, and the worker kept it
(``newsletter_processing``). When a customer with that email is created within
``SIGNUP_KEEP`` of the confirmation, the creation's transaction takes the sign-up (once) and
stores a pending ``SUBSCRIBED`` notification for the customer, received when the sign-up was:
the worker processes it like any other, so Ecomail is asked again whether the person is still
subscribed before their consent is recorded and the reward paid.
"""

from __future__ import annotations

from datetime import datetime

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.customer import Customer
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.newsletter import SIGNUP_KEEP, Notification, SubscriptionChange
from ellity.domain.services.common import merchant_id_of
from ellity.ports.storage import UnitOfWork


async def signup_for_new_customer(
    uow: UnitOfWork, merchant: Merchant, customer: Customer, *, at: datetime
) -> int | None:
    """In the transaction that creates ``customer``: the sign-up kept for their email becomes
    their pending notification; its id, or ``None`` when there is none to take (no email,
    marketing refused, the integration inactive, or no unused sign-up confirmed within
    ``SIGNUP_KEEP``)."""
    if customer.email is None or customer.marketing_consent is MarketingConsent.REFUSED:
        return None
    merchant_id = merchant_id_of(merchant)
    if await uow.ecomail.active_list(merchant_id) is None:
        return None
    kept = await uow.newsletter.take_signup(
        merchant_id, customer.email, since=at - SIGNUP_KEEP, at=at
    )
    if kept is None:
        return None
    subscribed = Notification(customer.email, SubscriptionChange.SUBSCRIBED, kept.list_id)
    return await uow.newsletter.enqueue(
        merchant_id, subscribed, received_at=kept.received_at, at=at
    )
