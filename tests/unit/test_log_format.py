"""One format for every log line: JSON off a terminal, a readable line on one, masked."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog

from ellity.logs import (
    QUIET_LOGGERS,
    configure_logging,
    log_format_for,
    log_formatter,
    mask_event,
)
from ellity.ports.request_context import request_id_bound
from ellity.settings import load_settings

WEBHOOK_TOKEN = "sc5hQATgpJIJpJPHZf8vIt7-fa_t1FTzzcTCf5lsuVE"
API_TOKEN = "ell_" + "Ab3" * 13 + "Z"  # 40 characters after the prefix


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines_of(formatter: logging.Formatter, *records: logging.LogRecord) -> list[str]:
    return [formatter.format(record) for record in records]


def record(
    msg: str, *args: object, level: int = logging.INFO, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.getLogger("ellity.test").makeRecord(
        "ellity.test", level, __file__, 1, msg, args, exc_info
    )


@contextmanager
def as_a_library_leaves_them(*names: str) -> Iterator[None]:
    """The loggers and their parents as a fresh process has them (no handler, level or
    ``propagate=False`` of their own), whatever other tests' apps and servers set (uvicorn's
    default configuration keeps ``uvicorn``'s lines from the root logger); as they were
    afterwards."""
    family = {
        ".".join(name.split(".")[:n]) for name in names for n in range(1, 1 + name.count(".") + 1)
    }
    loggers = [logging.getLogger(name) for name in sorted(family)]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.handlers[:] = []
        lg.setLevel(logging.NOTSET)
        lg.propagate, lg.disabled = True, False
    try:
        yield
    finally:
        for lg, handlers, level, propagate, disabled in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled


LIBRARIES = ("uvicorn.error", "uvicorn.access", "litestar", "arq.worker", "ellity.worker")
OURS = ("ellity.test", "some.library", "py.warnings")


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """``configure_logging`` onto a buffer (not a terminal), the loggers the tests write to
    as a fresh process has them; all as it was after."""
    root = logging.getLogger()
    handlers, level, excepthook = list(root.handlers), root.level, sys.excepthook
    out = io.StringIO()
    with as_a_library_leaves_them(*LIBRARIES, *OURS, *QUIET_LOGGERS):
        configure_logging(stream=out)
        try:
            yield out
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            sys.excepthook = excepthook
            logging.captureWarnings(False)
            structlog.reset_defaults()


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_library_record_is_one_json_object_with_the_operators_keys() -> None:
    [line] = lines_of(log_formatter("json"), record("%s took %d ms", "GET /x", 12))
    event = json.loads(line)
    assert list(event)[:4] == ["timestamp", "level", "logger", "event"]
    assert event["level"] == "info"
    assert event["logger"] == "ellity.test"
    assert event["event"] == "GET /x took 12 ms"
    assert event["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert "request_id" not in event


def test_a_line_written_for_a_request_carries_its_id() -> None:
    with request_id_bound("req-42"):
        made = record("inside")
    with request_id_bound("req-42"):
        [line] = lines_of(log_formatter("json"), made)
    assert json.loads(line)["request_id"] == "req-42"


def test_an_exception_is_rendered_as_text_in_the_line() -> None:
    try:
        raise RuntimeError("the database went away")
    except RuntimeError as exc:
        made = record("failed", level=logging.ERROR, exc=exc)
    [line] = lines_of(log_formatter("json"), made)
    event = json.loads(line)
    assert event["level"] == "error"
    assert event["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: the database went away" in event["exception"]


def test_a_traceback_that_names_a_token_is_rendered_masked_from_the_exception_itself() -> None:
    """The JSON line formats the exception again (not the record's masked ``exc_text``)."""
    try:
        raise RuntimeError(f"no route for /webhooks/ecomail/{WEBHOOK_TOKEN} with {API_TOKEN}")
    except RuntimeError as exc:
        made = record("failed", exc=exc)
    [line] = lines_of(log_formatter("json"), made)
    [readable] = lines_of(log_formatter("console"), made)
    for text in (line, readable):
        assert WEBHOOK_TOKEN not in text
        assert API_TOKEN not in text
    shown = "RuntimeError: no route for /webhooks/ecomail/… with ell_…"
    assert shown in json.loads(line)["exception"]
    assert shown in readable


def test_values_bound_as_context_are_masked(configured: io.StringIO) -> None:
    log = structlog.get_logger("ellity.test")
    with structlog.contextvars.bound_contextvars(path=f"/webhooks/ecomail/{WEBHOOK_TOKEN}"):
        log.info("received", token=API_TOKEN, nested={"header": f"Bearer {API_TOKEN}"})
        logging.getLogger("some.library").info("a library's line")
    text = configured.getvalue()
    assert WEBHOOK_TOKEN not in text
    assert API_TOKEN not in text
    ours, library = parsed(configured)
    assert ours["path"] == library["path"] == "/webhooks/ecomail/…"
    assert ours["token"] == "ell_…"
    assert ours["nested"] == {"header": "Bearer ell_…"}
    assert (ours["logger"], ours["event"]) == ("ellity.test", "received")


def test_mask_event_masks_keys_values_and_what_is_shown_of_other_objects() -> None:
    class Holder:
        def __repr__(self) -> str:
            return f"Holder({API_TOKEN})"

    masked = mask_event(
        None,
        "info",
        {
            "event": f"GET /webhooks/ecomail/{WEBHOOK_TOKEN}",
            "items": [API_TOKEN, 3, None, True],
            "holder": Holder(),
            API_TOKEN: "a key that is a token",
        },
    )
    assert masked == {
        "event": "GET /webhooks/ecomail/…",
        "items": ["ell_…", 3, None, True],
        "holder": "Holder(ell_…)",
        "ell_…": "a key that is a token",
    }


def test_every_logger_writes_the_one_format_and_the_sql_drivers_and_httpx_stay_quiet(
    configured: io.StringIO,
) -> None:
    for name in LIBRARIES:
        logging.getLogger(name).info("hello from %s", name)
    for name in ("sqlalchemy.engine.Engine", "aiosqlite", "asyncpg", "httpx", "httpcore"):
        logging.getLogger(name).info("every statement and call")
    warnings.warn("an old API", UserWarning, stacklevel=1)
    events = parsed(configured)
    assert [e["logger"] for e in events] == [
        "uvicorn.error",
        "uvicorn.access",
        "litestar",
        "arq.worker",
        "ellity.worker",
        "py.warnings",
    ]
    assert all(e["event"] == f"hello from {e['logger']}" for e in events[:5])


def test_an_exception_that_ends_the_process_is_one_json_line_too(
    configured: io.StringIO,
) -> None:
    try:
        raise RuntimeError(f"cannot start: {API_TOKEN}")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    [event] = parsed(configured)
    assert (event["level"], event["event"]) == ("critical", "uncaught exception")
    assert event["exception"].endswith("RuntimeError: cannot start: ell_…")


def test_configuring_twice_leaves_one_handler(configured: io.StringIO) -> None:
    again = io.StringIO()
    configure_logging(stream=again)
    logging.getLogger("ellity.test").warning("once")
    assert configured.getvalue() == ""
    assert [e["event"] for e in parsed(again)] == ["once"]


def test_a_terminal_gets_readable_lines_and_anything_else_json() -> None:
    assert log_format_for(Terminal(), None) == "console"
    assert log_format_for(io.StringIO(), None) == "json"
    assert log_format_for(Terminal(), "json") == "json"
    assert log_format_for(io.StringIO(), "console") == "console"
    with request_id_bound("req-7"):
        [line] = lines_of(log_formatter("console"), record("GET /x %d", 200))
    assert "GET /x 200" in line
    assert "request_id=req-7" in line
    assert not line.startswith("{")


@pytest.mark.parametrize(
    ("value", "chosen"), [(None, None), ("", None), ("json", "json"), (" Console ", "console")]
)
def test_the_log_format_setting(value: str | None, chosen: str | None) -> None:
    env = {"ELLITY_SECRET_KEY": "k"} | ({} if value is None else {"ELLITY_LOG_FORMAT": value})
    assert load_settings(env).log_format == chosen


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="ELLITY_LOG_FORMAT must be json or console, not 'xml'"):
        load_settings({"ELLITY_SECRET_KEY": "k", "ELLITY_LOG_FORMAT": "xml"})


@pytest.mark.parametrize(
    ("value", "chosen"),
    [(None, "INFO"), ("", "INFO"), ("debug", "DEBUG"), (" Warning ", "WARNING")],
)
def test_the_log_level_setting(value: str | None, chosen: str) -> None:
    env = {"ELLITY_SECRET_KEY": "k"} | ({} if value is None else {"ELLITY_LOG_LEVEL": value})
    assert load_settings(env).log_level == chosen


def test_an_unknown_log_level_is_refused() -> None:
    with pytest.raises(ValueError, match="ELLITY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"):
        load_settings({"ELLITY_SECRET_KEY": "k", "ELLITY_LOG_LEVEL": "loud"})


def test_the_level_asked_for_is_written_and_the_quiet_loggers_stay_quiet(
    configured: io.StringIO,
) -> None:
    configure_logging("json", level="DEBUG", stream=configured)
    logging.getLogger("ellity.test").debug("a debug line")
    logging.getLogger("sqlalchemy.engine").info("a statement")
    configure_logging("json", stream=configured)
    logging.getLogger("ellity.test").debug("not written at INFO")
    written = configured.getvalue()
    assert "a debug line" in written
    assert "a statement" not in written
    assert "not written at INFO" not in written
