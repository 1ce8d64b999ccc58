"""System emails through the merchant's own SMTP server (aiosmtplib).

One connection per email: system emails are few and far between, and a fresh connection
cannot inherit a broken state. Every SMTP failure becomes ``MailerUnavailable`` (4xx, network,
timeouts: try again later) or ``MailerRejected`` (5xx, missing server features: it will not
work as it is). The messages name the server and what it said, never the password or the
email's content.
"""

from __future__ import annotations

import ssl
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from ellity.adapters.email_templates import JinjaEmailTemplates, RenderedEmail
from ellity.domain.model.merchant import SmtpSettings
from ellity.domain.model.system_email import OutgoingEmail
from ellity.ports.mailer import MailerRejected, MailerUnavailable

SMTP_TIMEOUT = 20.0  # seconds per connect and per command


class SmtpMailer:
    def __init__(
        self,
        templates: JinjaEmailTemplates,
        *,
        timeout: float = SMTP_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """``tls_context`` replaces the system's trusted certificates (tests: a private CA)."""
        self._templates = templates
        self._timeout = timeout
        self._tls_context = tls_context

    async def send(
        self, email: OutgoingEmail, *, server: SmtpSettings, password: str | None
    ) -> None:
        where = f"{server.host}:{server.port}"
        message = _message(email, self._templates.render(email), server)
        options: dict[str, Any] = {
            "hostname": server.host,
            "port": server.port,
            "sender": server.sender,
            "recipients": [email.to],
            "timeout": self._timeout,
            "use_tls": server.security == "tls",
            "start_tls": server.security == "starttls",  # "none": never, not even if offered
        }
        if self._tls_context is not None and server.security != "none":
            options["tls_context"] = self._tls_context
        if server.username:
            options.update(username=server.username, password=password or "")
        try:
            await aiosmtplib.send(message, **options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code, said = (refused.code, refused.message) if refused else (550, str(exc))
            raise _by_code(code, f"The SMTP server {where} refused the recipient: {said}") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _by_code(
                exc.code,
                f"The SMTP server {where} did not accept the user name and password:"
                f" {exc.code} {exc.message}",
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(
                exc.code, f"The SMTP server {where} refused the email: {exc.code} {exc.message}"
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise MailerRejected(
                f"The SMTP server {where} cannot do what is needed: {exc}"
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise MailerUnavailable(
                f"The SMTP server {where} could not be reached: {reason}"
            ) from None


def _by_code(code: int, message: str) -> MailerUnavailable | MailerRejected:
    """4xx means "not now"; everything else the server says is final."""
    return MailerUnavailable(message) if 400 <= code < 500 else MailerRejected(message)


def _message(email: OutgoingEmail, rendered: RenderedEmail, server: SmtpSettings) -> EmailMessage:
    message = EmailMessage()
    try:
        message["Subject"] = rendered.subject
        message["From"] = Address(display_name=email.sender_name, addr_spec=server.sender)
        message["To"] = Address(addr_spec=email.to)
    except (ValueError, IndexError, HeaderParseError):
        raise MailerRejected(
            "The email cannot be addressed: check the sender address and the customer's email."
        ) from None
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{email.message_id}@{server.sender.rpartition('@')[2]}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
