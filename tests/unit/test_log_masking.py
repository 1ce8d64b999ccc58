"""Secrets masked in log records: webhook tokens in paths, API tokens anywhere."""

from __future__ import annotations

import logging

import pytest

from ellity.logs import keep_secrets_out_of_logs, mask_secrets

WEBHOOK_TOKEN = "sc5hQATgpJIJpJPHZf8vIt7-fa_t1FTzzcTCf5lsuVE"
API_TOKEN = "ell_" + "Ab3" * 13 + "Z"  # 40 characters after the prefix


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        (f'"POST /webhooks/ecomail/{WEBHOOK_TOKEN} HTTP/1.1" 500',
         '"POST /webhooks/ecomail/… HTTP/1.1" 500'),
        (f"path='/webhooks/ecomail/{WEBHOOK_TOKEN}'", "path='/webhooks/ecomail/…'"),
        (f"http://h/webhooks/ecomail/{WEBHOOK_TOKEN}?x=1", "http://h/webhooks/ecomail/…?x=1"),
        (f"Authorization: Bearer {API_TOKEN}", "Authorization: Bearer ell_…"),
        (f"/api/v1/customers?token={API_TOKEN}", "/api/v1/customers?token=ell_…"),
        ("shell_" + "b" * 40, "shell_" + "b" * 40),  # not a token: part of a word
        ("ell_" + "c" * 39, "ell_" + "c" * 39),  # too short to be one
        ("GET /customers/12 200", "GET /customers/12 200"),
        ("/webhooks/ecomail", "/webhooks/ecomail"),
    ],
)  # fmt: skip
def test_log_text_loses_its_webhook_and_api_tokens(text: str, logged: str) -> None:
    assert mask_secrets(text) == logged


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    keep_secrets_out_of_logs()
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.getLogger("ellity.test").makeRecord(
        "ellity.test", logging.ERROR, __file__, 1, msg, args, exc_info
    )


def test_a_record_is_made_with_its_message_masked() -> None:
    record = _record("%s %s failed", "POST", f"/webhooks/ecomail/{WEBHOOK_TOKEN}")
    assert record.getMessage() == "POST /webhooks/ecomail/… failed"
    assert WEBHOOK_TOKEN not in repr(record.args)


def test_a_traceback_that_names_a_token_is_logged_masked() -> None:
    try:
        raise RuntimeError(f"no route for /webhooks/ecomail/{WEBHOOK_TOKEN}")
    except RuntimeError as exc:
        record = _record("failed", exc=exc)
    text = logging.Formatter().format(record)
    assert WEBHOOK_TOKEN not in text
    assert "RuntimeError: no route for /webhooks/ecomail/…" in text


def test_records_without_secrets_keep_their_arguments() -> None:
    record = _record("%s took %d ms", "GET /customers", 12)
    assert (record.msg, record.args) == ("%s took %d ms", ("GET /customers", 12))
    assert record.exc_text is None


def test_installing_twice_wraps_the_record_factory_once() -> None:
    keep_secrets_out_of_logs()
    factory = logging.getLogRecordFactory()
    keep_secrets_out_of_logs()
    assert logging.getLogRecordFactory() is factory
    assert type(factory).__module__ == "ellity.logs"


def test_an_argument_that_cannot_be_rendered_does_not_make_the_logging_call_raise() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    record = _record("value %s", Broken())
    assert record.msg == "value %s"
