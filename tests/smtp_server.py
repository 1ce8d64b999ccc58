"""A real SMTP server for the tests (aiosmtpd in a thread) that records what it accepts.

It can require a login, speak STARTTLS or implicit TLS with a private CA, go away and come
back on the same port, and stall while receiving an email (to kill a worker mid-delivery).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.processes import free_port


@dataclass
class Received:
    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    login: str | None
    tls: bool

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return "" if part is None else str(part.get_content())

    def html(self) -> str:
        part = self.message.get_body(("html",))
        return "" if part is None else str(part.get_content())


@dataclass
class Recorder:
    """The handler: accepts every email unless told to stall or to answer slowly."""

    received: list[Received] = field(default_factory=list)
    logins: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    stall_next: bool = False
    stalled: threading.Event = field(default_factory=threading.Event)
    on_stall: Callable[[], None] | None = None  # runs in the server's thread, at once
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall_next:
            self.stall_next = False
            if self.on_stall is not None:
                self.on_stall()
            self.stalled.set()
            await asyncio.sleep(60)  # the client is killed meanwhile
            return "451 stalled"
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        login = session.authenticated and session.auth_data
        with self.lock:
            self.received.append(
                Received(
                    message=message,
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    login=login.login.decode() if isinstance(login, LoginPassword) else None,
                    tls=session.ssl is not None,
                )
            )
        return "250 OK"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]

    def count(self) -> int:
        with self.lock:
            return len(self.received)


class SmtpServer:
    """``start()`` / ``stop()`` any number of times; the port stays the same."""

    def __init__(
        self,
        *,
        logins: dict[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = free_port()
        self.recorder = Recorder(logins=dict(logins or {}))
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self._controller: Controller | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.recorder.logins.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(self) -> SmtpServer:
        options: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port}
        if self.recorder.logins:
            options.update(authenticator=self._authenticate, auth_require_tls=False)
        if self._starttls is not None:
            options.update(tls_context=self._starttls, require_starttls=True)
        if self._implicit_tls is not None:
            options.update(ssl_context=self._implicit_tls, server_hostname="localhost")
        self._controller = Controller(self.recorder, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def private_tls(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA and a certificate for localhost/127.0.0.1: (server context, client context)."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Ellity test CA"))
        .issuer_name(name("Ellity test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client
