"""``ellity serve``: the web app under uvicorn, with the operator's server options.

- One process (the default): without ``REDIS_URL`` it also starts the embedded Redis and runs
  the worker inside; with ``REDIS_URL`` the workers run as ``ellity worker`` processes.
- ``--workers N`` (N > 1, needs ``REDIS_URL``): uvicorn starts N processes sharing the port;
  each builds its app with ``create_app_from_env`` from the same environment.
- ``--keep-alive S``: how long an idle connection is kept open. Clients and proxies reuse
  theirs for up to 60 s (nginx, many HTTP client pools) or 5 s (httpx): the server waits
  longer, so it never closes a connection just as a client reuses it.
- ``--proxy-headers``: believe ``X-Forwarded-For``/``-Proto`` from ``--forwarded-allow-ips``.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ellity.settings import Settings, load_settings

if TYPE_CHECKING:
    from litestar import Litestar

DEFAULT_KEEP_ALIVE = 75  # seconds: longer than the 60 s of common clients and proxies
MAX_KEEP_ALIVE = 3600
MAX_WORKERS = 64
DEFAULT_FORWARDED_ALLOW_IPS = ("127.0.0.1",)
#: what uvicorn imports in each of N > 1 processes
APP_FACTORY = "ellity.serve:create_app_from_env"


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    keep_alive: int = DEFAULT_KEEP_ALIVE
    proxy_headers: bool = False
    forwarded_allow_ips: tuple[str, ...] = DEFAULT_FORWARDED_ALLOW_IPS

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServerOptions:
        return cls(
            host=args.host,
            port=args.port,
            workers=args.workers,
            keep_alive=args.keep_alive,
            proxy_headers=args.proxy_headers,
            forwarded_allow_ips=args.forwarded_allow_ips or DEFAULT_FORWARDED_ALLOW_IPS,
        )

    def uvicorn_options(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "workers": self.workers,
            "timeout_keep_alive": self.keep_alive,
            "proxy_headers": self.proxy_headers,
            "forwarded_allow_ips": list(self.forwarded_allow_ips),
            "log_level": "info",
            "log_config": None,  # no formatters of uvicorn's own: ``ellity.logs`` renders all
        }


def _whole_number(least: int, most: int, what: str) -> Any:
    def parse(text: str) -> int:
        value = text.strip()
        if not (value.isascii() and value.isdigit()) or not least <= int(value) <= most:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number from {least} to {most}, not {text!r}"
            )
        return int(value)

    return parse


def _addresses(text: str) -> tuple[str, ...]:
    """``*``, or comma-separated IP addresses and networks (``10.0.0.0/8``)."""
    items = tuple(item.strip() for item in text.split(","))
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is neither an IP address, a network (10.0.0.0/8) nor *"
            ) from None
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ellity serve``; ``check_arguments`` refuses what does not go together."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_whole_number(0, 65535, "the port"), default=8000)
    parser.add_argument(
        "--workers",
        type=_whole_number(1, MAX_WORKERS, "the number of worker processes"),
        default=1,
        metavar="N",
        help="web processes sharing the port (default 1; more than 1 needs REDIS_URL)",
    )
    parser.add_argument(
        "--keep-alive",
        type=_whole_number(1, MAX_KEEP_ALIVE, "the keep-alive timeout"),
        default=DEFAULT_KEEP_ALIVE,
        metavar="S",
        help=f"seconds an idle connection stays open (default {DEFAULT_KEEP_ALIVE})",
    )
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client's address and scheme from X-Forwarded-For/-Proto",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        type=_addresses,
        metavar="IPS",
        help="the proxies whose X-Forwarded-* headers are believed: comma-separated addresses"
        " or networks, or * (default 127.0.0.1; needs --proxy-headers)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits with code 2 (``parser.error``) on options that do not go together."""
    if args.forwarded_allow_ips is not None and not args.proxy_headers:
        parser.error("--forwarded-allow-ips works only with --proxy-headers")


def serve(settings: Settings, options: ServerOptions) -> int:
    """Applies the migrations, then serves until stopped; returns the exit code."""
    # only the server needs these (the other commands start faster without them)
    import uvicorn  # noqa: PLC0415

    from ellity import worker  # noqa: PLC0415
    from ellity.adapters.embedded_redis import embedded_redis  # noqa: PLC0415
    from ellity.adapters.sql import migrate  # noqa: PLC0415
    from ellity.bootstrap import build_deps  # noqa: PLC0415
    from ellity.logs import configure_logging  # noqa: PLC0415
    from ellity.web.app import create_app  # noqa: PLC0415

    if options.workers > 1 and not settings.redis_url:
        print(
            "ellity: --workers above 1 needs REDIS_URL: the web processes then share that Redis"
            " and the worker runs as `ellity worker` processes. Without REDIS_URL, `ellity"
            " serve` is one process with the worker inside.",
            file=sys.stderr,
        )
        return 2
    configure_logging(
        settings.log_format, level=settings.log_level
    )  # the migration's lines too; all masked
    migrate.upgrade(settings.database_url)
    server = options.uvicorn_options()
    if options.workers > 1:  # each process builds its own app from the environment
        uvicorn.run(APP_FACTORY, factory=True, **server)
    elif settings.redis_url:  # the workers run as their own processes (`ellity worker`)
        uvicorn.run(create_app(lambda: build_deps(settings)), **server)
    else:
        var = settings.var_dir
        with embedded_redis(
            var / "embedded-redis.log", data_dir=var / "embedded-redis"
        ) as redis_url:
            provide = worker.with_in_process_worker(
                dataclasses.replace(settings, redis_url=redis_url)
            )
            uvicorn.run(create_app(provide), **server)
    return 0


def create_app_from_env() -> Litestar:
    """The app of one of ``ellity serve --workers N``'s processes, from the settings in the
    environment (and ``.env``), as the parent process read them."""
    from ellity.bootstrap import build_deps  # noqa: PLC0415
    from ellity.logs import configure_logging  # noqa: PLC0415
    from ellity.web.app import create_app  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.log_format, level=settings.log_level)
    if not settings.redis_url:
        raise RuntimeError("more than one web process needs REDIS_URL")
    return create_app(lambda: build_deps(settings))
