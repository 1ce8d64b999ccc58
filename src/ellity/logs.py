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
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ellity.domain.model.api_token import TOKEN_PREFIX, TOKEN_RANDOM_CHARS
from ellity.domain.model.newsletter import WEBHOOK_PATH

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
    it always does (``Handler.handleError``)."""
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
