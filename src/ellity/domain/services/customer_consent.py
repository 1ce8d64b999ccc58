"""The staff setting a customer's marketing consent on the customer's page.

What a change records (the history line, the contact's mark or its unsubscription, the
newsletter reward taken back on a refusal) is ``domain.services.consent.record_consent``'s;
the e-shop's consent comes with its customer calls (``domain.services.customers``).
"""

from __future__ import annotations

from ellity.domain.model.consent import ConsentChange, ConsentSource, MarketingConsent
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.services.common import load_customer, load_merchant, retried_on_conflict
from ellity.domain.services.consent import record_consent
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWork


@retried_on_conflict
async def set_consent(
    merchant_id: MerchantId,
    customer_id: CustomerId,
    consent: MarketingConsent,
    *,
    uow: UnitOfWork,
    clock: Clock,
) -> ConsentChange | None:
    """Staff set the customer's consent; the history line, or ``None`` when it was that
    already (nothing is recorded then)."""
    async with uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id, for_update=True)
        change = await record_consent(
            uow, merchant, customer, consent, ConsentSource.STAFF, at=clock.now()
        )
        await uow.commit()
    return change
