"""The ``ellity`` command: serve, worker, migrate, create-merchant, settings, export,
run-nightly, ecomail, backup, restore."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ellity import serve
from ellity.domain.model.errors import DomainError
from ellity.settings import Settings, load_settings

# A command imports what it needs when it runs (``main``): every command starts with the
# interpreter, and ``ellity export`` does not wait for the web app's, the migrations' or
# the worker's imports.
if TYPE_CHECKING:
    from ellity.deps import Deps
    from ellity.domain.model.api_token import ApiToken
    from ellity.domain.services import nightly

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ellity", description="Ellity loyalty points.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_command = commands.add_parser("serve", help="run the web app (migrations applied first)")
    serve.add_arguments(serve_command)

    commands.add_parser("migrate", help="apply the database migrations")

    worker = commands.add_parser("worker", help="run the background worker (needs REDIS_URL)")
    worker.add_argument(
        "--burst", action="store_true", help="deliver everything due now, then exit (no Redis)"
    )

    create = commands.add_parser("create-merchant", help="a merchant and its first admin")
    create.add_argument("--slug", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--admin-email", required=True)
    create.add_argument("--admin-password", required=True)
    create.add_argument("--shop-url", default="", help="the e-shop's address (optional)")

    settings = commands.add_parser(
        "settings", help="print a merchant's settings, or set them with KEY=VALUE"
    )
    settings.add_argument("--merchant", required=True, metavar="SLUG")
    settings.add_argument("changes", nargs="*", metavar="KEY=VALUE")

    token = commands.add_parser(
        "create-api-token", help="print a new API token for the merchant's e-shop (once)"
    )
    token.add_argument("--merchant", required=True, metavar="SLUG")
    token.add_argument("--name", default="e-shop", help="what the token is for (default e-shop)")

    export = commands.add_parser("export", help="the customer CSV (stdout without --out)")
    export.add_argument("--merchant", required=True, metavar="SLUG")
    export.add_argument(
        "--out", type=Path, metavar="FILE", help="write to FILE (replaced only when complete)"
    )
    export.add_argument(
        "--format",
        choices=("ecomail", "excel"),
        default="ecomail",
        help="ecomail: the file for Ecomail's import (default); excel: for a double-click in"
        " Excel (UTF-8 with a BOM, ';' between cells, numbers in the merchant's language)",
    )
    nightly_run = commands.add_parser(
        "run-nightly", help="expire due points and send the pre-expiry notices now"
    )
    nightly_run.add_argument("--merchant", required=True, metavar="SLUG")
    _add_ecomail_commands(commands)

    backup = commands.add_parser(
        "backup", help="a consistent copy of the SQLite database, also while Ellity runs"
    )
    backup.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="the backup file (mode 600)"
    )
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    restore = commands.add_parser(
        "restore", help="replace the SQLite database with a backup (stop Ellity first)"
    )
    restore.add_argument(
        "--from", dest="source", type=Path, required=True, metavar="FILE", help="the backup"
    )
    return parser


def _with_deps(settings: Settings, use: Callable[[Deps], Awaitable[T]]) -> T:
    from ellity.bootstrap import build_deps  # noqa: PLC0415 - see the imports above

    async def run() -> T:
        async with build_deps(settings) as deps:
            return await use(deps)

    return asyncio.run(run())


def _parse_changes(pairs: Sequence[str]) -> dict[str, str]:
    changes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DomainError(f"'{pair}' is not KEY=VALUE.")
        changes[key.strip()] = value
    return changes


def _print_settings(values: dict[str, str]) -> None:
    for key, value in values.items():
        print(f"{key}={value}")


async def _create_api_token(deps: Deps, slug: str, name: str) -> tuple[ApiToken, str]:
    from ellity.domain.services import api_tokens, merchants  # noqa: PLC0415
    from ellity.domain.services.common import merchant_id_of  # noqa: PLC0415

    merchant = await merchants.merchant_by_slug(slug, uow=deps.uow(read_only=True))
    return await api_tokens.create_api_token(
        merchant_id_of(merchant), name, uow=deps.uow(), clock=deps.clock, rng=deps.rng
    )


async def _run_nightly(deps: Deps, slug: str) -> nightly.NightlyResult:
    from ellity.domain.services import merchants, nightly  # noqa: PLC0415
    from ellity.domain.services.common import merchant_id_of  # noqa: PLC0415

    merchant = await merchants.merchant_by_slug(slug, uow=deps.uow(read_only=True))
    return await nightly.run_nightly(
        merchant_id_of(merchant), uow_factory=deps.uow, clock=deps.clock
    )


def _print_nightly(slug: str, result: nightly.NightlyResult) -> None:
    expiry, notices = result.expiry, result.notices
    print(f"Nightly run for '{slug}' ({result.local_date.isoformat()}, the merchant's date):")
    print(
        f"  expiry: {expiry.customers} customer(s) lost their due points"
        f" ({expiry.recorded.events} Ecomail credit events,"
        f" {expiry.recorded.emails} emails recorded)"
    )
    if notices.skipped and not notices.notices:
        print(f"  pre-expiry: nothing sent, {notices.skipped}")
    else:
        print(
            f"  pre-expiry: {notices.notices} new notices"
            f" ({notices.recorded.events} Ecomail expiry events,"
            f" {notices.recorded.emails} emails recorded)"
        )
    print("The worker delivers what was recorded.")


def _add_ecomail_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ecomail = commands.add_parser("ecomail", help="the Ecomail integration")
    actions = ecomail.add_subparsers(dest="ecomail_command", required=True, metavar="ACTION")
    activate = actions.add_parser(
        "activate", help="check the API key, create the fields in the list, push all customers"
    )
    activate.add_argument("--merchant", required=True, metavar="SLUG")
    activate.add_argument("--api-key", required=True, metavar="KEY")
    activate.add_argument("--list-id", required=True, metavar="ID")
    webhook = actions.add_parser(
        "webhook-url", help="print the webhook URL to paste into the Ecomail list's settings"
    )
    webhook.add_argument("--merchant", required=True, metavar="SLUG")
    reconcile = actions.add_parser(
        "reconcile",
        help="compare the Ecomail list with Ellity now and repair what differs, with progress",
    )
    reconcile.add_argument("--merchant", required=True, metavar="SLUG")


def _manage(settings: Settings, args: argparse.Namespace) -> int:
    """The commands that set up and look after a merchant, and the backups."""
    # see the imports above
    from ellity import cli_backup, cli_ecomail  # noqa: PLC0415
    from ellity.adapters.sql import migrate  # noqa: PLC0415
    from ellity.domain.model.merchant import MerchantSettings  # noqa: PLC0415
    from ellity.domain.services import merchants  # noqa: PLC0415

    if args.command == "migrate":
        migrate.upgrade(settings.database_url)
        print("The database is up to date.")
    elif args.command == "create-merchant":
        migrate.upgrade(settings.database_url)
        merchant_settings = MerchantSettings(name=args.name, shop_url=args.shop_url)
        merchant = _with_deps(
            settings,
            lambda deps: merchants.create_merchant(
                slug=args.slug,
                settings=merchant_settings,
                admin_email=args.admin_email,
                admin_password=args.admin_password,
                uow=deps.uow(),
                clock=deps.clock,
                hasher=deps.hasher,
            ),
        )
        print(f"Created merchant '{merchant.slug}' with admin {args.admin_email.strip()}.")
    elif args.command == "settings":
        changes = _parse_changes(args.changes)
        if changes:
            merchant = _with_deps(
                settings,
                lambda deps: merchants.change_settings(
                    args.merchant, changes, uow=deps.uow(), clock=deps.clock
                ),
            )
        else:
            merchant = _with_deps(
                settings,
                lambda deps: merchants.merchant_by_slug(
                    args.merchant, uow=deps.uow(read_only=True)
                ),
            )
        _print_settings(merchant.settings.as_strings())
    elif args.command == "create-api-token":
        migrate.upgrade(settings.database_url)
        stored, token = _with_deps(
            settings, lambda deps: _create_api_token(deps, args.merchant, args.name)
        )
        print(token)
        print(
            f"Created API token '{stored.name}' (ending {stored.hint}) for merchant"
            f" '{args.merchant.strip()}'. It is shown only this once.",
            file=sys.stderr,
        )
    elif args.command == "run-nightly":
        migrate.upgrade(settings.database_url)
        result = _with_deps(settings, lambda deps: _run_nightly(deps, args.merchant))
        _print_nightly(args.merchant.strip(), result)
    elif args.command == "ecomail":
        migrate.upgrade(settings.database_url)
        return cli_ecomail.run(settings, args)
    elif args.command == "backup":
        return cli_backup.run_backup(settings, args.out, force=args.force)
    elif args.command == "restore":
        return cli_backup.run_restore(settings, args.source)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve.check_arguments(parser, args)
    try:
        settings = load_settings()
    except ValueError as exc:  # a deployment setting the process cannot start with
        print(f"ellity: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            return serve.serve(settings, serve.ServerOptions.from_args(args))
        elif args.command == "worker":
            from ellity import worker  # noqa: PLC0415 - only the worker needs arq

            return worker.run(settings, burst=args.burst)
        elif args.command == "export":
            from ellity.cli_export import run_export  # noqa: PLC0415 - see the imports above

            return run_export(settings, args.merchant, args.out, file_format=args.format)
        else:
            return _manage(settings, args)
    except DomainError as exc:
        print(f"ellity: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
