"""Small pieces around the webhook: tokens kept out of the access log, a burst of commits
asking Redis for a worker run once per slot, and Redis left alone a while after it failed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from ellity.adapters.arq_queue import ArqJobQueue
from ellity.logs import keep_secrets_out_of_logs

TOKEN = "sc5hQATgpJIJpJPHZf8vIt7-fa_t1FTzzcTCf5lsuVE"


def _logged(logger: str, msg: str, *args: object) -> logging.LogRecord:
    keep_secrets_out_of_logs()
    return logging.getLogger(logger).makeRecord(logger, logging.INFO, __file__, 1, msg, args, None)


def test_the_access_log_never_shows_a_webhook_token() -> None:
    record = _logged(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "POST",
        f"/webhooks/ecomail/{TOKEN}",
        "1.1",
        200,
    )
    line = record.getMessage()
    assert TOKEN not in line
    assert '"POST /webhooks/ecomail/… HTTP/1.1" 200' in line


def test_other_log_lines_are_left_alone() -> None:
    record = _logged("x", "GET %s", "/customers")
    assert (record.msg, record.args, record.getMessage()) == (
        "GET %s",
        ("/customers",),
        "GET /customers",
    )


async def test_a_burst_of_nudges_asks_redis_once_per_half_second_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[str] = []

    class Pool:
        async def enqueue_job(self, *args: Any, **kw: Any) -> None:
            queued.append(kw["_job_id"])

    queue = ArqJobQueue("redis://127.0.0.1:1/0", queue_name="q")

    async def connected() -> Pool:
        return Pool()

    monkeypatch.setattr(queue, "_connected", connected)
    now = [1000.1]
    monkeypatch.setattr("ellity.adapters.arq_queue.time.time", lambda: now[0])
    for _ in range(50):
        await queue.nudge_delivery()
    now[0] = 1000.6  # the next slot
    await queue.nudge_delivery()
    await queue.nudge_delivery()
    assert queued == ["q:deliver:slot:2001", "q:deliver:slot:2002"]


async def test_after_a_failed_nudge_redis_is_left_alone_for_a_growing_bounded_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    redis_up = [False]

    class Pool:
        async def enqueue_job(self, *args: Any, **kw: Any) -> None:
            asked.append(kw["_job_id"])

    async def connected() -> Pool:
        asked.append("connect")
        if not redis_up[0]:
            raise ConnectionError("Redis is down")  # an OSError, as a refused connection
        return Pool()

    now = [100.0]
    queue = ArqJobQueue("redis://127.0.0.1:1/0", queue_name="q", monotonic=lambda: now[0])
    monkeypatch.setattr(queue, "_connected", connected)

    async def asks_at(moment: float) -> int:
        """How many times a nudge at ``moment`` (monotonic seconds) talked to Redis."""
        now[0] = moment
        before = len(asked)
        await queue.nudge_delivery(at=datetime.fromtimestamp(moment, UTC))
        return len(asked) - before

    # 5 s of quiet after the first failure, then 10, 20, and at most 30
    assert [await asks_at(t) for t in (100, 101, 104.9, 105)] == [1, 0, 0, 1]
    assert [await asks_at(t) for t in (114.9, 115)] == [0, 1]
    assert [await asks_at(t) for t in (134.9, 135)] == [0, 1]
    assert [await asks_at(t) for t in (164.9, 165)] == [0, 1]
    assert [await asks_at(t) for t in (194.9, 195)] == [0, 1]
    redis_up[0] = True
    assert await asks_at(225) == 2  # connected and queued: back to nudging every commit
    assert await asks_at(225.5) == 2
    redis_up[0] = False
    assert [await asks_at(t) for t in (226, 230.9, 231)] == [1, 0, 1]  # 5 s again
