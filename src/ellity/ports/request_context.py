"""The request a piece of work comes from: its id, for the log lines and the jobs it causes.

The web edge binds the id of each request (``X-Request-ID``) for the request's duration; the
storage adapters store it with the outbox items the request writes; the worker binds an
item's id again while it delivers that item. Every log line written meanwhile carries it
(``ellity.logs``), so an operator can follow a request into the work it caused.

A context variable, standard library only: each asyncio task (and each thread a task runs
code in) sees the id of the request it serves, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: The longest request id kept (the outbox column holds as many characters).
MAX_REQUEST_ID_LENGTH = 64

_REQUEST_ID: ContextVar[str | None] = ContextVar("ellity_request_id", default=None)


def current_request_id() -> str | None:
    """The id bound by the innermost ``request_id_bound`` around this code, if any."""
    return _REQUEST_ID.get()


@contextmanager
def request_id_bound(request_id: str | None) -> Iterator[None]:
    """``request_id`` is the current one inside the block (``None``: no request's); the one
    before is back afterwards, also when the block raises."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)
