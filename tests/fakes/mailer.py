"""A mailer that records what it sends."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ellity.domain.model.merchant import SmtpSettings
from ellity.domain.model.system_email import OutgoingEmail
from ellity.ports.mailer import Mailer


@dataclass(frozen=True)
class SentEmail:
    email: OutgoingEmail
    server: SmtpSettings
    password: str | None = field(repr=False)


class FakeMailer(Mailer):
    """Records what it sent. ``fail_next`` makes the next sends raise the given errors;
    ``stall`` makes sends hang (for timeouts); ``while_sending`` runs during each send."""

    def __init__(self) -> None:
        self.sent: list[SentEmail] = []
        self.attempts = 0
        self.stall = False
        self.while_sending: Callable[[], None] | None = None
        self._failures: deque[Exception] = deque()

    def fail_next(self, *errors: Exception) -> None:
        self._failures.extend(errors)

    def to(self, address: str) -> list[OutgoingEmail]:
        return [sent.email for sent in self.sent if sent.email.to == address]

    async def send(
        self, email: OutgoingEmail, *, server: SmtpSettings, password: str | None
    ) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.while_sending is not None:
            self.while_sending()
        if self.stall:
            await asyncio.Event().wait()
        if self._failures:
            raise self._failures.popleft()
        self.sent.append(SentEmail(email, server, password))
