"""``python -m tests.ecomail_emulator``: the emulator on its own, for trying Ellity by hand."""

from __future__ import annotations

import argparse

import uvicorn

from tests.ecomail_emulator.emulator import Emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.ecomail_emulator", description="A local Ecomail API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument(
        "--api-key", action="append", dest="keys", help="repeatable; default demo-key"
    )
    parser.add_argument(
        "--list", action="append", dest="lists", help="repeatable; default Newsletter"
    )
    parser.add_argument("--double-optin", action="store_true", help="the lists use double opt-in")
    parser.add_argument("--webhook-url", help="the lists' status-change webhook")
    parser.add_argument(
        "--rate-limit", type=int, default=1000, help="requests a key may make a minute"
    )
    args = parser.parse_args(argv)

    emulator = Emulator(rate_limit=args.rate_limit)
    url = f"http://{args.host}:{args.port}"
    print(f"Ecomail emulator on {url}  (ELLITY_ECOMAIL_API_URL={url})")
    for key in args.keys or ["demo-key"]:
        account = emulator.add_account(key)
        for name in args.lists or ["Newsletter"]:
            list_id = account.add_list(name, args.double_optin, args.webhook_url)
            print(f"  API key {key!r}: list {list_id} {name!r}")
    print("Ctrl-C stops it; everything lives in memory only.", flush=True)
    uvicorn.run(emulator.app, host=args.host, port=args.port, lifespan="off", log_level="info")


if __name__ == "__main__":
    main()
