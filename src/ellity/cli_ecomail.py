"""``ellity ecomail activate | webhook-url | reconcile``: the Ecomail integration page's
activation, the newsletter webhook's URL, and a reconciliation of the list, from the command
line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ellity.bootstrap import build_deps
from ellity.domain.model.errors import DomainError
from ellity.domain.services import integration, merchants, newsletter_intake, reconciliation
from ellity.domain.services.common import merchant_id_of
from ellity.ports.marketing import MarketingError
from ellity.ports.storage.reconciliation import Phase, ReconciliationRun, Trigger
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


FOLLOW_EVERY = 1.0  # seconds between looks at a run another worker holds


def progress_line(run: ReconciliationRun) -> str:
    """One line of a run's progress: members checked of those expected, repairs so far."""
    expected = run.expected or 0
    share = f" ({min(100, 100 * run.checked // expected)} %)" if expected else ""
    step = {
        Phase.READ: f"reading the list: {run.checked} of {expected} members checked{share}",
        Phase.SWEEP: f"looking for customers missing from the list (after id {run.sweep_after_id})",
        Phase.DONE: f"{run.checked} of {expected} members checked",
    }[run.phase]
    return f"{step}, {run.repairs.total} repairs, {run.api_calls} API calls"


def report(run: ReconciliationRun) -> str:
    """The finished run, as ``ellity ecomail reconcile`` prints it."""
    took = (run.finished_at or run.requested_at) - (run.started_at or run.requested_at)
    r = run.repairs
    lines = [
        f"Reconciliation {run.id} of list {run.list_id}:"
        f" {run.checked} members checked in {took.total_seconds():.1f} s,"
        f" {run.api_calls} API calls.",
        f"  fields rewritten:              {r.fields}",
        f"  customers added to the list:   {r.added}",
        f"  unsubscriptions recorded:      {r.unsubscribed}",
        f"  double opt-ins confirmed:      {r.confirmed}",
        f"  sign-ups without notification: {r.signup}",
        f"  addresses cleared:             {r.cleared}",
    ]
    if run.error is not None:
        lines.append(f"Stopped: {run.error.english()}")
    return "\n".join(lines)


async def _reconcile(settings: Settings, slug: str) -> ReconciliationRun:
    """Request a run and work on it here, printing its progress to stderr; when a worker holds
    it already, follow that worker's progress until the run is finished."""
    async with build_deps(settings) as deps:
        merchant = await merchants.merchant_by_slug(slug, uow=deps.uow(read_only=True))
        merchant_id = merchant_id_of(merchant)
        requested = await reconciliation.request_run(
            merchant_id,
            trigger=Trigger.COMMAND,
            uow_factory=deps.uow,
            clock=deps.clock,
            queue=deps.queue,
        )

        async def show(run: ReconciliationRun) -> None:
            print(progress_line(run), file=sys.stderr, flush=True)

        from ellity.worker import new_worker_token  # noqa: PLC0415 - the worker's token shape

        while True:
            await reconciliation.run_reconciliation(
                merchant_id,
                uow_factory=deps.uow,
                platforms=deps.marketing,
                secret_box=deps.secret_box,
                clock=deps.clock,
                worker_token=new_worker_token(),
                share=settings.reconcile_share,
                progress=show,
            )
            async with deps.uow(read_only=True) as uow:
                run = await uow.reconciliation.get(merchant_id, requested.run_id)
            if run is None:
                raise DomainError("The reconciliation run is gone.")
            if run.finished:
                return run
            await show(run)
            await asyncio.sleep(FOLLOW_EVERY)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.ecomail_command == "reconcile":
        try:
            finished = asyncio.run(_reconcile(settings, args.merchant))
        except DomainError as exc:
            print(f"ellity: {exc}", file=sys.stderr)
            return 2
        print(report(finished))
        return 0 if finished.error is None else 1
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
