"""Sending Ellity's own emails to customers through the merchant's SMTP server."""

from __future__ import annotations

from typing import Protocol

from ellity.domain.model.merchant import SmtpSettings
from ellity.domain.model.system_email import OutgoingEmail


class MailerUnavailable(Exception):
    """The email could not be sent now (server down, timeout, 4xx): try again later.

    The message is written for the merchant and never contains the password or the email.
    """


class MailerRejected(Exception):
    """The server refused this email for good (5xx: bad recipient, wrong password, ...):
    sending it again as it is will not work."""


class Mailer(Protocol):
    async def send(
        self, email: OutgoingEmail, *, server: SmtpSettings, password: str | None
    ) -> None:
        """Render ``email`` in its locale and send it from ``server.sender``.

        Raises ``MailerUnavailable`` or ``MailerRejected``; nothing else for a failed send.
        """
        ...
