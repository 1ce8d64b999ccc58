"""No secret in any log line, whichever library writes it.

Request paths reach the logs from many places (uvicorn's access log, Litestar's exception log,
Ellity's own 500 handler), and a webhook path carries the merchant's webhook token. Rather
than a filter on each handler (Litestar and uvicorn each replace the handlers when they
configure logging, and uvicorn's access logger does not propagate to the root), every record
is masked as it is made: ``keep_secrets_out_of_logs`` wraps the process's log record factory.
A masked record keeps its logger, level and exception; its message is the rendered, masked
text, and the traceback text is masked too.

The other secrets are kept out at their source: the SQL engines hide bound parameters and
rows (``adapters.sql.database``), the Ecomail key travels in a header (never in a URL), the
SMTP password and API tokens are never passed to a logger. API tokens are masked here as
well, in case one is pasted where it does not belong (a path, a query, a body).

One format for every line (``configure_logging``, called by ``ellity serve`` and ``ellity
worker``): structlog's ``ProcessorFormatter`` on the root logger's one handler renders the
records of every library the same way, one JSON object per line when stderr is not a
terminal (``timestamp`` ISO 8601 UTC, ``level``, ``logger``, ``event``, ``request_id`` when
the line belongs to a request or to work a request caused, ``exception`` text, and any other
bound context), a readable line on a terminal. What is rendered is masked once more, as a
whole: values bound as context and exception text formatted from the exception itself
(``mask_event``).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from ellity.domain.model.api_token import TOKEN_PREFIX, TOKEN_RANDOM_CHARS
from ellity.domain.model.newsletter import WEBHOOK_PATH
from ellity.ports.request_context import current_request_id
from ellity.settings import LOG_FORMATS

MASK = "…"
_SECRETS = re.compile(
    re.escape(WEBHOOK_PATH) + r"/[^\s\"'?#/]+"  # the webhook token after its path
    rf"|(?<![\w]){re.escape(TOKEN_PREFIX)}[A-Za-z0-9]{{{TOKEN_RANDOM_CHARS}}}(?![A-Za-z0-9])"
)  # ... and an API token


def mask_secrets(text: str) -> str:
    """``text`` with webhook tokens (after ``/webhooks/ecomail/``) and API tokens replaced."""
    return _SECRETS.sub(_masked, text)


def _masked(match: re.Match[str]) -> str:
    found = match.group(0)
    if found.startswith(WEBHOOK_PATH):
        return f"{WEBHOOK_PATH}/{MASK}"
    return TOKEN_PREFIX + MASK


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Masks the record in place: message and arguments, traceback and stack text.

    Rendering runs the arguments' ``__str__``/``__repr__``. One that fails must not make the
    logging call raise: that part is left as it is, and the handler reports the failure as
    it always does (``Handler.handleError``).

    A structlog logger's record carries its event as a dict: that is left whole for the
    ``ProcessorFormatter``, which masks what it renders (``mask_event``)."""
    if isinstance(record.msg, Mapping):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - reported by the handler, see above
        message = None
    if message is not None and (masked := mask_secrets(message)) != message:
        record.msg, record.args = masked, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        try:
            text = logging.Formatter().formatException(record.exc_info)
        except Exception:  # noqa: BLE001 - reported by the handler, see above
            text = ""
        if (masked := mask_secrets(text)) != text:
            record.exc_text = masked  # formatters use it instead of formatting exc_info
    if record.stack_info:
        record.stack_info = mask_secrets(record.stack_info)
    return record


class _MaskingRecordFactory:
    def __init__(self, make: Any) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return mask_record(self.make(*args, **kwargs))


def keep_secrets_out_of_logs() -> None:
    """From now on every log record of this process, from any logger, is made masked.

    Idempotent: the web app and the worker both call it at start-up."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _MaskingRecordFactory):
        logging.setLogRecordFactory(_MaskingRecordFactory(current))


# -- one format for every logger -----------------------------------------------------------


#: Libraries that log every statement or every HTTP call at DEBUG or INFO: warnings only.
#: (Ellity logs each Ecomail call itself, at DEBUG, and a failed one as a warning.)
QUIET_LOGGERS = (
    "aiosqlite",
    "asyncpg",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "httpx",
    "httpcore",
)


def _masked_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {_masked_key(key): _masked_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked_value(item) for item in value]
    return mask_secrets(repr(value))  # what a renderer would show of it


def _masked_key(key: Any) -> str:
    return mask_secrets(key if isinstance(key, str) else str(key))


def mask_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Every key and value of the event masked (``mask_secrets``), nested ones too; a value
    that is no plain JSON value becomes its masked ``repr``. Runs right before rendering,
    after the exception was formatted into ``exception``."""
    return {_masked_key(key): _masked_value(value) for key, value in event_dict.items()}


def add_request_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """``request_id``: the request this line belongs to, or the one whose work it is
    (``ports.request_context``); no key outside any."""
    request_id = current_request_id()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


_FIRST_KEYS = ("timestamp", "level", "logger", "event", "request_id")


def _known_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """A line reads the same way every time: when, how bad, who, what, which request."""
    first = {key: event_dict[key] for key in _FIRST_KEYS if key in event_dict}
    return first | {key: value for key, value in event_dict.items() if key not in first}


def _shared_processors() -> list[Processor]:
    """What every line gets, whether a library's record or a structlog event."""
    return [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def log_formatter(log_format: str, *, colors: bool = False) -> logging.Formatter:
    """The formatter of every line: JSON, or the console's readable rendering.

    Exceptions are formatted as plain text (never with local variables) before the masking,
    so the rendered traceback is masked too."""
    renderer: Processor
    if log_format not in LOG_FORMATS:
        raise ValueError(f"no log format {log_format!r}: json or console")
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            mask_event,
            _known_keys_first,
            renderer,
        ],
    )


def log_format_for(stream: TextIO, forced: str | None) -> str:
    """``forced`` (``ELLITY_LOG_FORMAT``) if given, else JSON unless ``stream`` is a terminal."""
    if forced is not None:
        return forced
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


class _EllityHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root logger's handler that ``configure_logging`` installs (and replaces)."""


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("ellity").critical("uncaught exception", exc_info=(kind, error, trace))


def configure_logging(
    log_format: str | None = None, *, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Every logger of the process writes one format to ``stream`` (stderr by default).

    - The root logger gets one handler with ``log_formatter``; the libraries' loggers (uvicorn,
      Litestar, arq, the SQL drivers) keep no handler of their own and propagate to it. The
      web app keeps Litestar from configuring logging (``web.app``), ``ellity serve`` keeps
      uvicorn from doing it (``log_config=None``).
    - Levels: ``level`` (INFO unless the operator asks for another); the loggers in
      ``QUIET_LOGGERS`` WARNING.
    - Python's warnings are logged too (``py.warnings``), and an exception that ends the
      process (``sys.excepthook``), so they come out in the same format.
    - structlog's own loggers (``structlog.get_logger()``) write through the same handler.
    - Every record is masked as it is made (``keep_secrets_out_of_logs``).

    Idempotent: a second call replaces what the first installed.
    """
    keep_secrets_out_of_logs()
    out = stream if stream is not None else sys.stderr
    chosen = log_format_for(out, log_format)
    handler = _EllityHandler(out)
    handler.setFormatter(log_formatter(chosen, colors=chosen == "console" and out.isatty()))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _EllityHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
