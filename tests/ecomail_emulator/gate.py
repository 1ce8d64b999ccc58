"""What every API request passes first: the request log, the delay, injected faults, the key
check (401), the rate limit (429); webhooks fired by the request are sent after its answer,
or before it when the answer is then lost or late (``Faults.lose_answer_next``,
``Faults.answer_late_next``). Requests under ``CONTROL_PREFIX`` go to the control app and
pass none of it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.enums import ScopeType

from tests.ecomail_emulator.controls import CONTROL_PREFIX
from tests.ecomail_emulator.emulator import OUTBOX, RequestRecord
from tests.ecomail_emulator.faults import AfterProcessing, message_for
from tests.ecomail_emulator.model import Account

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

    from tests.ecomail_emulator.emulator import Emulator

#: The scope key under which the endpoints find the caller's account.
ACCOUNT = "ecomail.account"


class Gate:
    """Every API request: logged with its answer; delayed, failed, refused (401) or
    throttled (429) before it reaches the endpoint; webhooks sent after the response. A
    request whose answer is to be lost or late is processed first, its webhooks are sent,
    and then it gets the lost answer's status, or its own answer after the wait."""

    def __init__(self, emulator: Emulator, inner: ASGIApp, controls: ASGIApp) -> None:
        self.emulator = emulator
        self.inner = inner
        self.controls = controls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.inner(scope, receive, send)
            return
        if scope["path"] == CONTROL_PREFIX or scope["path"].startswith(CONTROL_PREFIX + "/"):
            await self.controls(scope, receive, send)
            return
        arrived = time.monotonic()
        key = next(
            (value.decode("latin-1") for name, value in scope["headers"] if name.lower() == b"key"),
            None,
        )
        answered = [500]

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered[0] = message["status"]
            await send(message)

        outbox: list[tuple[str, dict[str, Any]]] = []
        token = OUTBOX.set(outbox)
        try:
            # The whole request arrives first: a client that gives up during the delay has
            # still sent a request the server goes on to apply.
            replay = await _buffered(receive)
            if self.emulator.faults.delay > 0:
                await asyncio.sleep(self.emulator.faults.delay)
            admitted = self.emulator.admit(key)
            if not isinstance(admitted, Account):
                await _answer(logged_send, *admitted)
                return
            scope[ACCOUNT] = admitted  # type: ignore[literal-required]
            after = self.emulator.faults.take_after_processing()
            if after is None:
                await self.inner(scope, replay, logged_send)
                return
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.inner(scope, replay, hold)
            self._send_webhooks(outbox)  # processed: its webhooks go out before the answer
            await _answer_after_processing(logged_send, held, after)
        finally:
            OUTBOX.reset(token)
            self.emulator.requests.append(
                RequestRecord(arrived, key, scope["method"], scope["path"], answered[0])
            )
            self._send_webhooks(outbox)

    def _send_webhooks(self, outbox: list[tuple[str, dict[str, Any]]]) -> None:
        if outbox:
            deliveries = outbox[:]
            outbox.clear()
            self.emulator.send_webhooks(deliveries)


async def _answer_after_processing(send: Send, held: list[Message], after: AfterProcessing) -> None:
    """The processed request's answer, lost (replaced by ``after.status``) or held back."""
    if after.status is not None:
        await _answer(send, after.status, {"message": message_for(after.status)}, {})
        return
    await asyncio.sleep(after.late)
    for message in held:  # a client that gave up is gone: the server drops what it is sent
        await send(message)


async def _buffered(receive: Receive) -> Receive:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    pending: list[ReceiveMessage] = [
        {"type": "http.request", "body": b"".join(chunks), "more_body": False}
    ]

    async def replay() -> ReceiveMessage:
        return pending.pop() if pending else await receive()

    return replay


async def _answer(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    content = msgspec.json.encode(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(content)),
    ]
    raw_headers += [(name.encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content, "more_body": False})
