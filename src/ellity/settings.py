"""Deployment settings, read once at start-up from the environment and an optional ``.env``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/ellity.db"
DEFAULT_ECOMAIL_API_URL = "https://api2.ecomailapp.cz"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_QUEUE_NAME = "ellity:queue"
DEFAULT_DELIVERY_TIMEOUT = 30.0
#: PostgreSQL connections per process: at most pool size + overflow (10 + 10 = 20). Every
#: process (each ``ellity serve`` worker process, each ``ellity worker``) opens one pool, so
#: four processes hold at most 80, under PostgreSQL's default 100 (3 of them reserved).
DEFAULT_DB_POOL_SIZE = 10
DEFAULT_DB_MAX_OVERFLOW = 10
MAX_DB_CONNECTIONS = 1000  # a sanity bound on either setting
#: The share of each Ecomail key's request budget a reconciliation of the list may use.
DEFAULT_RECONCILE_SHARE = 0.3


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    secret_key: str
    base_url: str
    ecomail_api_url: str
    var_dir: Path
    queue_name: str = DEFAULT_QUEUE_NAME  # the arq queue in Redis (ELLITY_QUEUE_NAME)
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT  # seconds per outbox delivery
    #: Merchants' SMTP servers may be on loopback, private or link-local addresses
    #: (ELLITY_SMTP_ALLOW_PRIVATE): only for a deployment that relays through a local server.
    smtp_allow_private: bool = False
    #: PostgreSQL: connections kept open per process (ELLITY_DB_POOL_SIZE) and how many more
    #: it opens under load (ELLITY_DB_MAX_OVERFLOW). SQLite ignores both.
    db_pool_size: int = DEFAULT_DB_POOL_SIZE
    db_max_overflow: int = DEFAULT_DB_MAX_OVERFLOW
    #: The file the secret key was read from or generated into; ``None`` when it came from
    #: ``ELLITY_SECRET_KEY``. Backups need the key: ``ellity backup`` names where it is.
    secret_key_file: Path | None = None
    #: ``GET /metrics`` is served (ELLITY_METRICS, default on); off: it answers 404.
    metrics: bool = True
    #: The log lines of ``serve`` and ``worker`` (ELLITY_LOG_FORMAT): ``json`` or
    #: ``console``; ``None``: JSON unless stderr is a terminal.
    log_format: str | None = None
    #: The lowest level written (ELLITY_LOG_LEVEL): ``DEBUG``, ``INFO`` (the default),
    #: ``WARNING`` or ``ERROR``; the database drivers and httpx stay at WARNING.
    log_level: str = "INFO"
    #: The share of an Ecomail key's request budget the reconciliation of the list may use
    #: (ELLITY_RECONCILE_SHARE, above 0 and at most 1); the live sync keeps the rest.
    reconcile_share: float = DEFAULT_RECONCILE_SHARE

    def __repr__(self) -> str:  # never print the secret key
        return f"Settings(database_url={self.database_url!r}, var_dir={str(self.var_dir)!r})"


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped, optional quotes removed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def _secret_key(var_dir: Path) -> str:
    """Generated into ``var/secret_key`` (mode 600) on first run and reused after."""
    path = var_dir / "secret_key"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def load_settings(
    environ: Mapping[str, str] | None = None, *, dotenv: Path = Path(".env")
) -> Settings:
    env = {**read_dotenv(dotenv), **(os.environ if environ is None else environ)}
    var_dir = Path(env.get("ELLITY_VAR_DIR", "var"))
    given_key = env.get("ELLITY_SECRET_KEY")
    return Settings(
        database_url=env.get("ELLITY_DATABASE_URL") or DEFAULT_DATABASE_URL,
        redis_url=env.get("REDIS_URL") or None,
        secret_key=given_key or _secret_key(var_dir),
        base_url=(env.get("ELLITY_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        ecomail_api_url=(env.get("ELLITY_ECOMAIL_API_URL") or DEFAULT_ECOMAIL_API_URL).rstrip("/"),
        var_dir=var_dir,
        queue_name=env.get("ELLITY_QUEUE_NAME") or DEFAULT_QUEUE_NAME,
        delivery_timeout=_positive_seconds(
            env.get("ELLITY_DELIVERY_TIMEOUT"), DEFAULT_DELIVERY_TIMEOUT, "ELLITY_DELIVERY_TIMEOUT"
        ),
        smtp_allow_private=_flag(env.get("ELLITY_SMTP_ALLOW_PRIVATE"), "ELLITY_SMTP_ALLOW_PRIVATE"),
        db_pool_size=_count(
            env.get("ELLITY_DB_POOL_SIZE"), DEFAULT_DB_POOL_SIZE, "ELLITY_DB_POOL_SIZE", least=1
        ),
        db_max_overflow=_count(
            env.get("ELLITY_DB_MAX_OVERFLOW"),
            DEFAULT_DB_MAX_OVERFLOW,
            "ELLITY_DB_MAX_OVERFLOW",
            least=0,
        ),
        secret_key_file=None if given_key else var_dir / "secret_key",
        metrics=_flag(env.get("ELLITY_METRICS") or "on", "ELLITY_METRICS"),
        log_format=_log_format(env.get("ELLITY_LOG_FORMAT")),
        log_level=_log_level(env.get("ELLITY_LOG_LEVEL")),
        reconcile_share=_share(env.get("ELLITY_RECONCILE_SHARE"), "ELLITY_RECONCILE_SHARE"),
    )


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _flag(value: str | None, name: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``); unset is false."""
    word = (value or "false").strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return word in _TRUE


LOG_FORMATS = ("json", "console")


def _log_format(value: str | None) -> str | None:
    """``json`` or ``console`` (any case); unset or empty: chosen by the terminal."""
    if value is None or not value.strip():
        return None
    word = value.strip().lower()
    if word not in LOG_FORMATS:
        raise ValueError(f"ELLITY_LOG_FORMAT must be json or console, not {value!r}")
    return word


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(value: str | None) -> str:
    """One of ``LOG_LEVELS`` (any case); unset or empty: INFO."""
    if value is None or not value.strip():
        return "INFO"
    word = value.strip().upper()
    if word not in LOG_LEVELS:
        raise ValueError(f"ELLITY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
    return word


def _positive_seconds(value: str | None, default: float, name: str) -> float:
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 3600:
        raise ValueError(f"{name} must be a number of seconds between 0 and 3600, not {value!r}")
    return seconds


def _count(value: str | None, default: int, name: str, *, least: int) -> int:
    if not value:
        return default
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or not least <= int(text) <= MAX_DB_CONNECTIONS:
        raise ValueError(
            f"{name} must be a whole number from {least} to {MAX_DB_CONNECTIONS}, not {value!r}"
        )
    return int(text)


def _share(value: str | None, name: str) -> float:
    if not value or not value.strip():
        return DEFAULT_RECONCILE_SHARE
    try:
        share = float(value)
    except ValueError:
        share = 0.0
    if not 0 < share <= 1:  # also refuses nan
        raise ValueError(f"{name} must be a number above 0 and at most 1, not {value!r}")
    return share
