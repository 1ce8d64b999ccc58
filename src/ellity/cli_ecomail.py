"""``ellity ecomail activate | webhook-url``: the Ecomail integration page's activation, and
the newsletter webhook's URL, from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ellity.bootstrap import build_deps
from ellity.domain.model.errors import DomainError
from ellity.domain.services import integration, merchants, newsletter_intake
from ellity.domain.services.common import merchant_id_of
from ellity.ports.marketing import MarketingError
from ellity.settings import Settings


async def _activate(settings: Settings, slug: str, api_key: str, list_id: str) -> str:
    async with build_deps(settings) as deps:
        merchant = await merchants.merchant_by_slug(slug, uow=deps.uow(read_only=True))
        merchant_id = merchant_id_of(merchant)
        lists = await integration.connect_ecomail(
            merchant_id,
            api_key,
            uow_factory=deps.uow,
            platforms=deps.marketing,
            secret_box=deps.secret_box,
            clock=deps.clock,
        )
        if not any(item.id == list_id.strip() for item in lists):
            names = ", ".join(f"{item.id} ({item.name})" for item in lists) or "none"
            raise DomainError(f"The account has no list {list_id}; its lists: {names}.")
        done = await integration.activate_ecomail(
            merchant_id,
            list_id,
            uow_factory=deps.uow,
            platforms=deps.marketing,
            secret_box=deps.secret_box,
            clock=deps.clock,
        )
        url = await newsletter_intake.webhook_address(
            merchant_id,
            uow_factory=deps.uow,
            secret_box=deps.secret_box,
            rng=deps.rng,
            clock=deps.clock,
            base_url=settings.base_url,
        )
    fields = (
        "the Ellity fields are confirmed"
        if done.fields_confirmed
        else "the fields will be created with the first customer Ellity writes to the list"
    )
    return (
        f"Ecomail is active for '{slug}' with the list '{done.list_name}' ({done.list_id}):"
        f" {fields}; the worker now pushes every customer.\nFor the newsletter reward, paste"
        f" this webhook URL into the list's settings in Ecomail (Webhook address):\n{url}"
    )


async def _webhook_url(settings: Settings, slug: str) -> str:
    async with build_deps(settings) as deps:
        merchant = await merchants.merchant_by_slug(slug, uow=deps.uow(read_only=True))
        return await newsletter_intake.webhook_address(
            merchant_id_of(merchant),
            uow_factory=deps.uow,
            secret_box=deps.secret_box,
            rng=deps.rng,
            clock=deps.clock,
            base_url=settings.base_url,
        )


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.ecomail_command == "webhook-url":
        print(asyncio.run(_webhook_url(settings, args.merchant)))
        return 0
    try:
        message = asyncio.run(_activate(settings, args.merchant, args.api_key, args.list_id))
    except MarketingError as exc:
        print(f"ellity: {integration.failure_message(exc)}", file=sys.stderr)
        return 2
    print(message)
    return 0
