"""Setting a customer's marketing consent and the merchant's ``ecomail_add`` in service tests,
through the use case and the repositories (not the store's state)."""

from __future__ import annotations

import dataclasses

from ellity.domain.model.consent import ConsentSource, EcomailAdd, MarketingConsent
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.services.common import load_customer, load_merchant
from ellity.domain.services.consent import record_consent
from ellity.ports.clock import Clock
from ellity.ports.storage import UnitOfWorkFactory


async def set_consent(
    uow_factory: UnitOfWorkFactory,
    merchant_id: MerchantId,
    customer_id: CustomerId,
    consent: MarketingConsent,
    *,
    clock: Clock,
    source: ConsentSource = ConsentSource.API,
) -> None:
    """The customer's consent becomes ``consent`` (as the e-shop or staff set it)."""
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, merchant_id)
        customer = await load_customer(uow, merchant_id, customer_id, for_update=True)
        await record_consent(uow, merchant, customer, consent, source, at=clock.now())
        await uow.commit()


async def set_ecomail_add(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, setting: EcomailAdd
) -> None:
    async with uow_factory() as uow:
        merchant = await load_merchant(uow, merchant_id)
        settings = dataclasses.replace(merchant.settings, ecomail_add=setting)
        await uow.merchants.update_settings(merchant_id, settings)
        await uow.commit()
