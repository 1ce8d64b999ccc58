"""System emails through the merchant's own SMTP server (aiosmtplib).

One connection per email: system emails are few and far between, and a fresh connection
cannot inherit a broken state. Every SMTP failure becomes ``MailerUnavailable`` (4xx, network,
timeouts: try again later) or ``MailerRejected`` (5xx, missing server features: it will not
work as it is).

The server is a name a merchant typed, so it must not become a way to probe the network
Ellity runs in: the name is resolved here, every address is checked (``public_address``) and
the connection goes to a checked address, while TLS still verifies the certificate against
the name. Unless the deployment allows private addresses (``allow_private``, for a local
relay), loopback, private and link-local servers are refused before any connection. The
messages are Ellity's own and short: the server, what failed, and an SMTP reply code at
most; never the server's text (a banner, an error) nor a socket error, never the password
or the email's content.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from ellity.adapters.email_templates import JinjaEmailTemplates, RenderedEmail
from ellity.adapters.public_address import (
    AddressRefused,
    Resolver,
    Unresolvable,
    checked_addresses,
    connect_first,
    system_resolver,
)
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
        allow_private: bool = False,
        resolve: Resolver = system_resolver,
    ) -> None:
        """``tls_context`` replaces the system's trusted certificates (tests: a private CA);
        ``allow_private`` lets the server be on a loopback, private or link-local address;
        ``resolve`` turns a host name into addresses (tests: names of their own)."""
        self._templates = templates
        self._timeout = timeout
        self._tls_context = tls_context
        self._allow_private = allow_private
        self._resolve = resolve

    async def send(
        self, email: OutgoingEmail, *, server: SmtpSettings, password: str | None
    ) -> None:
        where = f"{server.host}:{server.port}"
        message = _message(email, self._templates.render(email), server)
        sock = await self._connect(server, where)
        options: dict[str, Any] = {  # aiosmtplib owns (and closes) ``sock`` from here on
            "hostname": server.host,  # with ``sock``: only the name TLS verifies
            "sock": sock,
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
            code = exc.recipients[0].code if exc.recipients else 550
            raise _by_code(code, where, "refused the recipient") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _by_code(exc.code, where, "did not accept the user name and password") from None
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise _by_code(exc.code, where, "did not accept the connection") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, where, "refused the email") from None
        except aiosmtplib.SMTPNotSupported:
            raise MailerRejected(
                f"The SMTP server {where} does not support what sending this email needs."
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # TimeoutError is an OSError
            raise MailerUnavailable(_failure(exc, where, server.host)) from None

    async def _connect(self, server: SmtpSettings, where: str) -> socket.socket:
        """A socket connected to a checked address of ``server.host``."""
        try:
            async with asyncio.timeout(self._timeout):
                addresses = await checked_addresses(
                    server.host,
                    server.port,
                    resolve=self._resolve,
                    allow_private=self._allow_private,
                )
        except AddressRefused:
            raise MailerRejected(
                f"The SMTP server {where} is on a local or private network; Ellity sends only"
                " through servers on the public internet."
            ) from None
        except (Unresolvable, TimeoutError):
            raise MailerUnavailable(
                f"The SMTP server name {server.host} could not be found."
            ) from None
        try:
            return await connect_first(addresses, server.port, each=self._timeout)
        except OSError:
            raise MailerUnavailable(f"The SMTP server {where} could not be reached.") from None


def _failure(exc: BaseException, where: str, host: str) -> str:
    """What went wrong, in Ellity's words: the library's and the socket's texts may carry
    what the server sent."""
    if _caused_by_certificate(exc):
        return f"The SMTP server {where} did not show a valid certificate for {host}."
    if isinstance(exc, TimeoutError):
        return f"The SMTP server {where} did not answer in time."
    if type(exc) is aiosmtplib.SMTPException:  # STARTTLS or AUTH is not offered
        return f"The SMTP server {where} does not offer the security or the log-in set up."
    return f"The SMTP server {where} closed the connection."


def _caused_by_certificate(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _by_code(code: int, where: str, what: str) -> MailerUnavailable | MailerRejected:
    """4xx means "not now"; everything else the server says is final. A reply that is no
    SMTP reply code (aiosmtplib's -1) means the port runs some other service."""
    if not 200 <= code <= 599:
        return MailerRejected(f"The SMTP server {where} did not answer as an SMTP server.")
    message = f"The SMTP server {where} {what} ({code})."
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
